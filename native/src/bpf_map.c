/* Map element operations over map fd handles. Keys and values are raw bytes; the TS codecs own the
 * layout. Every buffer length is checked against the map's key/value size before a syscall. */
#include "bpf_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool check_len(napi_env env, const char *what, size_t got, size_t want, const nk_fd *h) {
  if (got == want) return true;
  char msg[160];
  snprintf(msg, sizeof msg, "%s of map '%s' must be %zu bytes, got %zu", what, h->map.name, want, got);
  nk_throw_errno(env, EINVAL, "map", msg);
  return false;
}

static bool check_multiple(napi_env env, size_t klen, const nk_fd *h) {
  if (h->map.key_size != 0 && klen % h->map.key_size == 0) return true;
  char msg[160];
  snprintf(msg, sizeof msg, "keys of map '%s' must be a multiple of %u bytes, got %zu", h->map.name,
           h->map.key_size, klen);
  nk_throw_errno(env, EINVAL, "map", msg);
  return false;
}

static bool opt_u64(napi_env env, napi_value v, const char *name, uint64_t *out, uint64_t dflt) {
  if (nk_is_nullish(env, v)) {
    *out = dflt;
    return true;
  }
  return nk_get_u64(env, v, name, out);
}

/* mapInfo(handle) -> { id, name, type, typeName, keySize, valueSize, maxEntries, flags, percpu,
 * valueLen } (valueLen = bytes per element in syscalls: per-CPU maps hold one slot per CPU). */
static napi_value map_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], o;
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  NK_CALL(env, napi_create_object(env, &o));
  nk_set(env, o, "id", nk_u32(env, h->map.id));
  nk_set(env, o, "name", nk_str(env, h->map.name));
  nk_set(env, o, "type", nk_u32(env, h->map.type));
  nk_set(env, o, "typeName", nk_str(env, nk_or_unknown(libbpf_bpf_map_type_str(h->map.type))));
  nk_set(env, o, "keySize", nk_u32(env, h->map.key_size));
  nk_set(env, o, "valueSize", nk_u32(env, h->map.value_size));
  nk_set(env, o, "maxEntries", nk_u32(env, h->map.max_entries));
  nk_set(env, o, "flags", nk_u32(env, h->map.flags));
  nk_set(env, o, "percpu", nk_bool(env, h->map.percpu));
  nk_set(env, o, "valueLen", nk_u32(env, h->map.value_len));
  return o;
}

/* mapLookup(handle, key, flags?) -> Buffer | null (null when the key is absent). */
static napi_value map_lookup(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!nk_args(env, info, 3, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *key;
  size_t klen;
  uint64_t flags;
  if (!nk_get_bytes(env, argv[1], "key", &key, &klen) || !opt_u64(env, argv[2], "flags", &flags, 0)) return NULL;
  if (!check_len(env, "key", klen, h->map.key_size, h)) return NULL;
  void *val = malloc(h->map.value_len ? h->map.value_len : 1);
  if (!val) {
    nk_throw_errno(env, ENOMEM, "malloc", "map value");
    return NULL;
  }
  int err = bpf_map_lookup_elem_flags(h->fd, key, val, flags);
  napi_value r = NULL;
  if (err == -ENOENT)
    r = nk_null(env);
  else if (err)
    nk_throw_errno(env, -err, "bpf_map_lookup_elem", h->map.name);
  else
    r = nk_buffer_copy(env, val, h->map.value_len);
  free(val);
  return r;
}

/* mapUpdate(handle, key, value, flags) */
static napi_value map_update(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!nk_args(env, info, 4, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *key, *val;
  size_t klen, vlen;
  uint64_t flags;
  if (!nk_get_bytes(env, argv[1], "key", &key, &klen) || !nk_get_bytes(env, argv[2], "value", &val, &vlen) ||
      !opt_u64(env, argv[3], "flags", &flags, BPF_ANY))
    return NULL;
  if (!check_len(env, "key", klen, h->map.key_size, h) || !check_len(env, "value", vlen, h->map.value_len, h))
    return NULL;
  int err = bpf_map_update_elem(h->fd, key, val, flags);
  if (err) {
    nk_throw_errno(env, -err, "bpf_map_update_elem", h->map.name);
    return NULL;
  }
  return nk_undefined(env);
}

/* mapDelete(handle, key) -> true if deleted, false if absent. */
static napi_value map_delete(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *key;
  size_t klen;
  if (!nk_get_bytes(env, argv[1], "key", &key, &klen)) return NULL;
  if (!check_len(env, "key", klen, h->map.key_size, h)) return NULL;
  int err = bpf_map_delete_elem(h->fd, key);
  if (err == -ENOENT) return nk_bool(env, false);
  if (err) {
    nk_throw_errno(env, -err, "bpf_map_delete_elem", h->map.name);
    return NULL;
  }
  return nk_bool(env, true);
}

/* mapNextKey(handle, key | null) -> Buffer | null (null after the last key). */
static napi_value map_next_key(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *key = NULL;
  size_t klen = 0;
  if (!nk_is_nullish(env, argv[1])) {
    if (!nk_get_bytes(env, argv[1], "key", &key, &klen)) return NULL;
    if (!check_len(env, "key", klen, h->map.key_size, h)) return NULL;
  }
  void *next = malloc(h->map.key_size ? h->map.key_size : 1);
  if (!next) {
    nk_throw_errno(env, ENOMEM, "malloc", "map key");
    return NULL;
  }
  int err = bpf_map_get_next_key(h->fd, key, next);
  napi_value r = NULL;
  if (err == -ENOENT)
    r = nk_null(env);
  else if (err)
    nk_throw_errno(env, -err, "bpf_map_get_next_key", h->map.name);
  else
    r = nk_buffer_copy(env, next, h->map.key_size);
  free(next);
  return r;
}

/* Opaque batch cursor: hash maps use a 4-byte bucket index, array-like maps a whole key. */
static uint32_t token_size(const nk_fd *h) { return h->map.key_size > 8 ? h->map.key_size : 8; }

/* mapLookupBatch(handle, token | null, count, del) -> { count, keys, values, token, done }.
 * With del the entries are also removed (BPF_MAP_LOOKUP_AND_DELETE_BATCH). */
static napi_value map_lookup_batch(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!nk_args(env, info, 4, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *in = NULL;
  size_t inlen = 0;
  uint32_t count;
  bool del = false;
  if (!nk_is_nullish(env, argv[1])) {
    if (!nk_get_bytes(env, argv[1], "token", &in, &inlen)) return NULL;
    if (!check_len(env, "batch token", inlen, token_size(h), h)) return NULL;
  }
  if (!nk_get_u32(env, argv[2], "count", &count)) return NULL;
  if (!nk_is_nullish(env, argv[3]) && !nk_get_bool(env, argv[3], "del", &del)) return NULL;
  if (count == 0) count = 1;
  uint32_t tsz = token_size(h);
  napi_value result = NULL;
  char *out = calloc(1, tsz);
  char *keys = NULL, *vals = NULL;
  for (;;) {
    free(keys);
    free(vals);
    keys = malloc((size_t)count * h->map.key_size);
    vals = malloc((size_t)count * h->map.value_len);
    if (!out || !keys || !vals) {
      nk_throw_errno(env, ENOMEM, "malloc", "batch buffers");
      goto out;
    }
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    uint32_t n = count;
    int err = del ? bpf_map_lookup_and_delete_batch(h->fd, in, out, keys, vals, &n, &opts)
                  : bpf_map_lookup_batch(h->fd, in, out, keys, vals, &n, &opts);
    /* A hash bucket holding more entries than `count` fails with ENOSPC and nothing copied:
     * grow and retry the same cursor. */
    if (err == -ENOSPC && n == 0 && count < h->map.max_entries) {
      count = count * 2 > h->map.max_entries ? h->map.max_entries : count * 2;
      continue;
    }
    if (err && err != -ENOENT) {
      nk_throw_errno(env, -err, del ? "bpf_map_lookup_and_delete_batch" : "bpf_map_lookup_batch", h->map.name);
      goto out;
    }
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok) {
      nk_throw_napi(env, "napi_create_object");
      goto out;
    }
    nk_set(env, o, "count", nk_u32(env, n));
    nk_set(env, o, "keys", nk_buffer_copy(env, keys, (size_t)n * h->map.key_size));
    nk_set(env, o, "values", nk_buffer_copy(env, vals, (size_t)n * h->map.value_len));
    nk_set(env, o, "token", nk_buffer_copy(env, out, tsz));
    /* ENOENT is the kernel's "no more entries after this batch" */
    nk_set(env, o, "done", nk_bool(env, err == -ENOENT));
    result = o;
    break;
  }
out:
  free(out);
  free(keys);
  free(vals);
  return result;
}

/* mapUpdateBatch(handle, keys, values, elemFlags) -> number of elements written. */
static napi_value map_update_batch(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!nk_args(env, info, 4, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *keys, *vals;
  size_t klen, vlen;
  uint64_t flags;
  if (!nk_get_bytes(env, argv[1], "keys", &keys, &klen) || !nk_get_bytes(env, argv[2], "values", &vals, &vlen) ||
      !opt_u64(env, argv[3], "elemFlags", &flags, BPF_ANY))
    return NULL;
  if (!check_multiple(env, klen, h)) return NULL;
  size_t n = klen / h->map.key_size;
  if (!check_len(env, "values", vlen, n * h->map.value_len, h)) return NULL;
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
  uint32_t cnt = (uint32_t)n;
  int err = bpf_map_update_batch(h->fd, keys, vals, &cnt, &opts);
  if (err) {
    char detail[96];
    snprintf(detail, sizeof detail, "%s: %u of %zu elements written", h->map.name, cnt, n);
    nk_throw_errno(env, -err, "bpf_map_update_batch", detail);
    return NULL;
  }
  return nk_u32(env, cnt);
}

/* mapDeleteBatch(handle, keys) -> number of elements deleted. */
static napi_value map_delete_batch(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  void *keys;
  size_t klen;
  if (!nk_get_bytes(env, argv[1], "keys", &keys, &klen)) return NULL;
  if (!check_multiple(env, klen, h)) return NULL;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  size_t n = klen / h->map.key_size;
  uint32_t cnt = (uint32_t)n;
  int err = bpf_map_delete_batch(h->fd, keys, &cnt, &opts);
  if (err) {
    char detail[96];
    snprintf(detail, sizeof detail, "%s: %u of %zu elements deleted", h->map.name, cnt, n);
    nk_throw_errno(env, -err, "bpf_map_delete_batch", detail);
    return NULL;
  }
  return nk_u32(env, cnt);
}

/* mapCreate(type, keySize, valueSize, maxEntries, name, flags?) -> handle: a map of this process,
 * not pinned (the inner maps of map-in-map tables, held by the outer map once inserted). */
static napi_value map_create(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!nk_args(env, info, 6, argv)) return NULL;
  uint32_t type, ksz, vsz, max, flags = 0;
  char *name = NULL;
  napi_valuetype ft;
  if (napi_typeof(env, argv[5], &ft) != napi_ok) return NULL;
  if (ft != napi_undefined && !nk_get_u32(env, argv[5], "flags", &flags)) return NULL;
  if (!nk_get_u32(env, argv[0], "type", &type) || !nk_get_u32(env, argv[1], "keySize", &ksz) ||
      !nk_get_u32(env, argv[2], "valueSize", &vsz) || !nk_get_u32(env, argv[3], "maxEntries", &max) ||
      !nk_get_string(env, argv[4], "name", &name))
    return NULL;
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
  int fd = bpf_map_create((enum bpf_map_type)type, name, ksz, vsz, max, &opts);
  if (fd < 0) {
    nk_throw_errno(env, -fd, "bpf_map_create", name);
    free(name);
    return NULL;
  }
  free(name);
  return nk_fd_wrap(env, fd, NK_FD_MAP);
}

/* mapUpdateInner(outer, key, inner, flags): sets a map-in-map element to the map `inner`. */
static napi_value map_update_inner(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!nk_args(env, info, 4, argv)) return NULL;
  nk_fd *outer = nk_fd_arg(env, argv[0], "outer", NK_FD_MAP);
  if (!outer) return NULL;
  nk_fd *inner = nk_fd_arg(env, argv[2], "inner", NK_FD_MAP);
  if (!inner) return NULL;
  void *key;
  size_t klen;
  uint64_t flags;
  if (!nk_get_bytes(env, argv[1], "key", &key, &klen) || !opt_u64(env, argv[3], "flags", &flags, BPF_ANY))
    return NULL;
  if (!check_len(env, "key", klen, outer->map.key_size, outer)) return NULL;
  uint32_t value = (uint32_t)inner->fd;
  int err = bpf_map_update_elem(outer->fd, key, &value, flags);
  if (err) {
    nk_throw_errno(env, -err, "bpf_map_update_elem", outer->map.name);
    return NULL;
  }
  return nk_undefined(env);
}

bool nk_register_bpf_map(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"mapInfo", map_info},
      {"mapLookup", map_lookup},
      {"mapUpdate", map_update},
      {"mapDelete", map_delete},
      {"mapNextKey", map_next_key},
      {"mapLookupBatch", map_lookup_batch},
      {"mapUpdateBatch", map_update_batch},
      {"mapDeleteBatch", map_delete_batch},
      {"mapCreate", map_create},
      {"mapUpdateInner", map_update_inner},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]);
}
