/* Network namespaces: validation, identity, and running short operations inside a netns.
 *
 * setns(CLONE_NEWNET) only moves the calling thread, so every in-netns operation runs on a
 * short-lived helper thread: neither the JS thread nor a libuv worker ever changes namespace, and a
 * failure half-way cannot leave a shared thread in a pod's netns. */
#define _GNU_SOURCE
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common.h"

int nk_netns_open(const char *path, char *detail, size_t dlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT)
      snprintf(detail, dlen, "%s does not exist (was the namespace deleted, or never created?)", path);
    else
      snprintf(detail, dlen, "cannot open %s", path);
    return -err;
  }
  struct statfs sfs;
  if (fstatfs(fd, &sfs) < 0) {
    int err = errno;
    close(fd);
    snprintf(detail, dlen, "fstatfs %s", path);
    return -err;
  }
  if ((unsigned long)sfs.f_type != (unsigned long)NSFS_MAGIC) {
    close(fd);
    snprintf(detail, dlen, "%s is not a namespace file (expected a bind mount on nsfs, e.g. /run/netns/NAME)", path);
    return -EINVAL;
  }
  /* A mount/pid/... namespace file would otherwise fail later at setns with a vaguer EINVAL. */
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type >= 0 && type != CLONE_NEWNET) {
    close(fd);
    snprintf(detail, dlen, "%s is a namespace but not a network namespace", path);
    return -EINVAL;
  }
  return fd;
}

typedef struct {
  int nsfd;
  int (*fn)(void *);
  void *arg;
  int result;
  int setns_err;
} in_netns_job;

static void *in_netns_thread(void *p) {
  in_netns_job *job = p;
  if (setns(job->nsfd, CLONE_NEWNET) < 0) {
    job->setns_err = errno;
    return NULL;
  }
  job->result = job->fn(job->arg);
  return NULL;
}

int nk_in_netns(const char *path, int (*fn)(void *arg), void *arg, char *detail, size_t dlen) {
  if (!path) return fn(arg);
  int nsfd = nk_netns_open(path, detail, dlen);
  if (nsfd < 0) return nsfd;
  in_netns_job job = {.nsfd = nsfd, .fn = fn, .arg = arg, .result = 0, .setns_err = 0};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t th;
  int rc = pthread_create(&th, &attr, in_netns_thread, &job);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    close(nsfd);
    snprintf(detail, dlen, "cannot start a helper thread to enter %s", path);
    return -rc;
  }
  pthread_join(th, NULL);
  close(nsfd);
  if (job.setns_err) {
    snprintf(detail, dlen, "setns into %s", path);
    return -job.setns_err;
  }
  return job.result;
}

typedef struct {
  int domain, type, protocol;
  int fd;
} socket_job;

static int socket_fn(void *p) {
  socket_job *j = p;
  j->fd = socket(j->domain, j->type | SOCK_CLOEXEC, j->protocol);
  return j->fd < 0 ? -errno : 0;
}

int nk_netns_socket(const char *path, int domain, int type, int protocol, char *detail, size_t dlen) {
  socket_job j = {.domain = domain, .type = type, .protocol = protocol, .fd = -1};
  int rc = nk_in_netns(path, socket_fn, &j, detail, dlen);
  if (rc < 0) {
    if (j.fd >= 0) close(j.fd);
    if (!detail[0]) snprintf(detail, dlen, "socket(%d, %d, %d)", domain, type, protocol);
    return rc;
  }
  return j.fd;
}

/* ---- async plumbing shared by the exported in-netns operations ---- */

typedef enum { OP_IFINDEX, OP_SYSCTL_WRITE, OP_SYSCTL_READ } netns_op;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  netns_op op;
  char *path; /* NULL: the caller's netns */
  char *name; /* interface name or sysctl key */
  char *value;
  char out[4096];
  size_t out_len;
  uint32_t ifindex;
  int err;
  const char *errop;
  char detail[NK_DETAIL_LEN];
} netns_async;

static void netns_async_free(netns_async *a) {
  free(a->path);
  free(a->name);
  free(a->value);
  free(a);
}

static int ifindex_fn(void *p) {
  netns_async *a = p;
  unsigned idx = if_nametoindex(a->name);
  if (idx == 0) return -(errno ? errno : ENODEV);
  a->ifindex = idx;
  return 0;
}

static int sysctl_fn(void *p) {
  netns_async *a = p;
  char file[512];
  snprintf(file, sizeof file, "/proc/sys/%s", a->name);
  if (a->op == OP_SYSCTL_WRITE) {
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t len = strlen(a->value);
    ssize_t n = write(fd, a->value, len);
    int err = n < 0 ? errno : ((size_t)n != len ? EIO : 0);
    close(fd);
    return -err;
  }
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, a->out, sizeof a->out - 1);
  int err = n < 0 ? errno : 0;
  close(fd);
  if (err) return -err;
  a->out_len = (size_t)n;
  return 0;
}

static void netns_execute(napi_env env, void *data) {
  netns_async *a = data;
  int rc;
  /* Checked up front so callers can tell a bad namespace path from a failure of the operation. */
  if (a->path) {
    int fd = nk_netns_open(a->path, a->detail, sizeof a->detail);
    if (fd < 0) {
      a->err = -fd;
      a->errop = "open netns";
      return;
    }
    close(fd);
  }
  if (a->op == OP_IFINDEX) {
    a->errop = "if_nametoindex";
    rc = nk_in_netns(a->path, ifindex_fn, a, a->detail, sizeof a->detail);
    if (rc < 0 && !a->detail[0]) snprintf(a->detail, sizeof a->detail, "no interface named %s", a->name);
  } else {
    a->errop = a->op == OP_SYSCTL_WRITE ? "sysctl write" : "sysctl read";
    rc = nk_in_netns(a->path, sysctl_fn, a, a->detail, sizeof a->detail);
    if (rc < 0 && !a->detail[0]) snprintf(a->detail, sizeof a->detail, "/proc/sys/%s", a->name);
  }
  a->err = rc < 0 ? -rc : 0;
}

static void netns_complete(napi_env env, napi_status status, void *data) {
  netns_async *a = data;
  if (status != napi_ok && !a->err) {
    a->err = ECANCELED;
    a->errop = "async work";
  }
  if (a->err) {
    napi_reject_deferred(env, a->deferred, nk_make_errno_error(env, a->err, a->errop, a->detail));
  } else if (a->op == OP_IFINDEX) {
    napi_resolve_deferred(env, a->deferred, nk_u32(env, a->ifindex));
  } else if (a->op == OP_SYSCTL_READ) {
    napi_value s;
    napi_create_string_utf8(env, a->out, a->out_len, &s);
    napi_resolve_deferred(env, a->deferred, s);
  } else {
    napi_resolve_deferred(env, a->deferred, nk_undefined(env));
  }
  napi_delete_async_work(env, a->work);
  netns_async_free(a);
}

static napi_value netns_queue(napi_env env, netns_async *a, const char *resource) {
  napi_value promise, name;
  if (napi_create_promise(env, &a->deferred, &promise) != napi_ok) {
    netns_async_free(a);
    nk_throw_napi(env, "napi_create_promise");
    return NULL;
  }
  napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, netns_execute, netns_complete, a, &a->work) != napi_ok ||
      napi_queue_async_work(env, a->work) != napi_ok) {
    /* The promise is already created; reject it rather than leave it pending forever. */
    napi_reject_deferred(env, a->deferred, nk_make_errno_error(env, ENOMEM, resource, "cannot queue async work"));
    netns_async_free(a);
  }
  return promise;
}

/* Reads the optional netns path argument: null/undefined means the caller's own netns. */
static bool get_opt_path(napi_env env, napi_value v, char **out) {
  *out = NULL;
  if (nk_is_nullish(env, v)) return true;
  return nk_get_string(env, v, "netnsPath", out);
}

static bool valid_sysctl_key(const char *k) {
  if (strncmp(k, "net/", 4) != 0 || strstr(k, "..") || strstr(k, "//")) return false;
  for (const char *c = k; *c; c++) {
    bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
              *c == '-' || *c == '.' || *c == '/' || *c == '@';
    if (!ok) return false;
  }
  return true;
}

/* netnsIfNameToIndex(netnsPath | null, name) → Promise<number> */
static napi_value js_ifname_to_index(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  netns_async *a = calloc(1, sizeof *a);
  if (!a) {
    nk_throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  a->op = OP_IFINDEX;
  if (!get_opt_path(env, argv[0], &a->path) || !nk_get_string(env, argv[1], "name", &a->name)) {
    netns_async_free(a);
    return NULL;
  }
  if (strlen(a->name) == 0 || strlen(a->name) >= IFNAMSIZ) {
    netns_async_free(a);
    nk_throw_type(env, "name must be an interface name of 1 to 15 bytes");
    return NULL;
  }
  return netns_queue(env, a, "nkit.netnsIfNameToIndex");
}

static napi_value sysctl_common(napi_env env, napi_callback_info info, bool write) {
  napi_value argv[3];
  if (!nk_args(env, info, 3, argv)) return NULL;
  netns_async *a = calloc(1, sizeof *a);
  if (!a) {
    nk_throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  a->op = write ? OP_SYSCTL_WRITE : OP_SYSCTL_READ;
  if (!get_opt_path(env, argv[0], &a->path) || !nk_get_string(env, argv[1], "key", &a->name) ||
      (write && !nk_get_string(env, argv[2], "value", &a->value))) {
    netns_async_free(a);
    return NULL;
  }
  /* Only per-netns keys make sense here, and the key becomes a path: keep it inside /proc/sys/net. */
  if (!valid_sysctl_key(a->name) || strlen(a->name) > 400) {
    netns_async_free(a);
    nk_throw_type(env, "key must be a /proc/sys path below net/, e.g. net/ipv4/conf/all/rp_filter");
    return NULL;
  }
  return netns_queue(env, a, write ? "nkit.netnsSysctlWrite" : "nkit.netnsSysctlRead");
}

/* netnsSysctlWrite(netnsPath | null, key, value) → Promise<void> */
static napi_value js_sysctl_write(napi_env env, napi_callback_info info) { return sysctl_common(env, info, true); }
/* netnsSysctlRead(netnsPath | null, key) → Promise<string> */
static napi_value js_sysctl_read(napi_env env, napi_callback_info info) { return sysctl_common(env, info, false); }

/* netnsOpen(path) → fd: a validated netns fd (e.g. for IFLA_NET_NS_FD); close with netnsClose. */
static napi_value js_netns_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char *path = NULL;
  if (!nk_args(env, info, 1, argv) || !nk_get_string(env, argv[0], "path", &path)) return NULL;
  char detail[NK_DETAIL_LEN] = "";
  int fd = nk_netns_open(path, detail, sizeof detail);
  free(path);
  if (fd < 0) {
    nk_throw_errno(env, -fd, "open netns", detail);
    return NULL;
  }
  return nk_i32(env, fd);
}

/* netnsClose(fd) */
static napi_value js_netns_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!nk_args(env, info, 1, argv) || !nk_get_i32(env, argv[0], "fd", &fd)) return NULL;
  if (fd < 0 || close(fd) < 0) {
    nk_throw_errno(env, fd < 0 ? EBADF : errno, "close", NULL);
    return NULL;
  }
  return nk_undefined(env);
}

/* netnsInode(path) → number: equal inodes (on nsfs) mean the same namespace. */
static napi_value js_netns_inode(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char *path = NULL;
  if (!nk_args(env, info, 1, argv) || !nk_get_string(env, argv[0], "path", &path)) return NULL;
  char detail[NK_DETAIL_LEN] = "";
  int fd = nk_netns_open(path, detail, sizeof detail);
  free(path);
  if (fd < 0) {
    nk_throw_errno(env, -fd, "open netns", detail);
    return NULL;
  }
  struct stat st;
  int rc = fstat(fd, &st);
  int err = errno;
  close(fd);
  if (rc < 0) {
    nk_throw_errno(env, err, "fstat", NULL);
    return NULL;
  }
  napi_value r;
  napi_create_double(env, (double)st.st_ino, &r);
  return r;
}

napi_value nk_register_netns(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"netnsOpen", js_netns_open},
      {"netnsClose", js_netns_close},
      {"netnsInode", js_netns_inode},
      {"netnsIfNameToIndex", js_ifname_to_index},
      {"netnsSysctlWrite", js_sysctl_write},
      {"netnsSysctlRead", js_sysctl_read},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]) ? exports : NULL;
}
