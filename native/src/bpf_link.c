/* Pins, program info, tcx/netkit and cgroup links (create, update, detach, info) and attachment queries. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "bpf_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* objPin(handle, path): pins a map, program or link in bpffs. */
static napi_value obj_pin(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "handle", NK_FD_OTHER);
  if (!h) return NULL;
  char *path;
  if (!nk_get_string(env, argv[1], "path", &path)) return NULL;
  int err = bpf_obj_pin(h->fd, path);
  if (err) nk_throw_errno(env, -err, "bpf_obj_pin", path);
  free(path);
  return err ? NULL : nk_undefined(env);
}

/* objGet(path) -> handle of whatever kind is pinned there (map, prog or link). */
static napi_value obj_get(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  char *path;
  if (!nk_get_string(env, argv[0], "path", &path)) return NULL;
  int fd = bpf_obj_get(path);
  if (fd < 0) {
    nk_throw_errno(env, -fd, "bpf_obj_get", path);
    free(path);
    return NULL;
  }
  free(path);
  return nk_fd_wrap(env, fd, NK_FD_OTHER);
}

/* progInfo(handle) -> { id, name, type, typeName, tag } */
static napi_value prog_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], o;
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "program", NK_FD_PROG);
  if (!h) return NULL;
  struct bpf_prog_info pi;
  uint32_t len = sizeof pi;
  memset(&pi, 0, sizeof pi);
  int err = bpf_prog_get_info_by_fd(h->fd, &pi, &len);
  if (err) {
    nk_throw_errno(env, -err, "bpf_prog_get_info_by_fd", NULL);
    return NULL;
  }
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  char name[BPF_OBJ_NAME_LEN + 1];
  memcpy(name, pi.name, BPF_OBJ_NAME_LEN);
  name[BPF_OBJ_NAME_LEN] = '\0';
  NK_CALL(env, napi_create_object(env, &o));
  nk_set(env, o, "id", nk_u32(env, pi.id));
  nk_set(env, o, "name", nk_str(env, name));
  nk_set(env, o, "type", nk_u32(env, pi.type));
  nk_set(env, o, "typeName", nk_str(env, nk_or_unknown(libbpf_bpf_prog_type_str(pi.type))));
  nk_set(env, o, "tag", nk_str(env, tag));
  return o;
}

static bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  *out = NULL;
  if (nk_is_nullish(env, obj)) return true;
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok) return false;
  if (!has) return true;
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
  if (nk_is_nullish(env, *out)) *out = NULL;
  return true;
}

/* linkCreate(program, targetIfindex, attachType, { flags?, relative?, relativeId?, expectedRevision? })
 * -> link handle; linkCreateAsync(...) -> Promise<link handle> does the same on the libuv pool.
 * Only the multi-program attach points (tcx, netkit) are accepted: they are the only ones nkit
 * uses, and their ordering options share one layout. `relative` is a prog or link handle (the
 * caller sets BPF_F_LINK for a link); relativeId is a prog or link id.
 *
 * The async form exists because every tcx/netkit attach waits for an RCU grace period in the
 * kernel (tens of milliseconds on a busy VM): that must not stall the JS thread. */
typedef struct {
  int prog_fd, rel_fd; /* dup'd, so the caller may close its handles while we work */
  uint32_t ifindex, attach_type, flags, relative_id;
  uint64_t revision;
  int result; /* link fd, or -errno */
  napi_async_work work;
  napi_deferred deferred;
} link_create_args;

static void link_create_args_free(link_create_args *a) {
  if (a->prog_fd >= 0) close(a->prog_fd);
  if (a->rel_fd >= 0) close(a->rel_fd);
  free(a);
}

static link_create_args *parse_link_create(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!nk_args(env, info, 4, argv)) return NULL;
  nk_fd *prog = nk_fd_arg(env, argv[0], "program", NK_FD_PROG);
  if (!prog) return NULL;
  uint32_t ifindex, attach_type, flags = 0, relative_id = 0;
  uint64_t revision = 0;
  int rel_fd = -1;
  if (!nk_get_u32(env, argv[1], "targetIfindex", &ifindex) || !nk_get_u32(env, argv[2], "attachType", &attach_type))
    return NULL;
  napi_value v;
  if (!get_prop(env, argv[3], "flags", &v) || (v && !nk_get_u32(env, v, "flags", &flags))) return NULL;
  if (!get_prop(env, argv[3], "relativeId", &v) || (v && !nk_get_u32(env, v, "relativeId", &relative_id)))
    return NULL;
  if (!get_prop(env, argv[3], "expectedRevision", &v) ||
      (v && !nk_get_u64(env, v, "expectedRevision", &revision)))
    return NULL;
  if (!get_prop(env, argv[3], "relative", &v)) return NULL;
  if (v) {
    nk_fd *rel = nk_fd_arg(env, v, "relative", NK_FD_OTHER);
    if (!rel) return NULL;
    rel_fd = rel->fd;
  }
  if (attach_type != BPF_TCX_INGRESS && attach_type != BPF_TCX_EGRESS && attach_type != BPF_NETKIT_PRIMARY &&
      attach_type != BPF_NETKIT_PEER) {
    nk_throw_errno(env, EINVAL, "bpf_link_create", "attach type must be tcx ingress/egress or netkit primary/peer");
    return NULL;
  }
  link_create_args *a = calloc(1, sizeof *a);
  if (!a) {
    nk_throw_errno(env, ENOMEM, "bpf_link_create", NULL);
    return NULL;
  }
  a->prog_fd = fcntl(prog->fd, F_DUPFD_CLOEXEC, 3);
  a->rel_fd = rel_fd >= 0 ? fcntl(rel_fd, F_DUPFD_CLOEXEC, 3) : -1;
  if (a->prog_fd < 0 || (rel_fd >= 0 && a->rel_fd < 0)) {
    int err = errno;
    link_create_args_free(a);
    nk_throw_errno(env, err, "dup", "program or relative handle");
    return NULL;
  }
  a->ifindex = ifindex;
  a->attach_type = attach_type;
  a->flags = flags;
  a->relative_id = relative_id;
  a->revision = revision;
  return a;
}

static void do_link_create(link_create_args *a) {
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = a->flags);
  uint32_t rel = a->rel_fd >= 0 ? (uint32_t)a->rel_fd : 0;
  if (a->attach_type == BPF_TCX_INGRESS || a->attach_type == BPF_TCX_EGRESS) {
    opts.tcx.relative_fd = rel;
    opts.tcx.relative_id = a->relative_id;
    opts.tcx.expected_revision = a->revision;
  } else {
    opts.netkit.relative_fd = rel;
    opts.netkit.relative_id = a->relative_id;
    opts.netkit.expected_revision = a->revision;
  }
  a->result = bpf_link_create(a->prog_fd, (int)a->ifindex, a->attach_type, &opts);
}

static napi_value link_create_error(napi_env env, const link_create_args *a) {
  char detail[128];
  snprintf(detail, sizeof detail, "attach %s to ifindex %u",
           nk_or_unknown(libbpf_bpf_attach_type_str(a->attach_type)), a->ifindex);
  return nk_make_errno_error(env, -a->result, "bpf_link_create", detail);
}

static napi_value link_create(napi_env env, napi_callback_info info) {
  link_create_args *a = parse_link_create(env, info);
  if (!a) return NULL;
  do_link_create(a);
  if (a->result < 0) {
    napi_throw(env, link_create_error(env, a));
    link_create_args_free(a);
    return NULL;
  }
  int fd = a->result;
  link_create_args_free(a);
  return nk_fd_wrap(env, fd, NK_FD_LINK);
}

static void link_create_execute(napi_env env, void *data) { do_link_create(data); }

static void link_create_complete(napi_env env, napi_status status, void *data) {
  link_create_args *a = data;
  if (status != napi_ok && a->result >= 0) {
    close(a->result);
    a->result = -ECANCELED;
  }
  if (a->result < 0) {
    napi_reject_deferred(env, a->deferred, link_create_error(env, a));
  } else {
    napi_value h = nk_fd_wrap(env, a->result, NK_FD_LINK);
    if (h) {
      napi_resolve_deferred(env, a->deferred, h);
    } else {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_reject_deferred(env, a->deferred, exc);
    }
  }
  napi_delete_async_work(env, a->work);
  link_create_args_free(a);
}

static napi_value link_create_async(napi_env env, napi_callback_info info) {
  link_create_args *a = parse_link_create(env, info);
  if (!a) return NULL;
  napi_value promise, name;
  napi_create_string_utf8(env, "nkit:linkCreate", NAPI_AUTO_LENGTH, &name);
  if (napi_create_promise(env, &a->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, link_create_execute, link_create_complete, a, &a->work) != napi_ok ||
      napi_queue_async_work(env, a->work) != napi_ok) {
    link_create_args_free(a);
    nk_throw_napi(env, "linkCreateAsync");
    return NULL;
  }
  return promise;
}

/* linkUpdate(link, newProgram, oldProgram?): atomically swaps the program; with oldProgram the
 * kernel refuses (EPERM) unless that is the one currently attached. */
static napi_value link_update(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!nk_args(env, info, 3, argv)) return NULL;
  nk_fd *link = nk_fd_arg(env, argv[0], "link", NK_FD_LINK);
  if (!link) return NULL;
  nk_fd *prog = nk_fd_arg(env, argv[1], "newProgram", NK_FD_PROG);
  if (!prog) return NULL;
  LIBBPF_OPTS(bpf_link_update_opts, opts);
  if (!nk_is_nullish(env, argv[2])) {
    nk_fd *old = nk_fd_arg(env, argv[2], "oldProgram", NK_FD_PROG);
    if (!old) return NULL;
    opts.flags = BPF_F_REPLACE;
    opts.old_prog_fd = (uint32_t)old->fd;
  }
  int err = bpf_link_update(link->fd, prog->fd, &opts);
  if (err) {
    nk_throw_errno(env, -err, "bpf_link_update", NULL);
    return NULL;
  }
  return nk_undefined(env);
}

/* linkDetach(link): detaches now, even if other fds or pins still reference the link. */
static napi_value link_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_fd *link = nk_fd_arg(env, argv[0], "link", NK_FD_LINK);
  if (!link) return NULL;
  int err = bpf_link_detach(link->fd);
  if (err) {
    nk_throw_errno(env, -err, "bpf_link_detach", NULL);
    return NULL;
  }
  return nk_undefined(env);
}

/* linkInfo(link) -> { id, type, typeName, progId, ifindex?, cgroupId?, attachType?, attachTypeName? } */
static napi_value link_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], o;
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_fd *link = nk_fd_arg(env, argv[0], "link", NK_FD_LINK);
  if (!link) return NULL;
  struct bpf_link_info li;
  uint32_t len = sizeof li;
  memset(&li, 0, sizeof li);
  int err = bpf_link_get_info_by_fd(link->fd, &li, &len);
  if (err) {
    nk_throw_errno(env, -err, "bpf_link_get_info_by_fd", NULL);
    return NULL;
  }
  NK_CALL(env, napi_create_object(env, &o));
  nk_set(env, o, "id", nk_u32(env, li.id));
  nk_set(env, o, "type", nk_u32(env, li.type));
  nk_set(env, o, "typeName", nk_str(env, nk_or_unknown(libbpf_bpf_link_type_str(li.type))));
  nk_set(env, o, "progId", nk_u32(env, li.prog_id));
  uint32_t ifindex = 0, at = 0;
  bool has = false;
  if (li.type == BPF_LINK_TYPE_TCX) {
    ifindex = li.tcx.ifindex;
    at = li.tcx.attach_type;
    has = true;
  } else if (li.type == BPF_LINK_TYPE_NETKIT) {
    ifindex = li.netkit.ifindex;
    at = li.netkit.attach_type;
    has = true;
  } else if (li.type == BPF_LINK_TYPE_CGROUP) {
    nk_set(env, o, "cgroupId", nk_bigint_u64(env, li.cgroup.cgroup_id));
    nk_set(env, o, "attachType", nk_u32(env, li.cgroup.attach_type));
    nk_set(env, o, "attachTypeName", nk_str(env, nk_or_unknown(libbpf_bpf_attach_type_str(li.cgroup.attach_type))));
  }
  if (has) {
    /* ifindex 0 means the device went away while the link (e.g. through a pin) lives on */
    nk_set(env, o, "ifindex", nk_u32(env, ifindex));
    nk_set(env, o, "attachType", nk_u32(env, at));
    nk_set(env, o, "attachTypeName", nk_str(env, nk_or_unknown(libbpf_bpf_attach_type_str(at))));
  }
  return o;
}

/* The attachments of one hook (a device's tcx/netkit hook, or a cgroup's): { revision: bigint,
 * programs: [{ progId, linkId }] } in execution order; linkId 0 marks a non-link attachment.
 * `what` names the target in errors. */
static napi_value query_attached(napi_env env, int target, uint32_t attach_type, const char *what) {
  uint32_t cap = 64;
  napi_value result = NULL;
  uint32_t *progs = NULL, *links = NULL;
  for (;;) {
    free(progs);
    free(links);
    progs = calloc(cap, sizeof *progs);
    links = calloc(cap, sizeof *links);
    if (!progs || !links) {
      nk_throw_errno(env, ENOMEM, "calloc", "query buffers");
      goto out;
    }
    LIBBPF_OPTS(bpf_prog_query_opts, q, .prog_ids = progs, .link_ids = links, .count = cap);
    int err = bpf_prog_query_opts(target, attach_type, &q);
    if (err == -ENOSPC && q.count > cap) {
      cap = q.count;
      continue;
    }
    if (err) {
      char detail[320];
      snprintf(detail, sizeof detail, "%s on %s", nk_or_unknown(libbpf_bpf_attach_type_str(attach_type)), what);
      nk_throw_errno(env, -err, "bpf_prog_query", detail);
      goto out;
    }
    napi_value o, arr;
    if (napi_create_object(env, &o) != napi_ok || napi_create_array(env, &arr) != napi_ok) {
      nk_throw_napi(env, "napi_create_object");
      goto out;
    }
    for (uint32_t i = 0; i < q.count && i < cap; i++) {
      napi_value e;
      if (napi_create_object(env, &e) != napi_ok) {
        nk_throw_napi(env, "napi_create_object");
        goto out;
      }
      nk_set(env, e, "progId", nk_u32(env, progs[i]));
      nk_set(env, e, "linkId", nk_u32(env, links[i]));
      napi_set_element(env, arr, i, e);
    }
    nk_set(env, o, "revision", nk_bigint_u64(env, q.revision));
    nk_set(env, o, "programs", arr);
    result = o;
    break;
  }
out:
  free(progs);
  free(links);
  return result;
}

/* progQuery(ifindex, attachType) -> the attachments of a device hook (see query_attached). */
static napi_value prog_query(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  uint32_t ifindex, attach_type;
  if (!nk_get_u32(env, argv[0], "ifindex", &ifindex) || !nk_get_u32(env, argv[1], "attachType", &attach_type))
    return NULL;
  char what[32];
  snprintf(what, sizeof what, "ifindex %u", ifindex);
  return query_attached(env, (int)ifindex, attach_type, what);
}

static bool is_cgroup_attach_type(uint32_t t) {
  switch (t) {
  case BPF_CGROUP_INET4_CONNECT:
  case BPF_CGROUP_INET6_CONNECT:
  case BPF_CGROUP_UDP4_SENDMSG:
  case BPF_CGROUP_UDP6_SENDMSG:
  case BPF_CGROUP_UDP4_RECVMSG:
  case BPF_CGROUP_UDP6_RECVMSG:
  case BPF_CGROUP_INET4_GETPEERNAME:
  case BPF_CGROUP_INET6_GETPEERNAME:
    return true;
  default:
    return false;
  }
}

/* Opens a cgroup v2 directory; throws naming it when that fails. */
static int open_cgroup(napi_env env, const char *path, const char *op) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) nk_throw_errno(env, errno, op, path);
  return fd;
}

/* cgroupLinkCreate(program, cgroupPath, attachType) -> link handle: a socket-address hook of a
 * cgroup v2 directory (connect, sendmsg, recvmsg, getpeername), as a bpf_link so it can be pinned
 * and outlive nkitd. Only the hooks the socket load-balancer uses are accepted. */
static napi_value cgroup_link_create(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!nk_args(env, info, 3, argv)) return NULL;
  nk_fd *prog = nk_fd_arg(env, argv[0], "program", NK_FD_PROG);
  if (!prog) return NULL;
  uint32_t attach_type;
  char *path;
  if (!nk_get_u32(env, argv[2], "attachType", &attach_type)) return NULL;
  if (!is_cgroup_attach_type(attach_type)) {
    nk_throw_errno(env, EINVAL, "bpf_link_create", "attach type must be a cgroup connect/sendmsg/recvmsg/getpeername hook");
    return NULL;
  }
  if (!nk_get_string(env, argv[1], "cgroupPath", &path)) return NULL;
  napi_value result = NULL;
  int cg = open_cgroup(env, path, "open cgroup");
  if (cg >= 0) {
    int fd = bpf_link_create(prog->fd, cg, attach_type, NULL);
    if (fd < 0) {
      char detail[320];
      snprintf(detail, sizeof detail, "attach %s to cgroup %s", nk_or_unknown(libbpf_bpf_attach_type_str(attach_type)),
               path);
      nk_throw_errno(env, -fd, "bpf_link_create", detail);
    } else {
      result = nk_fd_wrap(env, fd, NK_FD_LINK);
    }
    close(cg);
  }
  free(path);
  return result;
}

/* cgroupProgQuery(cgroupPath, attachType) -> the programs attached to that cgroup hook itself
 * (not inherited ones), see query_attached. */
static napi_value cgroup_prog_query(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  uint32_t attach_type;
  char *path;
  if (!nk_get_u32(env, argv[1], "attachType", &attach_type)) return NULL;
  if (!nk_get_string(env, argv[0], "cgroupPath", &path)) return NULL;
  napi_value result = NULL;
  int cg = open_cgroup(env, path, "open cgroup");
  if (cg >= 0) {
    result = query_attached(env, cg, attach_type, path);
    close(cg);
  }
  free(path);
  return result;
}

bool nk_register_bpf_link(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"objPin", obj_pin},           {"objGet", obj_get},         {"progInfo", prog_info},
      {"linkCreate", link_create}, {"linkCreateAsync", link_create_async},   {"linkUpdate", link_update}, {"linkDetach", link_detach},
      {"linkInfo", link_info},       {"progQuery", prog_query},
      {"cgroupLinkCreate", cgroup_link_create}, {"cgroupProgQuery", cgroup_prog_query},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]);
}
