// JSON scanner: validates RFC 8259 text, copies it minified (no whitespace outside strings, so it
// fits on one line), and records the members of the outermost object (key -> value span).
#ifndef NKIT_CNI_JSON_H
#define NKIT_CNI_JSON_H
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define JSON_MAX_DEPTH 128
#define JSON_MAX_MEMBERS 64

struct member {
  char key[64];
  size_t start, end; // value span in the input
  char kind;         // 's' string, 'n' number, 'o' object, 'a' array, 'b' boolean, 'z' null
};

struct doc {
  struct member m[JSON_MAX_MEMBERS];
  int count;
};

// Parses one JSON object (the whole input, whitespace around it allowed), copying it minified to
// min when given. Returns NULL, or the error text with its byte offset (allocated; the shim never
// frees it, the fuzz target does).
const char *json_parse_object(const char *s, size_t n, struct buf *min, struct doc *d);
const struct member *json_get(const struct doc *d, const char *key);
// The decoded string value of a member, NULL when absent; *bad is set for a non-string, a value
// containing NUL, or one longer than max bytes.
char *json_get_string(const char *src, const struct doc *d, const char *key, size_t max, bool *bad);

#endif
