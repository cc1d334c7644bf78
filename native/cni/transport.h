// How a request reaches nkitd: one unix-socket connection per call, one JSON line each way; and,
// for DEL while nkitd is down, a queue file next to the socket (see src/cni/protocol.ts).
#ifndef NKIT_CNI_TRANSPORT_H
#define NKIT_CNI_TRANSPORT_H
#include "buf.h"

#define TRANSPORT_MAX_RESPONSE (4u << 20)
#define TRANSPORT_QUEUE_DIR "cni-del-queue"

long long now_ms(void);
// Milliseconds left until deadline (a now_ms() value), 0 when past.
int remaining(long long deadline);
// Connects to a unix socket within timeout_ms. Returns the fd, or -1 with *err set (ETIMEDOUT when
// the listen backlog stayed full).
int transport_dial(const char *path, int timeout_ms, int *err);
// Sends the request and reads one response line (or up to EOF). Returns 0 or an errno value
// (EMSGSIZE for a response over TRANSPORT_MAX_RESPONSE).
int transport_exchange(int fd, const struct buf *req, struct buf *resp, long long deadline);
// Writes the DEL request to <socket dir>/cni-del-queue/del-<hash>.json (atomically: temp file +
// rename), one file per (container, interface); nkitd replays the queue before it serves anything
// else. Returns the file's path, or NULL with errno set.
char *transport_queue_del(const char *socket_path, const struct buf *req, const char *cid, const char *ifname);

#endif
