/* Part of bpf/datapath.bpf.c, which includes the parts in order (each uses the ones before it):
 * the conntrack both translations use (nk_lb_ct): idleness, timeouts by state, and the address/port rewrite with its checksum fixes. */
#ifndef NKIT_DP_CT_H
#define NKIT_DP_CT_H

/* The conntrack key of the packet's own tuple (source to destination) in direction `dir`. */
static __always_inline struct nk_lb_ct_key ct_key(const struct pkt *p, const struct l4 *l, __u8 dir) {
  struct nk_lb_ct_key k = {.family = p->family, .proto = l->proto, .dir = dir, .sport = l->sport, .dport = l->dport};
  __builtin_memcpy(k.saddr, p->src.addr, 16);
  __builtin_memcpy(k.daddr, p->dst.addr, 16);
  return k;
}

/* Whether an entry last used at `last` is idle past `timeout`. Another CPU may have stored a
 * last-use time newer than this CPU's `now` (TCP sends from the ACK path too): that entry is
 * fresh, not 2^64 ns old. */
static __always_inline int ct_idle(__u64 now, __u64 last, __u64 timeout) {
  return now > last && now - last >= timeout;
}

static __always_inline __u64 ct_timeout(__u8 proto, __u8 flags) {
  __u32 zero = 0;
  const struct nk_ct_config *c = bpf_map_lookup_elem(&nk_ct_config, &zero);
  __u64 t;
  if (proto != IPPROTO_TCP) {
    t = c ? c->other_ns : 0;
    return t ? t : NK_LB_CT_UDP_TIMEOUT_NS;
  }
  if (flags & NK_CT_F_CLOSING) {
    t = c ? c->tcp_closing_ns : 0;
    return t ? t : NK_LB_CT_TCP_CLOSING_TIMEOUT_NS;
  }
  if (flags & NK_CT_F_ESTABLISHED) {
    t = c ? c->tcp_established_ns : 0;
    return t ? t : NK_LB_CT_TCP_TIMEOUT_NS;
  }
  t = c ? c->tcp_opening_ns : 0;
  return t ? t : NK_LB_CT_TCP_OPENING_TIMEOUT_NS;
}

/* Rewrites the destination (dst != 0) or the source address and port, fixing the IPv4 header
 * checksum and the TCP/UDP checksum (pseudo header included). */
static __always_inline int nat_rewrite(struct __sk_buff *skb, const struct pkt *p, const struct l4 *l, int dst,
                                       const __u8 addr[16], __be16 port) {
  /* ICMP: checksum at 2, the echo identifier (our "port") at 4; ICMPv4's checksum has no pseudo
   * header, ICMPv6's has. */
  __u32 csum_off = l->off + (l->icmp ? 2
                             : l->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
                                                       : offsetof(struct udphdr, check));
  __u32 port_off = l->off + (l->icmp ? 4 : dst ? 2 : 0);
  __u64 mangled = l->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
  __u64 pseudo = l->icmp && p->family == NK_FAMILY_V4 ? 0 : BPF_F_PSEUDO_HDR;
  __be16 old_port = dst ? l->dport : l->sport;
  __u8 new_addr[16];
  __builtin_memcpy(new_addr, addr, 16);
  if (p->family == NK_FAMILY_V4) {
    __be32 from, to;
    __builtin_memcpy(&from, dst ? p->dst.addr : p->src.addr, 4);
    __builtin_memcpy(&to, new_addr, 4);
    __u32 at = p->l3_off + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
    if (pseudo && bpf_l4_csum_replace(skb, csum_off, from, to, pseudo | mangled | 4) < 0) return -1;
    if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), from, to, 4) < 0) return -1;
    if (bpf_skb_store_bytes(skb, at, &to, 4, 0) < 0) return -1;
  } else {
    __u8 old_addr[16];
    __builtin_memcpy(old_addr, dst ? p->dst.addr : p->src.addr, 16);
    __s64 diff = bpf_csum_diff((__be32 *)old_addr, 16, (__be32 *)new_addr, 16, 0);
    __u32 at = p->l3_off + (dst ? offsetof(struct ipv6hdr, daddr) : offsetof(struct ipv6hdr, saddr));
    if (bpf_l4_csum_replace(skb, csum_off, 0, diff, pseudo | mangled) < 0) return -1;
    if (bpf_skb_store_bytes(skb, at, new_addr, 16, 0) < 0) return -1;
  }
  if (old_port != port) {
    if (bpf_l4_csum_replace(skb, csum_off, old_port, port, mangled | 2) < 0) return -1;
    if (bpf_skb_store_bytes(skb, port_off, &port, 2, 0) < 0) return -1;
  }
  return 0;
}

#endif
