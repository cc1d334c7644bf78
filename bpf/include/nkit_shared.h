/* Structs shared by the BPF programs and the agent (TS codecs in src/bpf/shared.ts). Layout is ABI:
 * fixed-width fields, natural alignment, padding spelled out as named fields that are always zero,
 * sizes and offsets checked against the BTF of the built objects by the test suite. Add fields
 * only in place of padding or at the end, never reorder. */
#ifndef NKIT_SHARED_H
#define NKIT_SHARED_H

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
