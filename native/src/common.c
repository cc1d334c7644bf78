#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR)
    E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS)
    E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE) E(EDEADLK) E(ENAMETOOLONG) E(ENOLCK) E(ENOSYS)
    E(ENOTEMPTY) E(ELOOP) E(ENOMSG) E(EIDRM) E(ENODATA) E(ETIME) E(ENOLINK) E(EPROTO)
    E(EBADMSG) E(EOVERFLOW) E(EILSEQ) E(ENOTSOCK) E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT)
    E(EPROTONOSUPPORT) E(EOPNOTSUPP) E(EAFNOSUPPORT) E(EADDRINUSE) E(EADDRNOTAVAIL)
    E(ENETDOWN) E(ENETUNREACH) E(ECONNRESET) E(ENOBUFS) E(EISCONN) E(ENOTCONN) E(ETIMEDOUT)
    E(ECONNREFUSED) E(EHOSTUNREACH) E(EALREADY) E(EINPROGRESS) E(ESTALE) E(EDQUOT)
    E(ECANCELED) E(EOWNERDEAD) E(ENOTRECOVERABLE) E(ERFKILL) E(EHWPOISON)
#undef E
    case 524: return "ENOTSUPP"; /* kernel-internal, leaks out of some BPF paths */
    default: return "EUNKNOWN";
  }
}

napi_value nk_make_errno_error(napi_env env, int err, const char *op, const char *detail) {
  if (err < 0) err = -err;
  char msg[512];
  const char *desc = err == 524 ? "Operation not supported (ENOTSUPP)" : strerror(err);
  if (detail && *detail)
    snprintf(msg, sizeof msg, "%s: %s (%s)", op, desc, detail);
  else
    snprintf(msg, sizeof msg, "%s: %s", op, desc);
  napi_value m, code, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  nk_set(env, e, "errno", nk_i32(env, err));
  nk_set(env, e, "syscall", nk_str(env, op));
  return e;
}

void nk_throw_errno(napi_env env, int err, const char *op, const char *detail) {
  napi_throw(env, nk_make_errno_error(env, err, op, detail));
}

void nk_throw_type(napi_env env, const char *msg) { napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg); }

void nk_throw_napi(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[512];
  snprintf(msg, sizeof msg, "N-API call failed: %s: %s", what,
           info && info->error_message ? info->error_message : "unknown");
  napi_throw_error(env, "ERR_NKIT_NAPI", msg);
}

bool nk_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    nk_throw_napi(env, "napi_get_cb_info");
    return false;
  }
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  return true;
}

static bool type_err(napi_env env, const char *name, const char *want) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s must be %s", name, want);
  nk_throw_type(env, msg);
  return false;
}

bool nk_get_u32(napi_env env, napi_value v, const char *name, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 || d != (double)(uint32_t)d)
    return type_err(env, name, "an unsigned 32-bit integer");
  *out = (uint32_t)d;
  return true;
}

bool nk_get_i32(napi_env env, napi_value v, const char *name, int32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < -2147483648.0 || d > 2147483647.0 || d != (double)(int32_t)d)
    return type_err(env, name, "a signed 32-bit integer");
  *out = (int32_t)d;
  return true;
}

bool nk_get_u64(napi_env env, napi_value v, const char *name, uint64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_bigint) {
    bool lossless;
    if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok || !lossless)
      return type_err(env, name, "an unsigned 64-bit integer");
    return true;
  }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 9007199254740991.0 || d != (double)(uint64_t)d)
    return type_err(env, name, "an unsigned integer or bigint");
  *out = (uint64_t)d;
  return true;
}

bool nk_get_bool(napi_env env, napi_value v, const char *name, bool *out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) return type_err(env, name, "a boolean");
  return true;
}

bool nk_get_string(napi_env env, napi_value v, const char *name, char **out) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return type_err(env, name, "a string");
  char *buf = malloc(len + 1);
  if (!buf) {
    nk_throw_errno(env, ENOMEM, "malloc", name);
    return false;
  }
  napi_get_value_string_utf8(env, v, buf, len + 1, &len);
  *out = buf;
  return true;
}

bool nk_get_bytes(napi_env env, napi_value v, const char *name, void **data, size_t *len) {
  bool is_buf = false, is_ta = false;
  napi_is_buffer(env, v, &is_buf);
  if (is_buf) {
    if (napi_get_buffer_info(env, v, data, len) == napi_ok) return true;
  }
  napi_is_typedarray(env, v, &is_ta);
  if (is_ta) {
    napi_typedarray_type tt;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, v, &tt, len, data, &ab, &off) == napi_ok && tt == napi_uint8_array) return true;
  }
  return type_err(env, name, "a Buffer or Uint8Array");
}

bool nk_is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_undefined || t == napi_null;
}

napi_value nk_u32(napi_env env, uint32_t v) { napi_value r; napi_create_uint32(env, v, &r); return r; }
napi_value nk_i32(napi_env env, int32_t v) { napi_value r; napi_create_int32(env, v, &r); return r; }
napi_value nk_bigint_u64(napi_env env, uint64_t v) { napi_value r; napi_create_bigint_uint64(env, v, &r); return r; }
napi_value nk_str(napi_env env, const char *s) { napi_value r; napi_create_string_utf8(env, s ? s : "", NAPI_AUTO_LENGTH, &r); return r; }
napi_value nk_bool(napi_env env, bool v) { napi_value r; napi_get_boolean(env, v, &r); return r; }
napi_value nk_undefined(napi_env env) { napi_value r; napi_get_undefined(env, &r); return r; }
napi_value nk_null(napi_env env) { napi_value r; napi_get_null(env, &r); return r; }

napi_value nk_buffer_copy(napi_env env, const void *data, size_t len) {
  napi_value r;
  void *dst;
  if (napi_create_buffer_copy(env, len, data, &dst, &r) != napi_ok) return NULL;
  return r;
}

bool nk_set(napi_env env, napi_value obj, const char *key, napi_value v) {
  return napi_set_named_property(env, obj, key, v) == napi_ok;
}

bool nk_export(napi_env env, napi_value exports, const nk_fn *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &f) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, f) != napi_ok) {
      nk_throw_napi(env, fns[i].name);
      return false;
    }
  }
  return true;
}

void nk_signals_block(sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, old);
}

void nk_signals_restore(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }
