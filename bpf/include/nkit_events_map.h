/* The drop event ring both BPF objects write (`nkit monitor`): the datapath for packets it drops,
 * the socket load-balancer for connects and sends it refuses. One definition, included by both,
 * so whichever object loads first pins it and the other reuses it. BPF side only; struct nk_event
 * is in nkit_datapath.h. nkitd consumes the ring only while someone listens: a full ring loses
 * the event, never the counter. */
#ifndef NKIT_EVENTS_MAP_H
#define NKIT_EVENTS_MAP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "nkit_datapath.h"

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, NK_EVENTS_RING_BYTES);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_events SEC(".maps");

#endif
