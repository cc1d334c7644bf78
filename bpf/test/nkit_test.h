/* Structs of the BPF test fixtures (bpf/test/counter.bpf.c, bpf/test/maps.bpf.c), not of the
 * product: per-CPU packet/byte counters of tcx hooks, keyed by device, direction and program slot.
 * TS codecs in test/helpers/bpf-test-structs.ts; same ABI rules as bpf/include/nkit_shared.h. */
#ifndef NKIT_TEST_H
#define NKIT_TEST_H

#include <linux/types.h>

enum nk_direction {
  NK_DIR_INGRESS = 0,
  NK_DIR_EGRESS = 1,
};

/* Which program produced a counter entry; lets a link update be observed from the counters. */
enum nk_hook_slot {
  NK_SLOT_PRIMARY = 0,
  NK_SLOT_ALTERNATE = 1,
};

struct nk_hook_key {
  __u32 ifindex;   /* skb->ifindex: the device the program is attached to */
  __u8 direction;  /* enum nk_direction */
  __u8 slot;       /* enum nk_hook_slot */
  __u16 pad;       /* zero */
};

/* Per-CPU value: userspace sums the CPUs. */
struct nk_hook_counter {
  __u64 packets;
  __u64 bytes; /* skb->len at the hook: L2 frame length on a veth, no FCS */
};

#define NK_HOOK_COUNTERS_MAX 4096

#endif
