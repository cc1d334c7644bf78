/* Part of bpf/datapath.bpf.c, which includes the parts in order (each uses the ones before it):
 * per-packet basics: counters, Ethernet/IP parsing, drop events, hop limits, delivery into a local pod. */
#ifndef NKIT_DP_PACKET_H
#define NKIT_DP_PACKET_H

static __always_inline void count(__u32 ep_id, __u32 reason, __u64 bytes) {
  struct nk_counter_key key = {.ep_id = ep_id, .reason = reason};
  struct nk_counter *c = bpf_map_lookup_elem(&nk_counters, &key);
  if (c) {
    c->packets++;
    c->bytes += bytes;
    return;
  }
  struct nk_counter init = {.packets = 1, .bytes = bytes};
  bpf_map_update_elem(&nk_counters, &key, &init, BPF_NOEXIST);
  /* Lost race with another CPU's insert: the per-CPU slot exists now. */
  c = bpf_map_lookup_elem(&nk_counters, &key);
  if (c && c->packets == 0) {
    c->packets = 1;
    c->bytes = bytes;
  }
}

struct pkt {
  __u8 family;
  __u8 hop_limit;
  __u16 l3_off;
  __u8 protocol; /* IPv4 protocol / IPv6 next header */
  __u8 pad[3];   /* keeps the addresses 4-byte aligned: the verifier refuses misaligned stack words */
  struct nk_endpoint_key src;
  struct nk_endpoint_key dst;
};

/* Parses Ethernet + IPv4/IPv6. Returns 0 on success, an nk_reason otherwise
 * (NK_FWD_NON_IP for ARP). */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p) {
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end) return NK_DROP_MALFORMED;
  __u16 proto = eth->h_proto;
  p->l3_off = sizeof(*eth);
  if (proto == bpf_htons(ETH_P_IP)) {
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->version != 4) return NK_DROP_MALFORMED;
    p->family = NK_FAMILY_V4;
    p->hop_limit = ip->ttl;
    p->protocol = ip->protocol;
    p->src.family = p->dst.family = NK_FAMILY_V4;
    __builtin_memcpy(p->src.addr, &ip->saddr, 4);
    __builtin_memcpy(p->dst.addr, &ip->daddr, 4);
    return 0;
  }
  if (proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr *ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > end || ip6->version != 6) return NK_DROP_MALFORMED;
    p->family = NK_FAMILY_V6;
    p->hop_limit = ip6->hop_limit;
    p->protocol = ip6->nexthdr;
    p->src.family = p->dst.family = NK_FAMILY_V6;
    __builtin_memcpy(p->src.addr, &ip6->saddr, 16);
    __builtin_memcpy(p->dst.addr, &ip6->daddr, 16);
    return 0;
  }
  if (proto == bpf_htons(ETH_P_ARP)) return NK_FWD_NON_IP;
  return NK_DROP_UNSUPPORTED_L3;
}

/* Fills a drop event. A separate (static, verified in the caller's context) function so that
 * struct nk_event is recorded in the object's BTF for the layout test; only drops pay the call. */
static __noinline void fill_drop_event(struct nk_event *e, struct __sk_buff *skb, __u32 ep_id,
                                       __u32 reason, const struct pkt *p) {
  __builtin_memset(e, 0, sizeof(*e));
  e->ts_ns = bpf_ktime_get_ns();
  e->type = NK_EVENT_DROP;
  e->reason = reason;
  e->ep_id = ep_id;
  e->ifindex = skb->ifindex;
  e->len = skb->len;
  if (p && p->family) {
    e->family = p->family;
    e->protocol = p->protocol;
    __builtin_memcpy(e->src, p->src.addr, 16);
    __builtin_memcpy(e->dst, p->dst.addr, 16);
  }
}

/* Counts a drop and emits an nk_event (p may be NULL before parsing). Returns TC_ACT_SHOT. */
static __always_inline int drop(struct __sk_buff *skb, __u32 ep_id, __u32 reason, const struct pkt *p) {
  count(ep_id, reason, skb->len);
  struct nk_event *e = bpf_ringbuf_reserve(&nk_events, sizeof(*e), 0);
  if (!e) return TC_ACT_SHOT;
  fill_drop_event(e, skb, ep_id, reason, p);
  bpf_ringbuf_submit(e, 0);
  return TC_ACT_SHOT;
}

/* Link-local or unspecified (::) IPv6 sources: neighbour discovery, DAD, MLD, router
 * solicitations. They only ever talk to the host. */
static __always_inline int is_v6_host_control(const struct nk_endpoint_key *k) {
  if (k->family != NK_FAMILY_V6) return 0;
  if (k->addr[0] == 0xfe && (k->addr[1] & 0xc0) == 0x80) return 1;
  __u64 hi, lo;
  __builtin_memcpy(&hi, k->addr, 8);
  __builtin_memcpy(&lo, k->addr + 8, 8);
  return hi == 0 && lo == 0;
}

/* We are a router hop: decrement TTL/hop limit (with the IPv4 checksum fix). */
static __always_inline int dec_hop_limit(struct __sk_buff *skb, const struct pkt *p) {
  if (p->family == NK_FAMILY_V4) {
    __u32 off = p->l3_off + offsetof(struct iphdr, ttl);
    __u16 old = bpf_htons((__u16)p->hop_limit << 8);
    __u8 ttl = p->hop_limit - 1;
    __u16 new = bpf_htons((__u16)ttl << 8);
    if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), old, new, 2) < 0) return -1;
    return bpf_skb_store_bytes(skb, off, &ttl, 1, 0);
  }
  __u8 hl = p->hop_limit - 1;
  return bpf_skb_store_bytes(skb, p->l3_off + offsetof(struct ipv6hdr, hop_limit), &hl, 1, 0);
}

static __always_inline int rewrite_macs(struct __sk_buff *skb, const struct nk_endpoint *dst) {
  if (!(dst->flags & NK_EP_F_L2)) return 0;
  if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), dst->mac, ETH_ALEN, 0) < 0) return -1;
  return bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), dst->host_mac, ETH_ALEN, 0);
}

/* Sends the packet straight into a local pod. From a tc/tcx ingress hook that is
 * bpf_redirect_peer (into the pod's netns in one step). bpf_redirect_peer is refused by the kernel
 * anywhere else (skb_do_redirect drops it unless the skb is at tc ingress): from a netkit program
 * (which runs in the pod's transmit path) the packet goes to the destination's netkit primary with
 * bpf_redirect instead, whose xmit hands it to the pod without a trip through any stack. */
static __always_inline int to_local_pod(struct __sk_buff *skb, const struct pkt *p,
                                        const struct nk_endpoint *dst, __u32 reason, int at_ingress) {
  if (p->hop_limit <= 1) return -1;
  if (dec_hop_limit(skb, p) < 0 || rewrite_macs(skb, dst) < 0)
    return drop(skb, dst->ep_id, NK_DROP_MALFORMED, p);
  count(dst->ep_id, reason, skb->len);
  if (at_ingress) return bpf_redirect_peer(dst->ifindex, 0);
  return bpf_redirect(dst->ifindex, 0);
}

#endif
