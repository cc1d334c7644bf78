// Growable byte buffer, always NUL-terminated once allocated, and the string helpers built on it.
#ifndef NKIT_CNI_BUF_H
#define NKIT_CNI_BUF_H
#include <stddef.h>

struct buf {
  char *p;
  size_t len, cap;
};

// Makes room for extra more bytes (plus the terminating NUL); p[len] is NUL afterwards.
void buf_reserve(struct buf *b, size_t extra);
void buf_put(struct buf *b, const void *s, size_t n);
void buf_putc(struct buf *b, char c);
void buf_puts(struct buf *b, const char *s);
// Appends s as a JSON string: quotes, backslashes and control bytes escaped, other bytes as they are.
void buf_json_str(struct buf *b, const char *s);

// printf into a fresh string (the process is short-lived: never freed).
__attribute__((format(printf, 1, 2))) char *fmt(const char *f, ...);

#endif
