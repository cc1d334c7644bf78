#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


struct jp {
  const char *s;
  size_t n, i;
  int depth;
  struct buf *min; // minified copy, or NULL
  const char *err;
  size_t err_at;
};

static bool jp_fail(struct jp *p, const char *what) {
  if (!p->err) {
    p->err = what;
    p->err_at = p->i;
  }
  return false;
}

static void jp_ws(struct jp *p) {
  while (p->i < p->n) {
    char c = p->s[p->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->i++;
  }
}

static int jp_peek(const struct jp *p) { return p->i < p->n ? (unsigned char)p->s[p->i] : -1; }

static void jp_emit(struct jp *p, size_t from) {
  if (p->min) buf_put(p->min, p->s + from, p->i - from);
}

static bool hex4(struct jp *p, uint32_t *out) {
  if (p->i + 4 > p->n) return false;
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p->s[p->i + k];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | (uint32_t)d;
  }
  p->i += 4;
  *out = v;
  return true;
}

static void put_utf8(struct buf *b, uint32_t cp) {
  char u[4];
  if (cp < 0x80) {
    u[0] = (char)cp;
    buf_put(b, u, 1);
  } else if (cp < 0x800) {
    u[0] = (char)(0xc0 | cp >> 6);
    u[1] = (char)(0x80 | (cp & 0x3f));
    buf_put(b, u, 2);
  } else if (cp < 0x10000) {
    u[0] = (char)(0xe0 | cp >> 12);
    u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    u[2] = (char)(0x80 | (cp & 0x3f));
    buf_put(b, u, 3);
  } else {
    u[0] = (char)(0xf0 | cp >> 18);
    u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    buf_put(b, u, 4);
  }
}

// A string; its decoded bytes go to dec when given.
static bool jp_string(struct jp *p, struct buf *dec) {
  size_t start = p->i;
  if (jp_peek(p) != '"') return jp_fail(p, "expected a string");
  p->i++;
  for (;;) {
    if (p->i >= p->n) return jp_fail(p, "unterminated string");
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '"') {
      p->i++;
      break;
    }
    if (c < 0x20) return jp_fail(p, "unescaped control character in a string");
    if (c != '\\') {
      if (dec) buf_putc(dec, (char)c);
      p->i++;
      continue;
    }
    if (p->i + 1 >= p->n) return jp_fail(p, "unterminated string");
    char e = p->s[p->i + 1];
    p->i += 2;
    char out;
    switch (e) {
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case '/': out = '/'; break;
    case 'b': out = '\b'; break;
    case 'f': out = '\f'; break;
    case 'n': out = '\n'; break;
    case 'r': out = '\r'; break;
    case 't': out = '\t'; break;
    case 'u': {
      uint32_t cp;
      if (!hex4(p, &cp)) return jp_fail(p, "invalid \\u escape");
      if (cp >= 0xd800 && cp <= 0xdbff) {
        // A high surrogate pairs with a following low one; a lone one decodes as U+FFFD.
        size_t save = p->i;
        uint32_t lo;
        if (p->i + 1 < p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
          p->i += 2;
          if (hex4(p, &lo) && lo >= 0xdc00 && lo <= 0xdfff)
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          else {
            p->i = save;
            cp = 0xfffd;
          }
        } else {
          cp = 0xfffd;
        }
      } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        cp = 0xfffd;
      }
      if (dec) put_utf8(dec, cp);
      continue;
    }
    default: return jp_fail(p, "invalid escape in a string");
    }
    if (dec) buf_putc(dec, out);
  }
  jp_emit(p, start);
  return true;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static bool jp_number(struct jp *p) {
  size_t start = p->i;
  if (jp_peek(p) == '-') p->i++;
  if (jp_peek(p) == '0') {
    p->i++;
  } else if (is_digit(jp_peek(p))) {
    while (is_digit(jp_peek(p))) p->i++;
  } else {
    return jp_fail(p, "invalid number");
  }
  if (jp_peek(p) == '.') {
    p->i++;
    if (!is_digit(jp_peek(p))) return jp_fail(p, "invalid number");
    while (is_digit(jp_peek(p))) p->i++;
  }
  if (jp_peek(p) == 'e' || jp_peek(p) == 'E') {
    p->i++;
    if (jp_peek(p) == '+' || jp_peek(p) == '-') p->i++;
    if (!is_digit(jp_peek(p))) return jp_fail(p, "invalid number");
    while (is_digit(jp_peek(p))) p->i++;
  }
  jp_emit(p, start);
  return true;
}

static bool jp_literal(struct jp *p) {
  static const char *const lits[] = {"true", "false", "null"};
  for (size_t k = 0; k < 3; k++) {
    size_t l = strlen(lits[k]);
    if (p->i + l <= p->n && memcmp(p->s + p->i, lits[k], l) == 0) {
      size_t start = p->i;
      p->i += l;
      jp_emit(p, start);
      return true;
    }
  }
  return jp_fail(p, "unexpected literal");
}

static bool jp_value(struct jp *p, struct doc *top);

static void doc_record(struct doc *d, const struct buf *key, size_t start, size_t end, char kind) {
  if (!key->p || key->len >= sizeof d->m[0].key || strlen(key->p) != key->len) return;
  struct member *m = NULL;
  for (int k = 0; k < d->count; k++)
    if (strcmp(d->m[k].key, key->p) == 0) m = &d->m[k]; // a repeated key: the last one wins
  if (!m) {
    if (d->count == JSON_MAX_MEMBERS) return;
    m = &d->m[d->count++];
  }
  memcpy(m->key, key->p, key->len + 1);
  m->start = start;
  m->end = end;
  m->kind = kind;
}

static char kind_of(int c) {
  switch (c) {
  case '"': return 's';
  case '{': return 'o';
  case '[': return 'a';
  case 't':
  case 'f': return 'b';
  case 'n': return 'z';
  default: return 'n';
  }
}

static bool jp_enter(struct jp *p) {
  if (++p->depth > JSON_MAX_DEPTH) return jp_fail(p, "nesting too deep");
  size_t start = p->i++;
  jp_emit(p, start);
  jp_ws(p);
  return true;
}

static bool jp_close(struct jp *p) {
  size_t start = p->i++;
  jp_emit(p, start);
  p->depth--;
  return true;
}

static bool jp_object(struct jp *p, struct doc *top) {
  if (!jp_enter(p)) return false;
  if (jp_peek(p) == '}') return jp_close(p);
  for (;;) {
    jp_ws(p);
    struct buf key = {0};
    if (!jp_string(p, top ? &key : NULL)) {
      free(key.p);
      return false;
    }
    jp_ws(p);
    if (jp_peek(p) != ':') {
      free(key.p);
      return jp_fail(p, "expected ':' after an object key");
    }
    size_t colon = p->i++;
    jp_emit(p, colon);
    jp_ws(p);
    size_t vstart = p->i;
    int first = jp_peek(p);
    if (!jp_value(p, NULL)) {
      free(key.p);
      return false;
    }
    if (top) doc_record(top, &key, vstart, p->i, kind_of(first));
    free(key.p);
    jp_ws(p);
    if (jp_peek(p) == ',') {
      size_t comma = p->i++;
      jp_emit(p, comma);
      continue;
    }
    if (jp_peek(p) == '}') return jp_close(p);
    return jp_fail(p, "expected ',' or '}' in an object");
  }
}

static bool jp_array(struct jp *p) {
  if (!jp_enter(p)) return false;
  if (jp_peek(p) == ']') return jp_close(p);
  for (;;) {
    if (!jp_value(p, NULL)) return false;
    jp_ws(p);
    if (jp_peek(p) == ',') {
      size_t comma = p->i++;
      jp_emit(p, comma);
      continue;
    }
    if (jp_peek(p) == ']') return jp_close(p);
    return jp_fail(p, "expected ',' or ']' in an array");
  }
}

static bool jp_value(struct jp *p, struct doc *top) {
  jp_ws(p);
  int c = jp_peek(p);
  switch (c) {
  case -1: return jp_fail(p, "unexpected end of input");
  case '{': return jp_object(p, top);
  case '[': return jp_array(p);
  case '"': return jp_string(p, NULL);
  case 't':
  case 'f':
  case 'n': return jp_literal(p);
  default:
    if (c == '-' || is_digit(c)) return jp_number(p);
    return jp_fail(p, "unexpected character");
  }
}

const char *json_parse_object(const char *s, size_t n, struct buf *min, struct doc *d) {
  struct jp p = {.s = s, .n = n, .min = min};
  memset(d, 0, sizeof *d);
  jp_ws(&p);
  if (jp_peek(&p) != '{') {
    jp_fail(&p, p.i < n ? "expected a JSON object" : "empty input");
  } else if (jp_object(&p, d)) {
    jp_ws(&p);
    if (p.i != n) jp_fail(&p, "unexpected data after the JSON object");
  }
  if (!p.err) return NULL;
  return fmt("%s at byte %zu", p.err, p.err_at);
}

const struct member *json_get(const struct doc *d, const char *key) {
  for (int k = 0; k < d->count; k++)
    if (strcmp(d->m[k].key, key) == 0) return &d->m[k];
  return NULL;
}

char *json_get_string(const char *src, const struct doc *d, const char *key, size_t max, bool *bad) {
  const struct member *m = json_get(d, key);
  *bad = false;
  if (!m) return NULL;
  if (m->kind != 's') {
    *bad = true;
    return NULL;
  }
  struct buf out = {0};
  struct jp p = {.s = src + m->start, .n = m->end - m->start};
  buf_reserve(&out, 0);
  if (!jp_string(&p, &out) || strlen(out.p) != out.len || out.len > max) {
    free(out.p);
    *bad = true;
    return NULL;
  }
  return out.p;
}
