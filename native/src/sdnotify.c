/* systemd notify protocol transport: Node's dgram module has no AF_UNIX datagram sockets, so the
 * addon sends (and, for tests, receives) the datagrams. Abstract socket names ("@...") work too. */
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static bool fill_addr(napi_env env, const char *path, struct sockaddr_un *sa, socklen_t *len) {
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof sa->sun_path) {
    nk_throw_errno(env, EINVAL, "sd_notify", "socket path empty or too long");
    return false;
  }
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, path, n);
  if (path[0] == '@') sa->sun_path[0] = '\0';
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
  return true;
}

/* sdNotify(socketPath, message): one datagram, as sd_notify(3) sends it. */
static napi_value sd_notify(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  char *path = NULL, *msg = NULL;
  if (!nk_get_string(env, argv[0], "socketPath", &path)) return NULL;
  if (!nk_get_string(env, argv[1], "message", &msg)) {
    free(path);
    return NULL;
  }
  struct sockaddr_un sa;
  socklen_t len;
  napi_value ret = NULL;
  if (fill_addr(env, path, &sa, &len)) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      nk_throw_errno(env, errno, "socket", "AF_UNIX datagram");
    } else {
      if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        nk_throw_errno(env, errno, "sendto", path);
      else
        ret = nk_undefined(env);
      close(fd);
    }
  }
  free(path);
  free(msg);
  return ret;
}

/* unixDgramBind(path) -> fd: a receiving socket (used by tests to play systemd). */
static napi_value dgram_bind(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  char *path = NULL;
  if (!nk_get_string(env, argv[0], "path", &path)) return NULL;
  struct sockaddr_un sa;
  socklen_t len;
  napi_value ret = NULL;
  if (fill_addr(env, path, &sa, &len)) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      nk_throw_errno(env, errno, "socket", "AF_UNIX datagram");
    } else if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
      nk_throw_errno(env, errno, "bind", path);
      close(fd);
    } else {
      ret = nk_i32(env, fd);
    }
  }
  free(path);
  return ret;
}

/* unixDgramRecv(fd, timeoutMs) -> string | null (null on timeout). Blocks the caller: test use only. */
static napi_value dgram_recv(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  int32_t fd, timeout;
  if (!nk_get_i32(env, argv[0], "fd", &fd) || !nk_get_i32(env, argv[1], "timeoutMs", &timeout)) return NULL;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = poll(&p, 1, timeout);
  if (r < 0) {
    nk_throw_errno(env, errno, "poll", NULL);
    return NULL;
  }
  if (r == 0) return nk_null(env);
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
  if (n < 0) {
    nk_throw_errno(env, errno, "recv", NULL);
    return NULL;
  }
  buf[n] = '\0';
  return nk_str(env, buf);
}

static napi_value dgram_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (!nk_get_i32(env, argv[0], "fd", &fd)) return NULL;
  close(fd);
  return nk_undefined(env);
}

napi_value nk_register_sdnotify(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"sdNotify", sd_notify},
      {"unixDgramBind", dgram_bind},
      {"unixDgramRecv", dgram_recv},
      {"unixDgramClose", dgram_close},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]) ? exports : NULL;
}
