/* BPF objects (open/load/inspect), fd handles, libbpf log capture, BTF struct layouts. Entry point
 * of the bpf part of the addon: nk_register_bpf also registers the map, link and probe modules. */
#include "bpf_internal.h"

#include <bpf/btf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- libbpf log capture ------------------------------------------------------------------- */

/* libbpf has one process-wide print callback and N-API calls run on the JS thread, so a single
 * buffer is enough. The verifier log arrives through it too: libbpf retries a failed program load
 * with its own, growing log buffer and prints the result, which avoids the ENOSPC a fixed caller
 * buffer would turn a long log into. */
#define NK_LOG_MAX (8u << 20)
static char *g_log;
static size_t g_log_len, g_log_cap;
static bool g_capture;

static int nk_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
  if (!g_capture || level == LIBBPF_DEBUG) return 0;
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(NULL, 0, fmt, cp);
  va_end(cp);
  if (n <= 0) return 0;
  size_t need = g_log_len + (size_t)n + 1;
  if (need > NK_LOG_MAX) return 0;
  if (need > g_log_cap) {
    size_t cap = g_log_cap ? g_log_cap : 4096;
    while (cap < need) cap *= 2;
    char *p = realloc(g_log, cap);
    if (!p) return 0;
    g_log = p;
    g_log_cap = cap;
  }
  vsnprintf(g_log + g_log_len, g_log_cap - g_log_len, fmt, ap);
  g_log_len += (size_t)n;
  return n;
}

void nk_log_install(void) { libbpf_set_print(nk_print); }

void nk_log_begin(void) {
  g_capture = true;
  g_log_len = 0;
  if (g_log) g_log[0] = '\0';
}

const char *nk_log_end(void) {
  g_capture = false;
  return g_log ? g_log : "";
}

void nk_throw_errno_log(napi_env env, int err, const char *op, const char *detail, const char *log) {
  if (err < 0) err = -err;
  napi_value e = nk_make_errno_error(env, err, op, detail);
  /* libbpf's own codes (ELF/format problems) are beyond the errno range; name them */
  if (err >= __LIBBPF_ERRNO__START && err < __LIBBPF_ERRNO__END) {
    char desc[128], msg[512];
    libbpf_strerror(err, desc, sizeof desc);
    snprintf(msg, sizeof msg, "%s: %s (%s)", op, desc, detail ? detail : "");
    nk_set(env, e, "message", nk_str(env, msg));
    nk_set(env, e, "code", nk_str(env, "ELIBBPF"));
  }
  nk_set(env, e, "log", nk_str(env, log ? log : ""));
  napi_throw(env, e);
}

/* ---- fd handles --------------------------------------------------------------------------- */

static const napi_type_tag NK_FD_TAG = {0x6e6b69745f66645fULL, 0x8f1c2b3a4d5e6f70ULL};
static const napi_type_tag NK_OBJ_TAG = {0x6e6b69745f6f626aULL, 0x1a2b3c4d5e6f7081ULL};

const char *nk_fd_kind_name(enum nk_fd_kind k) {
  switch (k) {
    case NK_FD_MAP: return "map";
    case NK_FD_PROG: return "prog";
    case NK_FD_LINK: return "link";
    default: return "other";
  }
}

enum nk_fd_kind nk_fd_detect_kind(int fd) {
  /* The kernel gives each object type its own anon inode name, but spells links "bpf_link" when
   * created and "bpf-link" when reopened from a pin; fdinfo's type line settles it either way. */
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "re");
  if (!f) return NK_FD_OTHER;
  enum nk_fd_kind kind = NK_FD_OTHER;
  while (kind == NK_FD_OTHER && fgets(buf, sizeof buf, f)) {
    if (strncmp(buf, "map_type:", 9) == 0) kind = NK_FD_MAP;
    else if (strncmp(buf, "prog_type:", 10) == 0) kind = NK_FD_PROG;
    else if (strncmp(buf, "link_type:", 10) == 0) kind = NK_FD_LINK;
  }
  fclose(f);
  return kind;
}

static void fd_finalize(napi_env env, void *data, void *hint) {
  nk_fd *h = data;
  if (h->fd >= 0) close(h->fd);
  free(h);
}

static bool is_percpu_type(uint32_t t) {
  return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY ||
         t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

napi_value nk_fd_wrap(napi_env env, int fd, enum nk_fd_kind kind) {
  if (kind == NK_FD_OTHER) kind = nk_fd_detect_kind(fd);
  nk_fd *h = calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    nk_throw_errno(env, ENOMEM, "calloc", "fd handle");
    return NULL;
  }
  h->fd = fd;
  h->kind = kind;
  if (kind == NK_FD_MAP) {
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    int err = bpf_map_get_info_by_fd(fd, &info, &len);
    if (err) {
      close(fd);
      free(h);
      nk_throw_errno(env, -err, "bpf_map_get_info_by_fd", NULL);
      return NULL;
    }
    h->map.type = info.type;
    h->map.id = info.id;
    h->map.key_size = info.key_size;
    h->map.value_size = info.value_size;
    h->map.max_entries = info.max_entries;
    h->map.flags = info.map_flags;
    h->map.percpu = is_percpu_type(info.type);
    memcpy(h->map.name, info.name, sizeof h->map.name);
    h->map.name[sizeof h->map.name - 1] = '\0';
    h->map.value_len = info.value_size;
    if (h->map.percpu) {
      int ncpu = libbpf_num_possible_cpus();
      if (ncpu <= 0) {
        close(fd);
        free(h);
        nk_throw_errno(env, ncpu < 0 ? -ncpu : EINVAL, "libbpf_num_possible_cpus", NULL);
        return NULL;
      }
      h->map.value_len = ((info.value_size + 7u) & ~7u) * (uint32_t)ncpu;
    }
  }
  napi_value ext;
  if (napi_create_external(env, h, fd_finalize, NULL, &ext) != napi_ok) {
    close(fd);
    free(h);
    nk_throw_napi(env, "napi_create_external");
    return NULL;
  }
  if (napi_type_tag_object(env, ext, &NK_FD_TAG) != napi_ok) {
    nk_throw_napi(env, "napi_type_tag_object");
    return NULL;
  }
  return ext;
}

/* The pointer inside an external created by this addon with `tag`; throws a TypeError naming
 * `what` (and returns false) for anything else. *out may be NULL for a finalized value. */
static bool tagged_external(napi_env env, napi_value v, const napi_type_tag *tag, const char *what, void **out) {
  bool ok = false;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_external) napi_check_object_type_tag(env, v, tag, &ok);
  if (!ok) {
    nk_throw_type(env, what);
    return false;
  }
  *out = NULL;
  napi_get_value_external(env, v, out);
  return true;
}

nk_fd *nk_fd_arg(napi_env env, napi_value v, const char *name, enum nk_fd_kind want) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s must be a BPF fd handle", name);
  nk_fd *h;
  if (!tagged_external(env, v, &NK_FD_TAG, msg, (void **)&h)) return NULL;
  if (!h || h->fd < 0) {
    snprintf(msg, sizeof msg, "%s was already closed", name);
    nk_throw_errno(env, EBADF, "handle", msg);
    return NULL;
  }
  if (want != NK_FD_OTHER && h->kind != want) {
    snprintf(msg, sizeof msg, "%s is a BPF %s, expected a BPF %s", name, nk_fd_kind_name(h->kind),
             nk_fd_kind_name(want));
    nk_throw_errno(env, EINVAL, "handle", msg);
    return NULL;
  }
  return h;
}

/* fdClose(handle): idempotent explicit close. */
static napi_value fd_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_fd *h;
  if (!tagged_external(env, argv[0], &NK_FD_TAG, "handle must be a BPF fd handle", (void **)&h)) return NULL;
  if (h && h->fd >= 0) {
    close(h->fd);
    h->fd = -1;
  }
  return nk_undefined(env);
}

/* fdInfo(handle) -> { fd, kind } for diagnostics and kind checks in TS. */
static napi_value fd_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], o;
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "handle", NK_FD_OTHER);
  if (!h) return NULL;
  NK_CALL(env, napi_create_object(env, &o));
  nk_set(env, o, "fd", nk_i32(env, h->fd));
  nk_set(env, o, "kind", nk_str(env, nk_fd_kind_name(h->kind)));
  return o;
}

/* ---- objects ------------------------------------------------------------------------------ */

typedef struct {
  struct bpf_object *obj;
  bool loaded;
  char *path;
} nk_obj;

static void obj_finalize(napi_env env, void *data, void *hint) {
  nk_obj *o = data;
  if (o->obj) bpf_object__close(o->obj);
  free(o->path);
  free(o);
}

static nk_obj *obj_arg(napi_env env, napi_value v) {
  nk_obj *o;
  if (!tagged_external(env, v, &NK_OBJ_TAG, "object must be a BPF object handle", (void **)&o)) return NULL;
  if (!o || !o->obj) {
    nk_throw_errno(env, EBADF, "bpf_object", "the BPF object was already closed");
    return NULL;
  }
  return o;
}

static bool opt_string(napi_env env, napi_value opts, const char *key, char **out) {
  *out = NULL;
  if (nk_is_nullish(env, opts)) return true;
  napi_value v;
  if (napi_get_named_property(env, opts, key, &v) != napi_ok) return false;
  if (nk_is_nullish(env, v)) return true;
  return nk_get_string(env, v, key, out);
}

/* objOpen(path, { pinRoot?, name? }) -> object handle. Parses the ELF and BTF; nothing reaches
 * the kernel until objLoad. pinRoot is where LIBBPF_PIN_BY_NAME maps are pinned and reused. */
static napi_value obj_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  char *path = NULL, *pin_root = NULL, *name = NULL;
  if (!nk_get_string(env, argv[0], "path", &path)) return NULL;
  if (!opt_string(env, argv[1], "pinRoot", &pin_root) || !opt_string(env, argv[1], "name", &name)) {
    free(path);
    free(pin_root);
    return NULL;
  }
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root, .object_name = name);
  nk_log_begin();
  errno = 0;
  struct bpf_object *obj = bpf_object__open_file(path, &opts);
  int err = errno ? errno : EINVAL;
  const char *log = nk_log_end();
  free(pin_root);
  free(name);
  if (!obj) {
    nk_throw_errno_log(env, err, "bpf_object__open_file", path, log);
    free(path);
    return NULL;
  }
  nk_obj *o = calloc(1, sizeof *o);
  if (!o) {
    bpf_object__close(obj);
    free(path);
    nk_throw_errno(env, ENOMEM, "calloc", "object handle");
    return NULL;
  }
  o->obj = obj;
  o->path = path;
  napi_value ext;
  if (napi_create_external(env, o, obj_finalize, NULL, &ext) != napi_ok) {
    obj_finalize(env, o, NULL);
    nk_throw_napi(env, "napi_create_external");
    return NULL;
  }
  NK_CALL(env, napi_type_tag_object(env, ext, &NK_OBJ_TAG));
  return ext;
}

/* objLoad(obj): creates/reuses maps, loads programs. Throws with .log = libbpf + verifier text. */
static napi_value obj_load(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_obj *o = obj_arg(env, argv[0]);
  if (!o) return NULL;
  if (o->loaded) {
    nk_throw_errno(env, EALREADY, "bpf_object__load", "the object is already loaded");
    return NULL;
  }
  sigset_t old;
  nk_signals_block(&old);
  nk_log_begin();
  int err = bpf_object__load(o->obj);
  const char *log = nk_log_end();
  nk_signals_restore(&old);
  if (err) {
    nk_throw_errno_log(env, -err, "bpf_object__load", o->path, log);
    return NULL;
  }
  o->loaded = true;
  return nk_undefined(env);
}

static napi_value obj_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_obj *o;
  if (!tagged_external(env, argv[0], &NK_OBJ_TAG, "object must be a BPF object handle", (void **)&o)) return NULL;
  if (o && o->obj) {
    bpf_object__close(o->obj);
    o->obj = NULL;
  }
  return nk_undefined(env);
}

/* objPrograms(obj) -> [{ name, section, type, typeName, attachType, attachTypeName, autoload }] */
static napi_value obj_programs(napi_env env, napi_callback_info info) {
  napi_value argv[1], arr;
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_obj *o = obj_arg(env, argv[0]);
  if (!o) return NULL;
  NK_CALL(env, napi_create_array(env, &arr));
  uint32_t i = 0;
  struct bpf_program *p;
  bpf_object__for_each_program(p, o->obj) {
    napi_value e;
    NK_CALL(env, napi_create_object(env, &e));
    enum bpf_prog_type pt = bpf_program__type(p);
    enum bpf_attach_type at = bpf_program__expected_attach_type(p);
    nk_set(env, e, "name", nk_str(env, bpf_program__name(p)));
    nk_set(env, e, "section", nk_str(env, bpf_program__section_name(p)));
    nk_set(env, e, "type", nk_u32(env, pt));
    nk_set(env, e, "typeName", nk_str(env, nk_or_unknown(libbpf_bpf_prog_type_str(pt))));
    nk_set(env, e, "attachType", nk_u32(env, at));
    nk_set(env, e, "attachTypeName", nk_str(env, nk_or_unknown(libbpf_bpf_attach_type_str(at))));
    nk_set(env, e, "autoload", nk_bool(env, bpf_program__autoload(p)));
    NK_CALL(env, napi_set_element(env, arr, i++, e));
  }
  return arr;
}

static void describe_type(napi_env env, napi_value e, const struct btf *btf, uint32_t type_id,
                          const char *prefix);

/* A map's key or value type as its BTF records it ({ kind, typeName, size, count?, elem* }, as
 * btfStruct describes a member), or null when the map has none (ring buffers, a map of maps'
 * values): what the TS skeleton generator picks the key and value codecs from. */
static napi_value map_btf_type(napi_env env, const struct btf *btf, uint32_t type_id) {
  if (!btf || type_id == 0) return nk_null(env);
  napi_value e;
  if (napi_create_object(env, &e) != napi_ok) return nk_null(env);
  long long sz = btf__resolve_size(btf, type_id);
  nk_set(env, e, "size", nk_i32(env, sz < 0 ? -1 : (int32_t)sz));
  describe_type(env, e, btf, type_id, "");
  return e;
}

/* objMaps(obj) -> [{ name, type, typeName, keySize, valueSize, maxEntries, flags, pinPath, pinned,
 * internal, keyType, valueType }] */
static napi_value obj_maps(napi_env env, napi_callback_info info) {
  napi_value argv[1], arr;
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_obj *o = obj_arg(env, argv[0]);
  if (!o) return NULL;
  NK_CALL(env, napi_create_array(env, &arr));
  const struct btf *btf = bpf_object__btf(o->obj);
  uint32_t i = 0;
  struct bpf_map *m;
  bpf_object__for_each_map(m, o->obj) {
    napi_value e;
    NK_CALL(env, napi_create_object(env, &e));
    enum bpf_map_type mt = bpf_map__type(m);
    const char *pin = bpf_map__pin_path(m);
    nk_set(env, e, "name", nk_str(env, bpf_map__name(m)));
    nk_set(env, e, "type", nk_u32(env, mt));
    nk_set(env, e, "typeName", nk_str(env, nk_or_unknown(libbpf_bpf_map_type_str(mt))));
    nk_set(env, e, "keySize", nk_u32(env, bpf_map__key_size(m)));
    nk_set(env, e, "valueSize", nk_u32(env, bpf_map__value_size(m)));
    nk_set(env, e, "maxEntries", nk_u32(env, bpf_map__max_entries(m)));
    nk_set(env, e, "flags", nk_u32(env, bpf_map__map_flags(m)));
    nk_set(env, e, "pinPath", pin ? nk_str(env, pin) : nk_null(env));
    nk_set(env, e, "pinned", nk_bool(env, bpf_map__is_pinned(m)));
    /* .rodata/.bss/.data/.kconfig: libbpf's own maps for global variables, no owner's business */
    nk_set(env, e, "internal", nk_bool(env, bpf_map__is_internal(m)));
    nk_set(env, e, "keyType", map_btf_type(env, btf, bpf_map__btf_key_type_id(m)));
    nk_set(env, e, "valueType", map_btf_type(env, btf, bpf_map__btf_value_type_id(m)));
    NK_CALL(env, napi_set_element(env, arr, i++, e));
  }
  return arr;
}

/* Duplicates the object's fd so the handle outlives bpf_object__close independently. */
static napi_value dup_handle(napi_env env, int fd, enum nk_fd_kind kind, const char *what, const char *name) {
  if (fd < 0) {
    nk_throw_errno(env, EBADF, what, "the object is not loaded (or the program was not autoloaded)");
    return NULL;
  }
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) {
    nk_throw_errno(env, errno, "dup", name);
    return NULL;
  }
  return nk_fd_wrap(env, d, kind);
}

static int program_fd_by_name(struct bpf_object *obj, const char *name) {
  struct bpf_program *p = bpf_object__find_program_by_name(obj, name);
  return p ? bpf_program__fd(p) : -ENOENT;
}

static int map_fd_by_name(struct bpf_object *obj, const char *name) {
  struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
  return m ? bpf_map__fd(m) : -ENOENT;
}

/* (objHandle, name) -> a duplicated fd handle of the named program or map. */
static napi_value obj_named(napi_env env, napi_callback_info info, int (*lookup)(struct bpf_object *, const char *),
                            enum nk_fd_kind kind, const char *op) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  nk_obj *o = obj_arg(env, argv[0]);
  if (!o) return NULL;
  char *name;
  if (!nk_get_string(env, argv[1], "name", &name)) return NULL;
  int fd = lookup(o->obj, name);
  napi_value r = NULL;
  if (fd == -ENOENT)
    nk_throw_errno(env, ENOENT, op, name);
  else
    r = dup_handle(env, fd, kind, op, name);
  free(name);
  return r;
}

static napi_value obj_program(napi_env env, napi_callback_info info) {
  return obj_named(env, info, program_fd_by_name, NK_FD_PROG, "bpf_object__find_program_by_name");
}

static napi_value obj_map(napi_env env, napi_callback_info info) {
  return obj_named(env, info, map_fd_by_name, NK_FD_MAP, "bpf_object__find_map_by_name");
}

/* objSetMapSize(obj, name, maxEntries): a map's capacity before objLoad (sizes from nkitd's config). */
static napi_value obj_set_map_size(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!nk_args(env, info, 3, argv)) return NULL;
  nk_obj *o = obj_arg(env, argv[0]);
  if (!o) return NULL;
  uint32_t max;
  if (!nk_get_u32(env, argv[2], "maxEntries", &max)) return NULL;
  char *name;
  if (!nk_get_string(env, argv[1], "name", &name)) return NULL;
  struct bpf_map *m = bpf_object__find_map_by_name(o->obj, name);
  int err = m ? bpf_map__set_max_entries(m, max) : -ENOENT;
  if (err) nk_throw_errno(env, -err, "bpf_map__set_max_entries", name);
  free(name);
  return err ? NULL : nk_undefined(env);
}

/* ---- BTF ---------------------------------------------------------------------------------- */

/* The member's type as the TS codec generator needs it: the first typedef name on the way down
 * (__be16 and __u16 differ only there), the resolved kind (int, array, struct, enum), and for an
 * array its element's type name and count. */
static void describe_type(napi_env env, napi_value e, const struct btf *btf, uint32_t type_id,
                          const char *prefix) {
  const char *type_name = NULL;
  const struct btf_type *t = btf__type_by_id(btf, type_id);
  while (t && (btf_is_typedef(t) || btf_is_mod(t))) {
    if (btf_is_typedef(t) && !type_name) type_name = btf__name_by_offset(btf, t->name_off);
    type_id = t->type;
    t = btf__type_by_id(btf, type_id);
  }
  const char *kind = !t ? "unknown"
                     : btf_is_int(t)                       ? "int"
                     : btf_is_array(t)                     ? "array"
                     : btf_is_struct(t) || btf_is_union(t) ? "struct"
                     : btf_is_enum(t) || btf_is_enum64(t)  ? "enum"
                                                           : "other";
  if (!type_name && t) type_name = btf__name_by_offset(btf, t->name_off);
  int top = prefix[0] == 0;
  char key[32];
  snprintf(key, sizeof key, top ? "kind" : "%sKind", prefix);
  nk_set(env, e, key, nk_str(env, kind));
  snprintf(key, sizeof key, top ? "typeName" : "%sTypeName", prefix);
  nk_set(env, e, key, nk_str(env, type_name ? type_name : ""));
  if (t && btf_is_array(t) && top) {
    const struct btf_array *a = btf_array(t);
    nk_set(env, e, "count", nk_u32(env, a->nelems));
    describe_type(env, e, btf, a->type, "elem");
  }
}

/* btfStruct(path, name) -> { name, size, members: [{ name, offset, bitOffset, bitSize, size }] }
 * or null when the object's BTF has no such struct. Reads the ELF only, no kernel involved. */
static napi_value btf_struct(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  char *path = NULL, *name = NULL;
  if (!nk_get_string(env, argv[0], "path", &path)) return NULL;
  if (!nk_get_string(env, argv[1], "name", &name)) {
    free(path);
    return NULL;
  }
  napi_value result = NULL;
  nk_log_begin();
  errno = 0;
  struct btf *btf = btf__parse_elf(path, NULL);
  int err = errno ? errno : EINVAL;
  const char *log = nk_log_end();
  if (!btf) {
    nk_throw_errno_log(env, err, "btf__parse_elf", path, log);
    goto out;
  }
  int id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);
  if (id < 0) {
    result = nk_null(env);
    goto out;
  }
  const struct btf_type *t = btf__type_by_id(btf, (uint32_t)id);
  napi_value o, members;
  if (napi_create_object(env, &o) != napi_ok || napi_create_array(env, &members) != napi_ok) {
    nk_throw_napi(env, "napi_create_object");
    goto out;
  }
  nk_set(env, o, "name", nk_str(env, name));
  nk_set(env, o, "size", nk_u32(env, t->size));
  const struct btf_member *m = btf_members(t);
  for (uint32_t i = 0; i < btf_vlen(t); i++, m++) {
    napi_value e;
    if (napi_create_object(env, &e) != napi_ok) {
      nk_throw_napi(env, "napi_create_object");
      goto out;
    }
    uint32_t bit_off = btf_member_bit_offset(t, i);
    uint32_t bit_size = btf_member_bitfield_size(t, i);
    long long sz = btf__resolve_size(btf, m->type);
    nk_set(env, e, "name", nk_str(env, btf__name_by_offset(btf, m->name_off)));
    nk_set(env, e, "offset", nk_u32(env, bit_off / 8));
    nk_set(env, e, "bitOffset", nk_u32(env, bit_off));
    nk_set(env, e, "bitSize", nk_u32(env, bit_size));
    nk_set(env, e, "size", nk_i32(env, sz < 0 ? -1 : (int32_t)sz));
    describe_type(env, e, btf, m->type, "");
    napi_set_element(env, members, i, e);
  }
  nk_set(env, o, "members", members);
  result = o;
out:
  btf__free(btf);
  free(path);
  free(name);
  return result;
}

static napi_value num_possible_cpus(napi_env env, napi_callback_info info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) {
    nk_throw_errno(env, -n, "libbpf_num_possible_cpus", NULL);
    return NULL;
  }
  return nk_u32(env, (uint32_t)n);
}

/* bpfConstants(): the uapi values the TS side hard-codes, so a test can catch drift. */
static napi_value bpf_constants(napi_env env, napi_callback_info info) {
  napi_value o;
  NK_CALL(env, napi_create_object(env, &o));
#define C(name) nk_set(env, o, #name, nk_u32(env, (uint32_t)(name)))
  C(BPF_TCX_INGRESS); C(BPF_TCX_EGRESS); C(BPF_NETKIT_PRIMARY); C(BPF_NETKIT_PEER);
  C(BPF_LINK_TYPE_TCX); C(BPF_LINK_TYPE_NETKIT); C(BPF_PROG_TYPE_SCHED_CLS);
  C(BPF_CGROUP_INET4_CONNECT); C(BPF_CGROUP_INET6_CONNECT); C(BPF_CGROUP_UDP4_SENDMSG);
  C(BPF_CGROUP_UDP6_SENDMSG); C(BPF_CGROUP_UDP4_RECVMSG); C(BPF_CGROUP_UDP6_RECVMSG);
  C(BPF_CGROUP_INET4_GETPEERNAME); C(BPF_CGROUP_INET6_GETPEERNAME); C(BPF_LINK_TYPE_CGROUP);
  C(BPF_F_REPLACE); C(BPF_F_BEFORE); C(BPF_F_AFTER); C(BPF_F_ID); C(BPF_F_LINK);
  C(BPF_ANY); C(BPF_NOEXIST); C(BPF_EXIST); C(BPF_F_LOCK); C(BPF_F_INNER_MAP);
  C(BPF_MAP_TYPE_HASH); C(BPF_MAP_TYPE_ARRAY); C(BPF_MAP_TYPE_PERCPU_HASH);
  C(BPF_MAP_TYPE_PERCPU_ARRAY); C(BPF_MAP_TYPE_LRU_HASH); C(BPF_MAP_TYPE_LRU_PERCPU_HASH);
  C(BPF_MAP_TYPE_LPM_TRIE); C(BPF_MAP_TYPE_HASH_OF_MAPS);
  C(BPF_FUNC_fib_lookup); C(BPF_FUNC_redirect_neigh); C(BPF_FUNC_redirect_peer);
#undef C
  return o;
}

napi_value nk_register_bpf(napi_env env, napi_value exports) {
  nk_log_install();
  static const nk_fn fns[] = {
      {"fdClose", fd_close},         {"fdInfo", fd_info},
      {"objOpen", obj_open},         {"objLoad", obj_load},
      {"objClose", obj_close},       {"objPrograms", obj_programs},
      {"objMaps", obj_maps},         {"objProgram", obj_program},
      {"objMap", obj_map},           {"btfStruct", btf_struct},
      {"objSetMapSize", obj_set_map_size},
      {"numPossibleCpus", num_possible_cpus}, {"bpfConstants", bpf_constants},
  };
  if (!nk_export(env, exports, fns, sizeof fns / sizeof fns[0])) return NULL;
  if (!nk_register_bpf_map(env, exports)) return NULL;
  if (!nk_register_bpf_link(env, exports)) return NULL;
  if (!nk_register_bpf_probe(env, exports)) return NULL;
  return exports;
}
