// nkit-cni: the CNI 1.1 plugin of nkit. A thin shim: it validates the call, forwards it to nkitd's
// CNI endpoint (a unix socket, conflist key "socket", default /run/nkit/cni.sock) and prints
// nkitd's answer. C11 and libc only, so one call costs about a millisecond (Node would cost ~150).
//
// Socket protocol (authoritative description: src/cni/protocol.ts; keep both in step):
//   one request per connection; the shim writes one JSON object on a single line ending in "\n":
//     {"v":1,"command":"ADD","containerId":"…","netns":"…","ifName":"…","args":"<CNI_ARGS>",
//      "path":"<CNI_PATH>","config":{…the network configuration from stdin, minified…}}
//   nkitd answers with one JSON line and closes the connection:
//     {"ok":true,"result":{…CNI result…}}     printed on stdout, exit 0
//     {"ok":true}                             nothing printed, exit 0 (DEL, CHECK, STATUS, GC)
//     {"ok":false,"error":{"cniVersion":…,"code":N,"msg":…,"details":…}}   printed, exit 1
//
// Local behaviour:
//   - no CNI_COMMAND: prints "CNI nkit-cni plugin vX.Y.Z" (Nomad's fingerprint) and exits 0;
//   - VERSION is answered here, without nkitd;
//   - nkitd unreachable: ADD/CHECK/GC fail with code 11 (try again), STATUS with 50; DEL is queued
//     as a file in <socket dir>/cni-del-queue/ for nkitd to replay before it serves anything else,
//     and succeeds (see src/cni/protocol.ts, "DEL while nkitd is down");
//   - timeouts: connect 2 s (or the call timeout if shorter), whole call "timeoutMs" from the
//     network configuration (default 30000).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef NKIT_VERSION
#define NKIT_VERSION "0.0.0"
#endif

#define PROTOCOL_VERSION 1
#define MAX_STDIN (1u << 20)
#define MAX_RESPONSE (4u << 20)
#define DEFAULT_SOCKET "/run/nkit/cni.sock"
#define DEFAULT_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 2000
#define MAX_TIMEOUT_MS 600000
#define MAX_DEPTH 128
#define MAX_MEMBERS 64
#define QUEUE_DIR "cni-del-queue"

// CNI well-known error codes, and nkit's own (100+). The full table is in src/cni/codes.ts.
enum {
  E_INCOMPATIBLE_VERSION = 1,
  E_INVALID_ENV = 4,
  E_IO = 5,
  E_DECODE = 6,
  E_INVALID_CONFIG = 7,
  E_TRY_AGAIN = 11,
  E_STATUS_UNAVAILABLE = 50,
  E_PROTOCOL = 106,
};

static const char *const SUPPORTED[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define N_SUPPORTED (sizeof SUPPORTED / sizeof SUPPORTED[0])

// ---------------------------------------------------------------------------------------------
// Growable byte buffer, always NUL-terminated.

struct buf {
  char *p;
  size_t len, cap;
};

static void oom(void);

static void buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) oom();
  b->p = p;
  b->cap = cap;
}

static void buf_put(struct buf *b, const void *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void buf_putc(struct buf *b, char c) { buf_put(b, &c, 1); }
static void buf_puts(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

// Emits s as a JSON string: quotes, backslashes and control bytes escaped, other bytes as they are.
static void buf_json_str(struct buf *b, const char *s) {
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

// ---------------------------------------------------------------------------------------------
// Errors: CNI error JSON on stdout, exit 1.

static char g_cni_version[16] = "1.1.0";

static _Noreturn void fail(int code, const char *msg, const char *details) {
  struct buf b = {0};
  buf_puts(&b, "{\"cniVersion\":");
  buf_json_str(&b, g_cni_version);
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  buf_puts(&b, ",\"code\":");
  buf_puts(&b, num);
  buf_puts(&b, ",\"msg\":");
  buf_json_str(&b, msg);
  buf_puts(&b, ",\"details\":");
  buf_json_str(&b, details ? details : "");
  buf_puts(&b, "}\n");
  fwrite(b.p, 1, b.len, stdout);
  fflush(stdout);
  exit(1);
}

static void oom(void) { fail(E_IO, "nkit-cni: out of memory", ""); }

// printf into a fresh string (the process is short-lived: never freed).
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  if (vasprintf(&s, f, ap) < 0) oom();
  va_end(ap);
  return s;
}

// ---------------------------------------------------------------------------------------------
// JSON scanner: validates RFC 8259 text, copies it minified (no whitespace outside strings, so it
// fits on one line), and records the members of the outermost object (key -> value span).

struct member {
  char key[64];
  size_t start, end; // value span in the input
  char kind;         // 's' string, 'n' number, 'o' object, 'a' array, 'b' boolean, 'z' null
};

struct doc {
  struct member m[MAX_MEMBERS];
  int count;
};

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
    if (d->count == MAX_MEMBERS) return;
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
  if (++p->depth > MAX_DEPTH) return jp_fail(p, "nesting too deep");
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

// Parses one JSON object (the whole input, whitespace around it allowed). On failure returns the
// error text with its byte offset.
static const char *parse_object(const char *s, size_t n, struct buf *min, struct doc *d) {
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

static const struct member *doc_get(const struct doc *d, const char *key) {
  for (int k = 0; k < d->count; k++)
    if (strcmp(d->m[k].key, key) == 0) return &d->m[k];
  return NULL;
}

// The decoded string value of a member, NULL when absent; *bad is set for a non-string, a value
// containing NUL, or one longer than max bytes.
static char *doc_string(const char *src, const struct doc *d, const char *key, size_t max, bool *bad) {
  const struct member *m = doc_get(d, key);
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

// ---------------------------------------------------------------------------------------------
// I/O helpers.

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(long long deadline) {
  long long left = deadline - now_ms();
  return left > 0 ? (int)left : 0;
}

static void read_stdin(struct buf *in) {
  for (;;) {
    buf_reserve(in, 65536);
    ssize_t r = read(STDIN_FILENO, in->p + in->len, 65536);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(E_IO, "nkit-cni: cannot read the network configuration from stdin", strerror(errno));
    }
    in->len += (size_t)r;
    in->p[in->len] = 0;
    if (in->len > MAX_STDIN)
      fail(E_IO, "nkit-cni: the network configuration on stdin is larger than 1 MiB", "");
  }
}

// Connects to a unix socket within timeout_ms. Returns the fd, or -1 with *err set (ETIMEDOUT when
// the listen backlog stayed full).
static int dial(const char *path, int timeout_ms, int *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path) + 1);
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      *err = errno;
      return -1;
    }
    if (connect(fd, (const struct sockaddr *)&sa, sizeof sa) == 0) return fd;
    int e = errno;
    if (e == EINPROGRESS) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      int r = poll(&pfd, 1, remaining(deadline));
      if (r == 1) {
        int so = 0;
        socklen_t l = sizeof so;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &l) == 0 && so == 0) return fd;
        e = so ? so : errno;
      } else {
        e = r == 0 ? ETIMEDOUT : errno;
      }
      close(fd);
      *err = e;
      return -1;
    }
    close(fd);
    if (e != EAGAIN && e != EINTR) {
      *err = e;
      return -1;
    }
    // Listen backlog full: nkitd is busy; retry until the deadline.
    if (remaining(deadline) == 0) {
      *err = ETIMEDOUT;
      return -1;
    }
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

// Sends the request and reads one response line (or up to EOF). Returns 0 or an errno value.
static int exchange(int fd, const struct buf *req, struct buf *resp, long long deadline) {
  size_t off = 0;
  while (off < req->len) {
    ssize_t w = send(fd, req->p + off, req->len - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      int r = poll(&pfd, 1, remaining(deadline));
      if (r == 0) return ETIMEDOUT;
      if (r < 0 && errno != EINTR) return errno;
      continue;
    }
    return w < 0 ? errno : EPIPE;
  }
  for (;;) {
    buf_reserve(resp, 65536);
    ssize_t r = recv(fd, resp->p + resp->len, 65536, 0);
    if (r > 0) {
      char *nl = memchr(resp->p + resp->len, '\n', (size_t)r);
      resp->len += (size_t)r;
      resp->p[resp->len] = 0;
      if (resp->len > MAX_RESPONSE) return EMSGSIZE;
      if (nl) return 0;
      continue;
    }
    if (r == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      int p = poll(&pfd, 1, remaining(deadline));
      if (p == 0) return ETIMEDOUT;
      if (p < 0 && errno != EINTR) return errno;
      continue;
    }
    return errno;
  }
}

// ---------------------------------------------------------------------------------------------
// DEL while nkitd is down: the request is written to <socket dir>/cni-del-queue/del-<hash>.json
// (atomically: temp file + rename), one file per (container, interface). nkitd replays the queue
// before it serves any other request.

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
  for (size_t k = 0; k < n; k++) {
    h ^= (unsigned char)s[k];
    h *= 1099511628211ull;
  }
  return h;
}

static char *queue_del(const char *socket_path, const struct buf *req, const char *cid, const char *ifname) {
  char *dir = fmt("%s", socket_path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = 0;
  else *slash = 0;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return NULL;
  char *qdir = fmt("%s/%s", strcmp(dir, "/") == 0 ? "" : dir, QUEUE_DIR);
  if (mkdir(qdir, 0700) < 0 && errno != EEXIST) return NULL;
  uint64_t h = fnv1a(14695981039346656037ull, cid, strlen(cid) + 1);
  h = fnv1a(h, ifname, strlen(ifname));
  char *path = fmt("%s/del-%016llx.json", qdir, (unsigned long long)h);
  char *tmp = fmt("%s/.del-%016llx.tmp-%ld", qdir, (unsigned long long)h, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return NULL;
  size_t off = 0;
  while (off < req->len) {
    ssize_t w = write(fd, req->p + off, req->len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      close(fd);
      unlink(tmp);
      return NULL;
    }
    off += (size_t)w;
  }
  if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
    unlink(tmp);
    return NULL;
  }
  return path;
}

// ---------------------------------------------------------------------------------------------

static void print_about(void) {
  printf("CNI nkit-cni plugin v%s\nCNI protocol versions supported: ", NKIT_VERSION);
  for (size_t k = 0; k < N_SUPPORTED; k++) printf("%s%s", k ? ", " : "", SUPPORTED[k]);
  printf("\nForwards CNI calls to nkitd (conflist keys: mode ipam|wire, socket, default %s)\n",
         DEFAULT_SOCKET);
}

static bool supported(const char *v) {
  for (size_t k = 0; k < N_SUPPORTED; k++)
    if (strcmp(v, SUPPORTED[k]) == 0) return true;
  return false;
}

static const char *supported_list(void) {
  static char s[128];
  s[0] = 0;
  for (size_t k = 0; k < N_SUPPORTED; k++) {
    if (k) strcat(s, ", ");
    strcat(s, SUPPORTED[k]);
  }
  return s;
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v ? v : "";
}

static void require_env(const char *cmd, const char *name) {
  if (!*env(name))
    fail(E_INVALID_ENV, fmt("%s is required for %s", name, cmd),
         fmt("the runtime must set %s in the plugin's environment", name));
}

static int cmd_version(const struct buf *in) {
  const char *want = "1.1.0";
  struct doc d;
  size_t k = 0;
  while (k < in->len && strchr(" \t\r\n", in->p[k])) k++;
  if (k < in->len) {
    const char *err = parse_object(in->p, in->len, NULL, &d);
    if (err) fail(E_DECODE, "nkit-cni: VERSION input is not a JSON object", err);
    bool bad;
    char *v = doc_string(in->p, &d, "cniVersion", 15, &bad);
    if (v && supported(v)) want = v;
  }
  printf("{\"cniVersion\":\"%s\",\"supportedVersions\":[", want);
  for (size_t j = 0; j < N_SUPPORTED; j++) printf("%s\"%s\"", j ? "," : "", SUPPORTED[j]);
  printf("]}\n");
  return 0;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = env("CNI_COMMAND");
  if (!*cmd) {
    print_about();
    return 0;
  }
  struct buf in = {0};
  buf_reserve(&in, 0);
  read_stdin(&in);
  if (strcmp(cmd, "VERSION") == 0) return cmd_version(&in);

  bool needs_netns = false, needs_container = true;
  if (strcmp(cmd, "ADD") == 0 || strcmp(cmd, "CHECK") == 0) needs_netns = true;
  else if (strcmp(cmd, "STATUS") == 0 || strcmp(cmd, "GC") == 0) needs_container = false;
  else if (strcmp(cmd, "DEL") != 0)
    fail(E_INVALID_ENV, fmt("unknown CNI_COMMAND \"%s\"", cmd),
         "nkit-cni implements ADD, DEL, CHECK, STATUS, GC and VERSION");

  // The network configuration: validated, minified for the one-line request, a few keys read.
  struct buf conf = {0};
  struct doc d;
  const char *err = parse_object(in.p, in.len, &conf, &d);
  if (err) fail(E_DECODE, "nkit-cni: the network configuration on stdin is not a JSON object", err);
  bool bad;
  char *version = doc_string(in.p, &d, "cniVersion", 15, &bad);
  if (bad || !version)
    fail(E_INVALID_CONFIG, "network configuration: \"cniVersion\" is missing or not a string",
         "e.g. \"cniVersion\": \"1.1.0\"");
  if (!supported(version))
    fail(E_INCOMPATIBLE_VERSION, fmt("CNI version %s is not supported by nkit-cni", version),
         fmt("supported versions: %s", supported_list()));
  snprintf(g_cni_version, sizeof g_cni_version, "%s", version);

  char *socket_path = doc_string(in.p, &d, "socket", sizeof(((struct sockaddr_un *)0)->sun_path) - 1, &bad);
  if (bad)
    fail(E_INVALID_CONFIG, "network configuration: \"socket\" must be a string naming a unix socket path",
         fmt("at most %zu bytes, absolute, e.g. %s", sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
             DEFAULT_SOCKET));
  if (!socket_path) socket_path = DEFAULT_SOCKET;
  if (socket_path[0] != '/')
    fail(E_INVALID_CONFIG, fmt("network configuration: \"socket\" (%s) is not an absolute path", socket_path),
         fmt("e.g. %s", DEFAULT_SOCKET));

  int timeout_ms = DEFAULT_TIMEOUT_MS;
  const struct member *tm = doc_get(&d, "timeoutMs");
  if (tm) {
    char *end = NULL;
    long v = tm->kind == 'n' ? strtol(in.p + tm->start, &end, 10) : -1;
    if (tm->kind != 'n' || end != in.p + tm->end || v < 1 || v > MAX_TIMEOUT_MS)
      fail(E_INVALID_CONFIG, "network configuration: \"timeoutMs\" must be an integer from 1 to 600000",
           "milliseconds nkit-cni waits for nkitd's answer (default 30000)");
    timeout_ms = (int)v;
  }

  const char *cid = env("CNI_CONTAINERID"), *ifname = env("CNI_IFNAME");
  if (needs_container) {
    require_env(cmd, "CNI_CONTAINERID");
    require_env(cmd, "CNI_IFNAME");
  }
  if (needs_netns) require_env(cmd, "CNI_NETNS");

  struct buf req = {0};
  char num[16];
  snprintf(num, sizeof num, "%d", PROTOCOL_VERSION);
  buf_puts(&req, "{\"v\":");
  buf_puts(&req, num);
  buf_puts(&req, ",\"command\":");
  buf_json_str(&req, cmd);
  buf_puts(&req, ",\"containerId\":");
  buf_json_str(&req, cid);
  buf_puts(&req, ",\"netns\":");
  buf_json_str(&req, env("CNI_NETNS"));
  buf_puts(&req, ",\"ifName\":");
  buf_json_str(&req, ifname);
  buf_puts(&req, ",\"args\":");
  buf_json_str(&req, env("CNI_ARGS"));
  buf_puts(&req, ",\"path\":");
  buf_json_str(&req, env("CNI_PATH"));
  buf_puts(&req, ",\"config\":");
  buf_put(&req, conf.p, conf.len);
  buf_puts(&req, "}\n");

  bool is_del = strcmp(cmd, "DEL") == 0, is_status = strcmp(cmd, "STATUS") == 0;
  long long deadline = now_ms() + timeout_ms;
  int e = 0;
  int fd = dial(socket_path, timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS, &e);
  char *queued = NULL;
  if (fd < 0 && is_del && (e == ENOENT || e == ECONNREFUSED)) {
    queued = queue_del(socket_path, &req, cid, ifname);
    if (!queued)
      fail(E_TRY_AGAIN, fmt("nkitd is not reachable at %s and the DEL could not be queued", socket_path),
           fmt("connect: %s; queueing in %s next to the socket failed: %s", strerror(e), QUEUE_DIR,
               strerror(errno)));
    // nkitd may have started between the first attempt and the queue write: ask once more, so a
    // daemon that already replayed its queue still sees this DEL now.
    fd = dial(socket_path, timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS, &e);
    if (fd < 0) return 0;
  }
  if (fd < 0) {
    int code = is_status ? E_STATUS_UNAVAILABLE : (e == ENOENT || e == ECONNREFUSED || e == ETIMEDOUT) ? E_TRY_AGAIN : E_IO;
    if (e == ETIMEDOUT)
      fail(code, fmt("nkitd at %s did not accept the connection in time (its listen queue is full)", socket_path),
           fmt("%s for container \"%s\"; retry later", cmd, cid));
    fail(code, fmt("nkitd is not reachable at %s", socket_path),
         fmt("connect: %s; is nkitd running (systemctl status nkitd) and is \"socket\" in the network "
             "configuration right?",
             strerror(e)));
  }

  struct buf resp = {0};
  buf_reserve(&resp, 0);
  e = exchange(fd, &req, &resp, deadline);
  close(fd);
  if (e == ETIMEDOUT)
    fail(is_status ? E_STATUS_UNAVAILABLE : E_TRY_AGAIN,
         fmt("nkitd at %s did not answer within %d ms", socket_path, timeout_ms),
         fmt("%s for container \"%s\"; nkitd may still complete it; raise \"timeoutMs\" in the network "
             "configuration if nkitd is just slow",
             cmd, cid));
  if (e == EMSGSIZE) fail(E_PROTOCOL, fmt("nkitd at %s sent a response larger than 4 MiB", socket_path), "");
  if (e) fail(is_status ? E_STATUS_UNAVAILABLE : E_IO, fmt("talking to nkitd at %s failed", socket_path), strerror(e));

  struct doc rd;
  size_t rlen = resp.len;
  while (rlen > 0 && (resp.p[rlen - 1] == '\n' || resp.p[rlen - 1] == '\r')) rlen--;
  if (rlen == 0)
    fail(is_status ? E_STATUS_UNAVAILABLE : E_PROTOCOL,
         fmt("nkitd at %s closed the connection without an answer", socket_path),
         fmt("%s for container \"%s\"; see nkitd's log", cmd, cid));
  err = parse_object(resp.p, rlen, NULL, &rd);
  const struct member *ok = err ? NULL : doc_get(&rd, "ok");
  if (err || !ok || ok->kind != 'b')
    fail(E_PROTOCOL, fmt("nkitd at %s sent an invalid response", socket_path),
         err ? err : "no boolean \"ok\" member");
  if (resp.p[ok->start] == 't') {
    const struct member *res = doc_get(&rd, "result");
    if (res && res->kind == 'o') {
      fwrite(resp.p + res->start, 1, res->end - res->start, stdout);
      fputc('\n', stdout);
    }
    if (fflush(stdout) != 0) return 1;
    if (queued) unlink(queued); // replayed live: nkitd need not replay it again
    return 0;
  }
  const struct member *er = doc_get(&rd, "error");
  if (!er || er->kind != 'o')
    fail(E_PROTOCOL, fmt("nkitd at %s sent an invalid response", socket_path), "\"ok\":false without an \"error\" object");
  fwrite(resp.p + er->start, 1, er->end - er->start, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  return 1;
}
