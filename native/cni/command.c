#include "command.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "cni.h"
#include "json.h"
#include "transport.h"

#ifndef NKIT_VERSION
#define NKIT_VERSION "0.0.0"
#endif

#define PROTOCOL_VERSION 1
#define MAX_STDIN (1u << 20)
#define DEFAULT_SOCKET "/run/nkit/cni.sock"
#define DEFAULT_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 2000
#define MAX_TIMEOUT_MS 600000
#define MAX_SOCKET_PATH (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

// One forwarded call: what the environment and the network configuration say.
struct call {
  const char *cmd, *cid, *ifname, *socket_path;
  bool is_del, is_status;
  int timeout_ms;
  struct buf conf; // the network configuration, minified
};

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v ? v : "";
}

static void require_env(const char *cmd, const char *name) {
  if (!*env(name))
    fail(E_INVALID_ENV, fmt("%s is required for %s", name, cmd),
         fmt("the runtime must set %s in the plugin's environment", name));
}

void command_about(void) {
  printf("CNI nkit-cni plugin v%s\n", NKIT_VERSION);
  cni_print_tables();
  printf("Forwards CNI calls to nkitd (conflist keys: mode ipam|wire, socket, default %s)\n", DEFAULT_SOCKET);
}

void command_read_stdin(struct buf *in) {
  buf_reserve(in, 0);
  for (;;) {
    buf_reserve(in, 65536);
    ssize_t r = read(STDIN_FILENO, in->p + in->len, 65536);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(E_IO, "nkit-cni: cannot read the network configuration from stdin", strerror(errno));
    }
    in->len += (size_t)r;
    in->p[in->len] = 0;
    if (in->len > MAX_STDIN)
      fail(E_IO, "nkit-cni: the network configuration on stdin is larger than 1 MiB", "");
  }
}

int command_version(const struct buf *in) {
  const char *want = "1.1.0";
  size_t k = 0;
  while (k < in->len && strchr(" \t\r\n", in->p[k])) k++;
  if (k < in->len) {
    struct doc d;
    const char *err = json_parse_object(in->p, in->len, NULL, &d);
    if (err) fail(E_DECODE, "nkit-cni: VERSION input is not a JSON object", err);
    bool bad;
    char *v = json_get_string(in->p, &d, "cniVersion", 15, &bad);
    if (v && cni_version_supported(v)) want = v;
  }
  printf("{\"cniVersion\":\"%s\",\"supportedVersions\":[", want);
  for (unsigned j = 0; j < cni_n_supported_versions; j++)
    printf("%s\"%s\"", j ? "," : "", cni_supported_versions[j]);
  printf("]}\n");
  return 0;
}

// The environment the command needs, and the few configuration keys the shim itself reads.
static void load_call(struct call *c, const char *cmd, const struct buf *in) {
  bool needs_netns = false, needs_container = true;
  if (strcmp(cmd, "ADD") == 0 || strcmp(cmd, "CHECK") == 0) needs_netns = true;
  else if (strcmp(cmd, "STATUS") == 0 || strcmp(cmd, "GC") == 0) needs_container = false;
  else if (strcmp(cmd, "DEL") != 0)
    fail(E_INVALID_ENV, fmt("unknown CNI_COMMAND \"%s\"", cmd),
         "nkit-cni implements ADD, DEL, CHECK, STATUS, GC and VERSION");
  c->cmd = cmd;
  c->is_del = strcmp(cmd, "DEL") == 0;
  c->is_status = strcmp(cmd, "STATUS") == 0;

  struct doc d;
  const char *err = json_parse_object(in->p, in->len, &c->conf, &d);
  if (err) fail(E_DECODE, "nkit-cni: the network configuration on stdin is not a JSON object", err);
  bool bad;
  char *version = json_get_string(in->p, &d, "cniVersion", 15, &bad);
  if (bad || !version)
    fail(E_INVALID_CONFIG, "network configuration: \"cniVersion\" is missing or not a string",
         "e.g. \"cniVersion\": \"1.1.0\"");
  if (!cni_version_supported(version))
    fail(E_INCOMPATIBLE_VERSION, fmt("CNI version \"%s\" is not supported by nkit-cni", version),
         fmt("supported versions: %s", cni_supported_list()));
  cni_set_version(version);

  c->socket_path = json_get_string(in->p, &d, "socket", MAX_SOCKET_PATH, &bad);
  if (bad)
    fail(E_INVALID_CONFIG, "network configuration: \"socket\" must be a string naming a unix socket path",
         fmt("at most %zu bytes, absolute, e.g. %s", MAX_SOCKET_PATH, DEFAULT_SOCKET));
  if (!c->socket_path) c->socket_path = DEFAULT_SOCKET;
  if (c->socket_path[0] != '/')
    fail(E_INVALID_CONFIG, fmt("network configuration: \"socket\" (%s) is not an absolute path", c->socket_path),
         fmt("e.g. %s", DEFAULT_SOCKET));

  c->timeout_ms = DEFAULT_TIMEOUT_MS;
  const struct member *tm = json_get(&d, "timeoutMs");
  if (tm) {
    char *end = NULL;
    long v = tm->kind == 'n' ? strtol(in->p + tm->start, &end, 10) : -1;
    if (tm->kind != 'n' || end != in->p + tm->end || v < 1 || v > MAX_TIMEOUT_MS)
      fail(E_INVALID_CONFIG, "network configuration: \"timeoutMs\" must be an integer from 1 to 600000",
           "milliseconds nkit-cni waits for nkitd's answer (default 30000)");
    c->timeout_ms = (int)v;
  }

  c->cid = env("CNI_CONTAINERID");
  c->ifname = env("CNI_IFNAME");
  if (needs_container) {
    require_env(cmd, "CNI_CONTAINERID");
    require_env(cmd, "CNI_IFNAME");
  }
  if (needs_netns) require_env(cmd, "CNI_NETNS");
}

// The one-line request of src/cni/protocol.ts.
static void build_request(const struct call *c, struct buf *req) {
  char num[16];
  snprintf(num, sizeof num, "%d", PROTOCOL_VERSION);
  buf_puts(req, "{\"v\":");
  buf_puts(req, num);
  buf_puts(req, ",\"command\":");
  buf_json_str(req, c->cmd);
  buf_puts(req, ",\"containerId\":");
  buf_json_str(req, c->cid);
  buf_puts(req, ",\"netns\":");
  buf_json_str(req, env("CNI_NETNS"));
  buf_puts(req, ",\"ifName\":");
  buf_json_str(req, c->ifname);
  buf_puts(req, ",\"args\":");
  buf_json_str(req, env("CNI_ARGS"));
  buf_puts(req, ",\"path\":");
  buf_json_str(req, env("CNI_PATH"));
  buf_puts(req, ",\"config\":");
  buf_put(req, c->conf.p, c->conf.len);
  buf_puts(req, "}\n");
}

// Connects to nkitd; a DEL it cannot deliver is queued (then *queued names the file and a -1
// return means "done, nkitd replays it"). Any other failure is reported here.
static int connect_or_queue(const struct call *c, const struct buf *req, char **queued) {
  int connect_ms = c->timeout_ms < CONNECT_TIMEOUT_MS ? c->timeout_ms : CONNECT_TIMEOUT_MS;
  int e = 0;
  int fd = transport_dial(c->socket_path, connect_ms, &e);
  if (fd < 0 && c->is_del && (e == ENOENT || e == ECONNREFUSED)) {
    *queued = transport_queue_del(c->socket_path, req, c->cid, c->ifname);
    if (!*queued)
      fail(E_TRY_AGAIN, fmt("nkitd is not reachable at %s and the DEL could not be queued", c->socket_path),
           fmt("connect: %s; queueing in %s next to the socket failed: %s", strerror(e), TRANSPORT_QUEUE_DIR,
               strerror(errno)));
    // nkitd may have started between the first attempt and the queue write: ask once more, so a
    // daemon that already replayed its queue still sees this DEL now.
    return transport_dial(c->socket_path, connect_ms, &e);
  }
  if (fd >= 0) return fd;
  int code = c->is_status ? E_STATUS_UNAVAILABLE
             : (e == ENOENT || e == ECONNREFUSED || e == ETIMEDOUT) ? E_TRY_AGAIN
                                                                     : E_IO;
  if (e == ETIMEDOUT)
    fail(code, fmt("nkitd at %s did not accept the connection in time (its listen queue is full)", c->socket_path),
         fmt("%s for container \"%s\"; retry later", c->cmd, c->cid));
  fail(code, fmt("nkitd is not reachable at %s", c->socket_path),
       fmt("connect: %s; is nkitd running (systemctl status nkitd) and is \"socket\" in the network "
           "configuration right?",
           strerror(e)));
}

// Prints nkitd's answer: the CNI result (exit 0) or its CNI error (exit 1).
static int print_answer(const struct call *c, const struct buf *resp, const char *queued) {
  size_t rlen = resp->len;
  while (rlen > 0 && (resp->p[rlen - 1] == '\n' || resp->p[rlen - 1] == '\r')) rlen--;
  if (rlen == 0)
    fail(c->is_status ? E_STATUS_UNAVAILABLE : E_PROTOCOL,
         fmt("nkitd at %s closed the connection without an answer", c->socket_path),
         fmt("%s for container \"%s\"; see nkitd's log", c->cmd, c->cid));
  struct doc rd;
  const char *err = json_parse_object(resp->p, rlen, NULL, &rd);
  const struct member *ok = err ? NULL : json_get(&rd, "ok");
  if (err || !ok || ok->kind != 'b')
    fail(E_PROTOCOL, fmt("nkitd at %s sent an invalid response", c->socket_path),
         err ? err : "no boolean \"ok\" member");
  if (resp->p[ok->start] == 't') {
    const struct member *res = json_get(&rd, "result");
    if (res && res->kind == 'o') {
      fwrite(resp->p + res->start, 1, res->end - res->start, stdout);
      fputc('\n', stdout);
    }
    if (fflush(stdout) != 0) return 1;
    if (queued) unlink(queued); // delivered live: nkitd need not replay it again
    return 0;
  }
  const struct member *er = json_get(&rd, "error");
  if (!er || er->kind != 'o')
    fail(E_PROTOCOL, fmt("nkitd at %s sent an invalid response", c->socket_path),
         "\"ok\":false without an \"error\" object");
  fwrite(resp->p + er->start, 1, er->end - er->start, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  return 1;
}

int command_forward(const char *cmd, const struct buf *in) {
  struct call c = {0};
  load_call(&c, cmd, in);
  struct buf req = {0};
  build_request(&c, &req);

  long long deadline = now_ms() + c.timeout_ms;
  char *queued = NULL;
  int fd = connect_or_queue(&c, &req, &queued);
  if (fd < 0) return 0; // queued

  struct buf resp = {0};
  buf_reserve(&resp, 0);
  int e = transport_exchange(fd, &req, &resp, deadline);
  close(fd);
  if (e == ETIMEDOUT)
    fail(c.is_status ? E_STATUS_UNAVAILABLE : E_TRY_AGAIN,
         fmt("nkitd at %s did not answer within %d ms", c.socket_path, c.timeout_ms),
         fmt("%s for container \"%s\"; nkitd may still complete it; raise \"timeoutMs\" in the network "
             "configuration if nkitd is just slow",
             cmd, c.cid));
  if (e == EMSGSIZE) fail(E_PROTOCOL, fmt("nkitd at %s sent a response larger than 4 MiB", c.socket_path), "");
  if (e)
    fail(c.is_status ? E_STATUS_UNAVAILABLE : E_IO, fmt("talking to nkitd at %s failed", c.socket_path),
         strerror(e));
  return print_answer(&c, &resp, queued);
}
