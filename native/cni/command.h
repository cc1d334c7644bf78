// The CNI commands: VERSION answered locally, ADD/DEL/CHECK/STATUS/GC validated and forwarded to
// nkitd, whose answer is printed as the CNI result or error.
#ifndef NKIT_CNI_COMMAND_H
#define NKIT_CNI_COMMAND_H
#include "buf.h"

// The run without CNI_COMMAND: Nomad's fingerprint reads the first line ("CNI nkit-cni plugin vX").
void command_about(void);
// Reads the network configuration (at most 1 MiB) from stdin.
void command_read_stdin(struct buf *in);
int command_version(const struct buf *in);
// ADD, DEL, CHECK, STATUS or GC; anything else is refused with code 4.
int command_forward(const char *cmd, const struct buf *in);

#endif
