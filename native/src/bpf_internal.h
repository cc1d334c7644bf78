/* Internal interface shared by the bpf_*.c modules: owned fd handles, libbpf log capture. */
#ifndef NKIT_BPF_INTERNAL_H
#define NKIT_BPF_INTERNAL_H

#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

enum nk_fd_kind { NK_FD_OTHER = 0, NK_FD_MAP = 1, NK_FD_PROG = 2, NK_FD_LINK = 3 };

/* Cached once per map handle so every map op can validate buffer lengths without a syscall; a
 * wrong length would otherwise let the kernel write past the end of a JS buffer. */
typedef struct {
  uint32_t type, id, key_size, value_size, max_entries, flags;
  bool percpu;
  /* Bytes of one element's value as the syscall sees it: value_size, or for per-CPU maps
   * roundup(value_size, 8) * possible CPUs. */
  uint32_t value_len;
  char name[16];
} nk_map_meta;

/* Every fd the addon hands to JS is wrapped in one of these externals: the fd is closed by
 * fdClose() or, failing that, by the GC finalizer, so a forgotten handle never leaks an fd. */
typedef struct {
  int fd;
  enum nk_fd_kind kind;
  nk_map_meta map;
} nk_fd;

/* Takes ownership of fd (closing it on failure). kind NK_FD_OTHER means "detect from /proc". */
napi_value nk_fd_wrap(napi_env env, int fd, enum nk_fd_kind kind);
/* Accepts a handle created by nk_fd_wrap; want == NK_FD_OTHER accepts any kind. Throws and
 * returns NULL on a foreign value, a closed handle or the wrong kind. */
nk_fd *nk_fd_arg(napi_env env, napi_value v, const char *name, enum nk_fd_kind want);
const char *nk_fd_kind_name(enum nk_fd_kind k);
enum nk_fd_kind nk_fd_detect_kind(int fd);

/* libbpf print capture: begin clears the buffer, end stops capturing and returns the text
 * (valid until the next begin). */
void nk_log_begin(void);
const char *nk_log_end(void);
void nk_log_install(void);
/* Throws an errno error that also carries the captured libbpf/verifier text as `.log`. */
void nk_throw_errno_log(napi_env env, int err, const char *op, const char *detail, const char *log);

bool nk_register_bpf_map(napi_env env, napi_value exports);
bool nk_register_bpf_link(napi_env env, napi_value exports);
bool nk_register_bpf_probe(napi_env env, napi_value exports);

static inline const char *nk_or_unknown(const char *s) { return s ? s : "unknown"; }

#endif
