// SPDX-License-Identifier: GPL-2.0
/* nkit endpoint datapath: host routing for pods without the upper host stack.
 *
 * Attach points (same programs for both device kinds):
 *   nk_from_container  veth: tcx ingress of the host end | netkit: peer (runs as the pod transmits)
 *   nk_to_container    veth: tcx egress of the host end
 *   nk_to_container_netkit                               | netkit: primary
 *   nk_from_uplink     tcx ingress of uplink devices
 * Per-packet load-balancing for connections from other hosts to host ports: nk_from_uplink
 * translates the destination to a backend pod (Maglev choice, conntrack in nk_lb_ct),
 * nk_from_container restores the frontend as the source of the backend's replies.
 * In the others ctx->ifindex is a host-netns device: for netkit the skb already points at the
 * primary when peer programs run, which is why one endpoint map serves both modes.
 *
 * Per-endpoint facts live in maps shared by all pods (pinned by name under nkitd's bpffs dir), so
 * programs are loaded once per nkitd start and wiring a pod is a map update plus two links.
 *
 * One object, split by concern into bpf/lib/dp_*.h (included below, in order): maps, packet
 * basics, the transport header, conntrack, per-packet load-balancing, masquerade. This file keeps
 * routing (fib_forward) and the three programs. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nkit_datapath.h"
#include "nkit_events_map.h"
#include "nkit_lb.h"
#include "nkit_lb_maps.h"
#include "nkit_nat.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

char LICENSE[] SEC("license") = "GPL";

#include "lib/dp_maps.h"
#include "lib/dp_packet.h"
#include "lib/dp_l4.h"
#include "lib/dp_ct.h"
#include "lib/dp_lb.h"
#include "lib/dp_nat.h"

/* masq: the packet's transport header when it still has its pod source (not a load-balancer
 * reply), so it may be masqueraded; NULL otherwise. */
static __always_inline int fib_forward(struct __sk_buff *skb, struct pkt *p, __u32 src_ep, const struct l4 *masq) {
  struct bpf_fib_lookup fib = {};
  fib.ifindex = skb->ifindex;
  if (p->family == NK_FAMILY_V4) {
    fib.family = AF_INET;
    __builtin_memcpy(&fib.ipv4_src, p->src.addr, 4);
    __builtin_memcpy(&fib.ipv4_dst, p->dst.addr, 4);
  } else {
    fib.family = AF_INET6;
    __builtin_memcpy(fib.ipv6_src, p->src.addr, 16);
    __builtin_memcpy(fib.ipv6_dst, p->dst.addr, 16);
  }
  /* tot_len stays 0: no MTU check here, GSO (and BIG TCP) skbs carry lengths the helper
   * cannot judge; the egress device handles segmentation. */
  long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
  switch (rc) {
  case BPF_FIB_LKUP_RET_SUCCESS:
  case BPF_FIB_LKUP_RET_NO_NEIGH: {
    if (fib.ifindex == skb->ifindex || p->hop_limit <= 1) break;
    if (masq) {
      int n = snat(skb, p, masq, fib.ifindex, src_ep, 0);
      if (n == -1) return drop(skb, src_ep, NK_DROP_NAT_NO_PORT, p);
      if (n < -1) return drop(skb, src_ep, NK_DROP_MALFORMED, p);
    }
    if (dec_hop_limit(skb, p) < 0) return drop(skb, src_ep, NK_DROP_MALFORMED, p);
    struct bpf_redir_neigh nh = {};
    if (fib.family == AF_INET) {
      nh.nh_family = AF_INET;
      nh.ipv4_nh = fib.ipv4_dst;
    } else {
      nh.nh_family = AF_INET6;
      __builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
    }
    count(src_ep, NK_FWD_REDIRECT_NEIGH, skb->len);
    return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
  }
  case BPF_FIB_LKUP_RET_BLACKHOLE:
  case BPF_FIB_LKUP_RET_UNREACHABLE:
  case BPF_FIB_LKUP_RET_PROHIBIT:
    return drop(skb, src_ep, NK_DROP_NO_ROUTE, p);
  default:
    /* Local destination (NOT_FWDED), forwarding off, fragmentation needed, ...: the stack knows
     * how to answer these (deliver locally or send the ICMP error). */
    break;
  }
  count(src_ep, NK_FWD_TO_STACK, skb->len);
  return TC_ACT_OK;
}

SEC("tc")
int nk_from_container(struct __sk_buff *skb) {
  __u32 ifindex = skb->ifindex;
  __u32 *dev_ep = bpf_map_lookup_elem(&nk_devices, &ifindex);
  if (!dev_ep) return drop(skb, 0, NK_DROP_UNKNOWN_SOURCE, NULL);
  __u32 src_ep = *dev_ep;
  struct pkt p = {};
  int r = parse(skb, &p);
  if (r == NK_FWD_NON_IP) {
    count(src_ep, NK_FWD_NON_IP, skb->len);
    return TC_ACT_OK;
  }
  if (r) return drop(skb, src_ep, r, &p);
  if (is_v6_host_control(&p.src)) {
    count(src_ep, NK_FWD_NON_IP, skb->len);
    return TC_ACT_OK;
  }
  struct nk_endpoint *src = bpf_map_lookup_elem(&nk_endpoints, &p.src);
  if (!src || src->ifindex != ifindex) return drop(skb, src_ep, NK_DROP_SPOOFED_SOURCE, &p);
  struct nk_endpoint *dst = bpf_map_lookup_elem(&nk_endpoints, &p.dst);
  if (dst) {
    /* veth: we run at tcx ingress of the host end; netkit: in the pod's xmit path. */
    int at_ingress = !(src->flags & NK_EP_F_NETKIT);
    r = to_local_pod(skb, &p, dst, at_ingress ? NK_FWD_REDIRECT_PEER : NK_FWD_REDIRECT_LOCAL, at_ingress);
    if (r >= 0) return r;
    return fib_forward(skb, &p, src_ep, NULL);
  }
  /* Off this pod's host: translated flows live only here (pod -> pod never looks at the L4 header).
   * A host-port backend's reply gets its frontend back; anything else may be masqueraded. */
  struct l4 l = {};
  if (parse_l4(skb, &p, &l)) return fib_forward(skb, &p, src_ep, NULL);
  int reversed = lb_reverse(skb, &p, &l, src_ep);
  if (reversed < 0) return drop(skb, src_ep, NK_DROP_MALFORMED, &p);
  return fib_forward(skb, &p, src_ep, reversed == 0 ? &l : NULL);
}

SEC("tc")
int nk_to_container(struct __sk_buff *skb) {
  __u32 ifindex = skb->ifindex;
  __u32 *dev_ep = bpf_map_lookup_elem(&nk_devices, &ifindex);
  /* A device we do not know is not ours to police. */
  if (dev_ep) count(*dev_ep, NK_FWD_TO_CONTAINER, skb->len);
  return TC_ACT_OK;
}

/* netkit_xmit points the skb at the peer before the primary's program runs, so ctx->ifindex is the
 * pod's own device, an index of the pod's netns (every pod's is the same few numbers) that may name
 * an unrelated host device: the destination address names the endpoint instead. */
SEC("tc")
int nk_to_container_netkit(struct __sk_buff *skb) {
  struct pkt p = {};
  if (parse(skb, &p)) return TC_ACT_OK;
  struct nk_endpoint *dst = bpf_map_lookup_elem(&nk_endpoints, &p.dst);
  if (dst && (dst->flags & NK_EP_F_NETKIT)) count(dst->ep_id, NK_FWD_TO_CONTAINER, skb->len);
  return TC_ACT_OK;
}

SEC("tc")
int nk_from_uplink(struct __sk_buff *skb) {
  struct pkt p = {};
  if (parse(skb, &p)) return TCX_NEXT;
  struct nk_endpoint *dst = bpf_map_lookup_elem(&nk_endpoints, &p.dst);
  if (dst) {
    int r = to_local_pod(skb, &p, dst, NK_FWD_FROM_UPLINK, 1);
    return r >= 0 ? r : TCX_NEXT;
  }
  /* For one of this host's addresses: a host port, a reply to a masqueraded flow, or an ICMP error
   * about one; everything else is the host stack's. */
  struct l4 l = {};
  if (parse_l4(skb, &p, &l) == 0) {
    int lb = lb_from_uplink(skb, &p, &l);
    if (lb >= 0) return lb;
    int nat = snat_reverse(skb, &p, &l);
    if (nat >= 0) return nat;
    return TCX_NEXT;
  }
  int err = snat_icmp_error(skb, &p);
  return err >= 0 ? err : TCX_NEXT;
}
