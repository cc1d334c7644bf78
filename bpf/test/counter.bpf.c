// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test fixture: per-CPU packet/byte counters for tcx hooks, keyed by device, direction and program slot.
 * Every program returns TCX_NEXT so it never changes the fate of a packet and later tcx
 * programs or legacy tc still run (TCX_PASS would end the chain). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "nkit_test.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, NK_HOOK_COUNTERS_MAX);
  __type(key, struct nk_hook_key);
  __type(value, struct nk_hook_counter);
  /* pinned under the loader's pin root, so a restarted agent keeps the counts */
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_hook_counters SEC(".maps");

static __always_inline int count(struct __sk_buff *skb, __u8 direction, __u8 slot) {
  struct nk_hook_key key = {
      .ifindex = skb->ifindex,
      .direction = direction,
      .slot = slot,
      .pad = 0,
  };
  struct nk_hook_counter *v = bpf_map_lookup_elem(&nk_hook_counters, &key);
  if (!v) {
    struct nk_hook_counter zero = {0, 0};
    /* NOEXIST: another CPU may have created the entry since the lookup; then just use it */
    bpf_map_update_elem(&nk_hook_counters, &key, &zero, BPF_NOEXIST);
    v = bpf_map_lookup_elem(&nk_hook_counters, &key);
    if (!v) return TCX_NEXT;
  }
  /* per-CPU slot: no atomics needed */
  v->packets += 1;
  v->bytes += skb->len;
  return TCX_NEXT;
}

SEC("tcx/ingress")
int nk_count_ingress(struct __sk_buff *skb) { return count(skb, NK_DIR_INGRESS, NK_SLOT_PRIMARY); }

SEC("tcx/egress")
int nk_count_egress(struct __sk_buff *skb) { return count(skb, NK_DIR_EGRESS, NK_SLOT_PRIMARY); }

/* Replacement targets for BPF_LINK_UPDATE: same hooks, counted in the alternate slot. */
SEC("tcx/ingress")
int nk_count_ingress_alt(struct __sk_buff *skb) { return count(skb, NK_DIR_INGRESS, NK_SLOT_ALTERNATE); }

SEC("tcx/egress")
int nk_count_egress_alt(struct __sk_buff *skb) { return count(skb, NK_DIR_EGRESS, NK_SLOT_ALTERNATE); }
