#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int remaining(long long deadline) {
  long long left = deadline - now_ms();
  return left > 0 ? (int)left : 0;
}

int transport_dial(const char *path, int timeout_ms, int *err) {
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

int transport_exchange(int fd, const struct buf *req, struct buf *resp, long long deadline) {
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
      if (resp->len > TRANSPORT_MAX_RESPONSE) return EMSGSIZE;
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

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
  for (size_t k = 0; k < n; k++) {
    h ^= (unsigned char)s[k];
    h *= 1099511628211ull;
  }
  return h;
}

char *transport_queue_del(const char *socket_path, const struct buf *req, const char *cid, const char *ifname) {
  char *dir = fmt("%s", socket_path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = 0;
  else *slash = 0;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return NULL;
  char *qdir = fmt("%s/%s", strcmp(dir, "/") == 0 ? "" : dir, TRANSPORT_QUEUE_DIR);
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
