#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"

void buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) oom();
    b->p = p;
    b->cap = cap;
  }
  // A fresh buffer that nothing is written to must still read as "" (an empty JSON string value
  // decodes to no bytes at all).
  b->p[b->len] = 0;
}

void buf_put(struct buf *b, const void *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

void buf_putc(struct buf *b, char c) { buf_put(b, &c, 1); }
void buf_puts(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_json_str(struct buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  buf_putc(b, '"');
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    switch (*c) {
    case '"': buf_puts(b, "\\\""); break;
    case '\\': buf_puts(b, "\\\\"); break;
    case '\n': buf_puts(b, "\\n"); break;
    case '\r': buf_puts(b, "\\r"); break;
    case '\t': buf_puts(b, "\\t"); break;
    default:
      if (*c < 0x20 || *c == 0x7f) {
        char e[6] = {'\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 15]};
        buf_put(b, e, sizeof e);
      } else {
        buf_putc(b, (char)*c);
      }
    }
  }
  buf_putc(b, '"');
}

char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  if (vasprintf(&s, f, ap) < 0) oom();
  va_end(ap);
  return s;
}
