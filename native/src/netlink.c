/* Netlink transport: sockets (optionally created inside another netns) and request/response
 * transactions on the libuv pool. Message encoding and decoding live in TypeScript; this file only
 * moves bytes and knows enough of nlmsghdr to tell when every request got its final answer. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "netns.h"

#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

/* Large dumps (thousands of routes or neighbours) arrive faster than one worker drains them. */
#define NK_NL_RCVBUF (4 * 1024 * 1024)
/* Upper bound on requests per transaction; batches are a handful of messages in practice. */
#define NK_NL_MAX_REQS 256

/* ---- nlOpen ---- */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *path;
  int protocol;
  int fd;
  int err;
  const char *errop;
  char detail[NK_DETAIL_LEN];
} open_async;

static int setopt_int(int fd, int level, int name, int val) {
  return setsockopt(fd, level, name, &val, sizeof val) < 0 ? -errno : 0;
}

static void open_execute(napi_env env, void *data) {
  open_async *a = data;
  if (a->path) {
    int nsfd = nk_netns_open(a->path, a->detail, sizeof a->detail);
    if (nsfd < 0) {
      a->err = -nsfd;
      a->errop = "open netns";
      return;
    }
    close(nsfd);
  }
  int fd = nk_netns_socket(a->path, AF_NETLINK, SOCK_RAW, a->protocol, a->detail, sizeof a->detail);
  if (fd < 0) {
    a->err = -fd;
    a->errop = a->path ? "open netlink socket in netns" : "open netlink socket";
    return;
  }
  int rc;
  /* Extended acks carry the kernel's explanation ("mtu greater than device maximum"); capped acks
   * keep error replies small; strict checking makes the kernel reject malformed requests and honour
   * dump filters instead of silently ignoring them. */
  if ((rc = setopt_int(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1)) < 0 ||
      (rc = setopt_int(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1)) < 0) {
    a->errop = "setsockopt NETLINK_EXT_ACK/CAP_ACK";
    goto fail;
  }
  /* Strict checking exists since 4.20; without it requests still work, only less strictly. */
  (void)setopt_int(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
  /* SO_RCVBUFFORCE lifts the rmem_max cap for root; fall back to the capped option otherwise. */
  if (setopt_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, NK_NL_RCVBUF) < 0)
    (void)setopt_int(fd, SOL_SOCKET, SO_RCVBUF, NK_NL_RCVBUF);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    rc = -errno;
    a->errop = "bind netlink socket";
    goto fail;
  }
  a->fd = fd;
  return;
fail:
  a->err = -rc;
  close(fd);
}

static void open_complete(napi_env env, napi_status status, void *data) {
  open_async *a = data;
  if (status != napi_ok && !a->err) {
    a->err = ECANCELED;
    a->errop = "async work";
  }
  if (a->err)
    napi_reject_deferred(env, a->deferred, nk_make_errno_error(env, a->err, a->errop, a->detail));
  else
    napi_resolve_deferred(env, a->deferred, nk_i32(env, a->fd));
  napi_delete_async_work(env, a->work);
  free(a->path);
  free(a);
}

/* nlOpen(netnsPath | null, protocol) → Promise<fd> */
static napi_value js_nl_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  open_async *a = calloc(1, sizeof *a);
  if (!a) {
    nk_throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  a->fd = -1;
  uint32_t proto;
  if ((!nk_is_nullish(env, argv[0]) && !nk_get_string(env, argv[0], "netnsPath", &a->path)) ||
      !nk_get_u32(env, argv[1], "protocol", &proto)) {
    free(a->path);
    free(a);
    return NULL;
  }
  a->protocol = (int)proto;
  napi_value promise, name;
  if (napi_create_promise(env, &a->deferred, &promise) != napi_ok) {
    free(a->path);
    free(a);
    nk_throw_napi(env, "napi_create_promise");
    return NULL;
  }
  napi_create_string_utf8(env, "nkit.nlOpen", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, open_execute, open_complete, a, &a->work) != napi_ok ||
      napi_queue_async_work(env, a->work) != napi_ok) {
    napi_reject_deferred(env, a->deferred, nk_make_errno_error(env, ENOMEM, "nlOpen", "cannot queue async work"));
    free(a->path);
    free(a);
  }
  return promise;
}

/* ---- nlTransact ---- */

typedef struct {
  uint32_t seq;
  bool dump;    /* finished by NLMSG_DONE (or an error) */
  bool ack;     /* finished by NLMSG_ERROR (ack or error) */
  bool done;
} pending_req;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int timeout_ms;
  uint8_t *req;
  size_t req_len;
  pending_req reqs[NK_NL_MAX_REQS];
  size_t nreqs;
  /* Received datagrams, each holding one or more whole netlink messages. */
  uint8_t **bufs;
  size_t *lens;
  size_t nbufs, cap;
  int err;
  const char *errop;
  char detail[NK_DETAIL_LEN];
} transact_async;

static void transact_free(transact_async *a) {
  for (size_t i = 0; i < a->nbufs; i++) free(a->bufs[i]);
  free(a->bufs);
  free(a->lens);
  free(a->req);
  free(a);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records which messages in the request need an answer and what kind of answer ends them. */
static int scan_request(transact_async *a) {
  size_t off = 0;
  while (off + sizeof(struct nlmsghdr) <= a->req_len) {
    struct nlmsghdr h;
    memcpy(&h, a->req + off, sizeof h);
    if (h.nlmsg_len < sizeof h || off + h.nlmsg_len > a->req_len) {
      snprintf(a->detail, sizeof a->detail, "malformed request message at byte %zu", off);
      return -EINVAL;
    }
    if (a->nreqs == NK_NL_MAX_REQS) {
      snprintf(a->detail, sizeof a->detail, "more than %d messages in one transaction", NK_NL_MAX_REQS);
      return -E2BIG;
    }
    pending_req *r = &a->reqs[a->nreqs++];
    r->seq = h.nlmsg_seq;
    r->dump = (h.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    r->ack = (h.nlmsg_flags & NLM_F_ACK) != 0;
    r->done = false;
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  if (a->nreqs == 0 || off < a->req_len) {
    snprintf(a->detail, sizeof a->detail, "request holds no complete netlink message");
    return -EINVAL;
  }
  return 0;
}

static pending_req *find_req(transact_async *a, uint32_t seq) {
  for (size_t i = 0; i < a->nreqs; i++)
    if (a->reqs[i].seq == seq) return &a->reqs[i];
  return NULL;
}

/* Marks requests answered by the messages in one datagram; returns whether it concerned us. */
static bool account(transact_async *a, const uint8_t *buf, size_t len) {
  bool ours = false;
  size_t off = 0;
  while (off + sizeof(struct nlmsghdr) <= len) {
    struct nlmsghdr h;
    memcpy(&h, buf + off, sizeof h);
    if (h.nlmsg_len < sizeof h || off + h.nlmsg_len > len) break;
    pending_req *r = find_req(a, h.nlmsg_seq);
    if (r) {
      ours = true;
      if (h.nlmsg_type == NLMSG_ERROR || h.nlmsg_type == NLMSG_DONE) {
        /* With NLM_F_ACK a reply is followed by the ack, which is the final word; a DONE ends a dump. */
        if (h.nlmsg_type == NLMSG_ERROR || r->dump) r->done = true;
      } else if (!r->dump && !r->ack && !(h.nlmsg_flags & NLM_F_MULTI)) {
        r->done = true; /* a plain GET answered with a single message */
      }
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  return ours;
}

static bool all_done(transact_async *a) {
  for (size_t i = 0; i < a->nreqs; i++)
    if (!a->reqs[i].done) return false;
  return true;
}

static int keep(transact_async *a, uint8_t *buf, size_t len) {
  if (a->nbufs == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 8;
    uint8_t **b = realloc(a->bufs, cap * sizeof *b);
    if (!b) return -ENOMEM;
    a->bufs = b;
    size_t *l = realloc(a->lens, cap * sizeof *l);
    if (!l) return -ENOMEM;
    a->lens = l;
    a->cap = cap;
  }
  a->bufs[a->nbufs] = buf;
  a->lens[a->nbufs] = len;
  a->nbufs++;
  return 0;
}

static void transact_execute(napi_env env, void *data) {
  transact_async *a = data;
  int rc = scan_request(a);
  if (rc < 0) {
    a->err = -rc;
    a->errop = "netlink request";
    return;
  }
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n;
  do n = sendto(a->fd, a->req, a->req_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    a->err = errno;
    a->errop = "netlink send";
    return;
  }
  int64_t deadline = now_ms() + a->timeout_ms;
  while (!all_done(a)) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      a->err = ETIMEDOUT;
      a->errop = "netlink receive";
      snprintf(a->detail, sizeof a->detail, "no complete answer from the kernel within %d ms", a->timeout_ms);
      return;
    }
    struct pollfd pfd = {.fd = a->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, (int)left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) {
      a->err = errno;
      a->errop = "netlink poll";
      return;
    }
    if (pr == 0) continue;
    /* Peek with MSG_TRUNC to learn the datagram's full size so nothing is ever cut off. */
    struct sockaddr_nl from;
    struct iovec iov = {.iov_base = NULL, .iov_len = 0};
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    do n = recvmsg(a->fd, &mh, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) {
      a->err = errno;
      a->errop = "netlink receive";
      if (errno == ENOBUFS)
        snprintf(a->detail, sizeof a->detail, "the socket receive buffer overflowed; replies were lost");
      return;
    }
    size_t size = n > 0 ? (size_t)n : 1;
    uint8_t *buf = malloc(size);
    if (!buf) {
      a->err = ENOMEM;
      a->errop = "malloc";
      return;
    }
    iov.iov_base = buf;
    iov.iov_len = size;
    mh.msg_namelen = sizeof from;
    do n = recvmsg(a->fd, &mh, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      int err = errno;
      free(buf);
      if (err == EAGAIN || err == EWOULDBLOCK) continue;
      a->err = err;
      a->errop = "netlink receive";
      return;
    }
    /* Only the kernel (port 0) answers requests; stale replies to an earlier, timed-out transaction
     * carry sequence numbers that are no longer pending and are dropped here. */
    if (from.nl_pid != 0 || !account(a, buf, (size_t)n)) {
      free(buf);
      continue;
    }
    if ((rc = keep(a, buf, (size_t)n)) < 0) {
      free(buf);
      a->err = -rc;
      a->errop = "malloc";
      return;
    }
  }
}

static void transact_complete(napi_env env, napi_status status, void *data) {
  transact_async *a = data;
  if (status != napi_ok && !a->err) {
    a->err = ECANCELED;
    a->errop = "async work";
  }
  if (a->err) {
    napi_reject_deferred(env, a->deferred, nk_make_errno_error(env, a->err, a->errop, a->detail));
  } else {
    napi_value arr;
    napi_create_array_with_length(env, a->nbufs, &arr);
    for (size_t i = 0; i < a->nbufs; i++) {
      napi_value b = nk_buffer_copy(env, a->bufs[i], a->lens[i]);
      if (b) napi_set_element(env, arr, (uint32_t)i, b);
    }
    napi_resolve_deferred(env, a->deferred, arr);
  }
  napi_delete_async_work(env, a->work);
  transact_free(a);
}

/* nlTransact(fd, request, timeoutMs) → Promise<Buffer[]>: sends every message in request and
 * collects replies until each one got its final answer. One transaction per socket at a time. */
static napi_value js_nl_transact(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  uint32_t timeout;
  void *bytes;
  size_t len;
  if (!nk_args(env, info, 3, argv) || !nk_get_i32(env, argv[0], "fd", &fd) ||
      !nk_get_bytes(env, argv[1], "request", &bytes, &len) || !nk_get_u32(env, argv[2], "timeoutMs", &timeout))
    return NULL;
  if (fd < 0) {
    nk_throw_errno(env, EBADF, "nlTransact", "socket is closed");
    return NULL;
  }
  transact_async *a = calloc(1, sizeof *a);
  if (!a || !(a->req = malloc(len ? len : 1))) {
    free(a);
    nk_throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  /* Copied because the JS buffer may be reused or collected while the worker runs. */
  memcpy(a->req, bytes, len);
  a->req_len = len;
  a->fd = fd;
  a->timeout_ms = timeout > 3600000 ? 3600000 : (int)timeout;
  napi_value promise, name;
  if (napi_create_promise(env, &a->deferred, &promise) != napi_ok) {
    transact_free(a);
    nk_throw_napi(env, "napi_create_promise");
    return NULL;
  }
  napi_create_string_utf8(env, "nkit.nlTransact", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, transact_execute, transact_complete, a, &a->work) != napi_ok ||
      napi_queue_async_work(env, a->work) != napi_ok) {
    napi_reject_deferred(env, a->deferred, nk_make_errno_error(env, ENOMEM, "nlTransact", "cannot queue async work"));
    transact_free(a);
  }
  return promise;
}

/* nlClose(fd) */
static napi_value js_nl_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!nk_args(env, info, 1, argv) || !nk_get_i32(env, argv[0], "fd", &fd)) return NULL;
  if (fd < 0 || close(fd) < 0) {
    nk_throw_errno(env, fd < 0 ? EBADF : errno, "nlClose", NULL);
    return NULL;
  }
  return nk_undefined(env);
}

napi_value nk_register_netlink(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"nlOpen", js_nl_open},
      {"nlTransact", js_nl_transact},
      {"nlClose", js_nl_close},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]) ? exports : NULL;
}
