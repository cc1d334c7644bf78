/* Shared helpers for the nkit addon: argument parsing and errors that carry errno. */
#ifndef NKIT_COMMON_H
#define NKIT_COMMON_H

#include <node_api.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NK_CALL(env, call)                                                                         \
  do {                                                                                             \
    if ((call) != napi_ok) {                                                                       \
      nk_throw_napi((env), #call);                                                                 \
      return NULL;                                                                                 \
    }                                                                                              \
  } while (0)

/* Throws an Error whose .code is the errno name (e.g. "ENOENT"), .errno the positive errno, and
 * .syscall the operation; the message is "<op>: <strerror>" plus an optional detail. */
void nk_throw_errno(napi_env env, int err, const char *op, const char *detail);
/* Same shape, built as a value (for async completions that reject a promise). */
napi_value nk_make_errno_error(napi_env env, int err, const char *op, const char *detail);
void nk_throw_type(napi_env env, const char *msg);
void nk_throw_napi(napi_env env, const char *what);

/* Argument helpers; on failure they throw a TypeError and return false. */
bool nk_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
bool nk_get_u32(napi_env env, napi_value v, const char *name, uint32_t *out);
bool nk_get_i32(napi_env env, napi_value v, const char *name, int32_t *out);
bool nk_get_u64(napi_env env, napi_value v, const char *name, uint64_t *out);
bool nk_get_bool(napi_env env, napi_value v, const char *name, bool *out);
/* Copies a JS string into a malloc'd buffer the caller frees. */
bool nk_get_string(napi_env env, napi_value v, const char *name, char **out);
/* Borrows the bytes of a Buffer/Uint8Array (valid while the value is alive). */
bool nk_get_bytes(napi_env env, napi_value v, const char *name, void **data, size_t *len);
bool nk_is_nullish(napi_env env, napi_value v);

napi_value nk_u32(napi_env env, uint32_t v);
napi_value nk_i32(napi_env env, int32_t v);
napi_value nk_bigint_u64(napi_env env, uint64_t v);
napi_value nk_str(napi_env env, const char *s);
napi_value nk_bool(napi_env env, bool v);
napi_value nk_undefined(napi_env env);
napi_value nk_null(napi_env env);
napi_value nk_buffer_copy(napi_env env, const void *data, size_t len);
bool nk_set(napi_env env, napi_value obj, const char *key, napi_value v);

/* Each module adds its functions to the exports object. */
typedef struct {
  const char *name;
  napi_callback cb;
} nk_fn;
bool nk_export(napi_env env, napi_value exports, const nk_fn *fns, size_t n);

napi_value nk_register_netns(napi_env env, napi_value exports);
napi_value nk_register_netlink(napi_env env, napi_value exports);
/* The verifier gives up with EAGAIN whenever a signal is pending for the loading thread, and a busy
 * process gets many (a profiler's SIGPROF every millisecond, SIGCHLD of its children): program
 * loads run with every blockable signal blocked, delivered right after nk_signals_restore. */
void nk_signals_block(sigset_t *old);
void nk_signals_restore(const sigset_t *old);

napi_value nk_register_bpf(napi_env env, napi_value exports);
napi_value nk_register_sdnotify(napi_env env, napi_value exports);
napi_value nk_register_ringbuf(napi_env env, napi_value exports);
napi_value nk_register_memory(napi_env env, napi_value exports);

#endif
