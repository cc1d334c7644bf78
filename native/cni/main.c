// nkit-cni: the CNI 1.1 plugin of nkit. A thin shim: it validates the call, forwards it to nkitd's
// CNI endpoint (a unix socket, conflist key "socket", default /run/nkit/cni.sock) and prints
// nkitd's answer. C11 and libc only, so one call costs about a millisecond (Node would cost ~150).
//
// Files: main.c (this), command.c (the CNI commands), transport.c (socket, DEL queue), json.c (the
// scanner), cni.c (versions, error codes, error output), buf.c (strings).
//
// Socket protocol (authoritative description: src/cni/protocol.ts; keep both in step):
//   one request per connection; the shim writes one JSON object on a single line ending in "\n":
//     {"v":1,"command":"ADD","containerId":"…","netns":"…","ifName":"…","args":"<CNI_ARGS>",
//      "path":"<CNI_PATH>","config":{…the network configuration from stdin, minified…}}
//   nkitd answers with one JSON line and closes the connection:
//     {"ok":true,"result":{…CNI result…}}     printed on stdout, exit 0
//     {"ok":true}                             nothing printed, exit 0 (DEL, CHECK, STATUS, GC)
//     {"ok":false,"error":{"cniVersion":…,"code":N,"msg":…,"details":…}}   printed, exit 1
//
// Local behaviour:
//   - no CNI_COMMAND: prints "CNI nkit-cni plugin vX.Y.Z" (Nomad's fingerprint) and exits 0;
//   - VERSION is answered here, without nkitd;
//   - nkitd unreachable: ADD/CHECK/GC fail with code 11 (try again), STATUS with 50; DEL is queued
//     as a file in <socket dir>/cni-del-queue/ for nkitd to replay before it serves anything else,
//     and succeeds (see src/cni/protocol.ts, "DEL while nkitd is down");
//   - timeouts: connect 2 s (or the call timeout if shorter), whole call "timeoutMs" from the
//     network configuration (default 30000).
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "command.h"

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = getenv("CNI_COMMAND");
  if (!cmd || !*cmd) {
    command_about();
    return 0;
  }
  struct buf in = {0};
  command_read_stdin(&in);
  if (strcmp(cmd, "VERSION") == 0) return command_version(&in);
  return command_forward(cmd, &in);
}
