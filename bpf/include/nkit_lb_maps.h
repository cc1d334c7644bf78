/* The load-balancer maps both BPF objects use: the socket hooks (sock_lb.bpf.c) and the per-packet
 * path at tc (datapath.bpf.c). One definition, included by both, so libbpf finds the pinned map of
 * the object loaded first compatible with the other (same type, sizes and flags). BPF side only;
 * the structs are in nkit_lb.h. */
#ifndef NKIT_LB_MAPS_H
#define NKIT_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "nkit_lb.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct nk_lb_key);
  __type(value, struct nk_lb_service);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 262144);
  __type(key, struct nk_lb_backend_key);
  __type(value, struct nk_lb_addr);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_backends SEC(".maps");

/* Connections (and per-packet flows) sent to each backend slot, per CPU: `nkit service list` and
 * the per-backend metrics. The agent deletes a slot's counter when it rewrites or drops the slot. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct nk_lb_backend_key);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_backend_conns SEC(".maps");

static __always_inline void nk_lb_count_conn(const struct nk_lb_backend_key *k) {
  __u64 *c = bpf_map_lookup_elem(&nk_lb_backend_conns, k);
  if (c) {
    *c += 1;
    return;
  }
  __u64 one = 1;
  /* Another CPU may insert first: then this CPU's slot exists (zero) and one connection is lost
   * from the count, never from the datapath. */
  bpf_map_update_elem(&nk_lb_backend_conns, k, &one, BPF_NOEXIST);
}

#endif
