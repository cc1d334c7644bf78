/* Part of bpf/datapath.bpf.c, which includes the parts in order (each uses the ones before it):
 * masquerade: SNAT of pod flows leaving through an uplink, the reverse on uplink ingress, ICMP errors about translated flows. */
#ifndef NKIT_DP_NAT_H
#define NKIT_DP_NAT_H

static __always_inline int same_addr16(const __u8 *a, const __u8 *b) {
  __u32 x[4], y[4];
  __builtin_memcpy(x, a, 16);
  __builtin_memcpy(y, b, 16);
  return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* Masquerades a pod's flow leaving through uplink oif: the uplink's address, the pod's own port
 * when it is free and in range, else a random one, then the next ones. Returns 1 when translated,
 * 0 when the flow is not masqueraded, -1 when no port was free, -2 on a rewrite failure.
 * forced: a load-balanced flow to a backend on another host, whose replies must come back through
 * this host whatever the masquerade settings and exclusions say. */
static __always_inline int snat(struct __sk_buff *skb, struct pkt *p, const struct l4 *lp, __u32 oif,
                                 __u32 src_ep, int forced) {
  struct nk_nat_device *dev = bpf_map_lookup_elem(&nk_nat_devices, &oif);
  if (!dev) return 0;
  __u32 zero = 0;
  struct nk_nat_config *cfg = bpf_map_lookup_elem(&nk_nat_config, &zero);
  if (!cfg) return 0;
  int v4 = p->family == NK_FAMILY_V4;
  __u32 fam = v4 ? NK_NAT_F_V4 : NK_NAT_F_V6;
  if (!(dev->flags & fam) || (!forced && !(cfg->flags & fam))) return 0;
  struct nk_prefix_key ek = {.prefixlen = 32 + (v4 ? 32 : 128), .family = p->family};
  __builtin_memcpy(ek.addr, p->dst.addr, 16);
  if (!forced && bpf_map_lookup_elem(&nk_nat_exclude, &ek)) return 0;
  struct l4 l = *lp;
  if (l.icmp && l.dport != 0) return 0; /* an echo reply answers a flow that came in untranslated */
  __u8 naddr[16] = {};
  if (v4)
    __builtin_memcpy(naddr, dev->addr4, 4);
  else
    __builtin_memcpy(naddr, dev->addr6, 16);
  __u64 now = bpf_ktime_get_ns();
  struct nk_lb_ct_key ok = ct_key(p, &l, NK_CT_SNAT_OUT);
  __be16 nport = 0;
  struct nk_lb_ct *e = bpf_map_lookup_elem(&nk_lb_ct, &ok);
  if (e && !ct_idle(now, e->last_seen_ns, ct_timeout(l.proto, e->flags)) && same_addr16(e->addr, naddr)) {
    e->last_seen_ns = now;
    nport = e->port;
    if (l.fin && !(e->flags & NK_CT_F_CLOSING)) {
      e->flags |= NK_CT_F_CLOSING;
      struct nk_lb_ct_key ik = {.family = p->family, .proto = l.proto, .dir = NK_CT_SNAT_IN, .sport = l.dport,
                                .dport = nport};
      __builtin_memcpy(ik.saddr, p->dst.addr, 16);
      __builtin_memcpy(ik.daddr, naddr, 16);
      struct nk_lb_ct *in = bpf_map_lookup_elem(&nk_lb_ct, &ik);
      if (in) in->flags |= NK_CT_F_CLOSING;
    }
  } else {
    /* Only a connection's first packet opens a translation: a TCP packet of a flow without one
     * answers (or continues) a connection another host opened to the pod directly, over a route to
     * the pod CIDR (a peer, a cluster node); translating its SYN-ACK would break that connection. */
    if (!forced && l.proto == IPPROTO_TCP && !l.syn) return 0;
    struct nk_lb_ct_key ik = {.family = p->family, .proto = l.proto, .dir = NK_CT_SNAT_IN, .sport = l.dport};
    __builtin_memcpy(ik.saddr, p->dst.addr, 16);
    __builtin_memcpy(ik.daddr, naddr, 16);
    struct nk_lb_ct iv = {.last_seen_ns = now, .family = p->family, .port = l.sport};
    __builtin_memcpy(iv.addr, p->src.addr, 16);
    __u32 lo = cfg->port_min, hi = cfg->port_max;
    if (lo == 0 || hi < lo) return -1;
    __u32 span = hi - lo + 1;
    __u32 cand = bpf_ntohs(l.sport);
    if (cand < lo || cand > hi) cand = lo + bpf_get_prandom_u32() % span;
    int claimed = 0;
    for (int i = 0; i < NK_NAT_TRIES; i++) {
      ik.dport = bpf_htons((__u16)cand);
      if (bpf_map_update_elem(&nk_lb_ct, &ik, &iv, BPF_NOEXIST) == 0) {
        claimed = 1;
        break;
      }
      /* A claim whose flow went quiet long ago may be taken over. */
      struct nk_lb_ct *old = bpf_map_lookup_elem(&nk_lb_ct, &ik);
      if (old && ct_idle(now, old->last_seen_ns, ct_timeout(l.proto, old->flags))) {
        bpf_map_update_elem(&nk_lb_ct, &ik, &iv, BPF_EXIST);
        claimed = 1;
        break;
      }
      cand = i == 0 ? lo + bpf_get_prandom_u32() % span : (cand >= hi ? lo : cand + 1);
    }
    if (!claimed) return -1;
    nport = ik.dport;
    struct nk_lb_ct ov = {.last_seen_ns = now, .family = p->family, .port = nport};
    __builtin_memcpy(ov.addr, naddr, 16);
    bpf_map_update_elem(&nk_lb_ct, &ok, &ov, BPF_ANY);
  }
  if (nat_rewrite(skb, p, &l, 0, naddr, nport) < 0) return -2;
  __builtin_memcpy(p->src.addr, naddr, 16);
  count(src_ep, NK_FWD_SNAT, skb->len);
  return 1;
}

/* A reply on the uplink to a masqueraded flow: back to the pod's address and port, into the pod.
 * Returns -1 when the packet is not such a reply, else the tc verdict. */
/* An ICMP error on the uplink about a flow masquerade translated (destination unreachable incl.
 * fragmentation needed / packet too big, time exceeded): the outer destination and the quoted
 * packet's source address and port go back to the pod's, the outer and quoted IPv4 header
 * checksums and the ICMP checksum are fixed (the quoted TCP/UDP checksum is left as it is: it may
 * be truncated and receivers do not check it), and the error is delivered into the pod, so PMTU
 * discovery and "connection refused" work through masquerade. Returns -1 when it is not such an
 * error, else the tc verdict. Quoted IPv4 headers with options and IPv6 extension headers are not
 * followed. */
static __always_inline int snat_icmp_error(struct __sk_buff *skb, struct pkt *p) {
  int v4 = p->family == NK_FAMILY_V4;
  if (p->protocol != (v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) return -1;
  /* outer header, ICMP header, quoted IPv6 header, 8 quoted bytes */
  if (ensure_linear(skb, sizeof(struct ethhdr) + 60 + 8 + sizeof(struct ipv6hdr) + 8) < 0) return -1;
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  __u32 off;
  if (v4) {
    struct iphdr *ip = data + sizeof(struct ethhdr);
    if ((void *)(ip + 1) > end || (ip->frag_off & bpf_htons(0x3fff))) return -1;
    off = sizeof(struct ethhdr) + ip->ihl * 4;
  } else {
    off = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
  }
  if (off > sizeof(struct ethhdr) + 60) return -1;
  __u8 *icmp = data + off;
  if ((void *)(icmp + 8) > end) return -1;
  __u8 type = icmp[0];
  int error = v4 ? (type == 3 || type == 11) : (type == 1 || type == 2 || type == 3);
  if (!error) return -1;
  __u32 inner = off + 8;
  __u32 inner_l4;
  __u8 inner_proto;
  __u8 inner_src[16] = {}, inner_dst[16] = {};
  if (v4) {
    struct iphdr *q = data + inner;
    if ((void *)(q + 1) > end || q->version != 4 || q->ihl != 5) return -1;
    inner_proto = q->protocol;
    __builtin_memcpy(inner_src, &q->saddr, 4);
    __builtin_memcpy(inner_dst, &q->daddr, 4);
    inner_l4 = inner + sizeof(struct iphdr);
  } else {
    struct ipv6hdr *q = data + inner;
    if ((void *)(q + 1) > end || q->version != 6) return -1;
    inner_proto = q->nexthdr;
    __builtin_memcpy(inner_src, &q->saddr, 16);
    __builtin_memcpy(inner_dst, &q->daddr, 16);
    inner_l4 = inner + sizeof(struct ipv6hdr);
  }
  __u8 *l4 = data + inner_l4;
  if ((void *)(l4 + 8) > end) return -1;
  __be16 qsport, qdport;
  __u32 port_off; /* where the quoted packet's translated port (or echo identifier) sits */
  if (inner_proto == IPPROTO_TCP || inner_proto == IPPROTO_UDP) {
    qsport = *(__be16 *)l4;
    qdport = *(__be16 *)(l4 + 2);
    port_off = inner_l4;
  } else if (inner_proto == (v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6) &&
             l4[0] == (v4 ? NK_ICMP_ECHO_REQUEST : NK_ICMP6_ECHO_REQUEST)) {
    qsport = *(__be16 *)(l4 + 4);
    qdport = 0;
    port_off = inner_l4 + 4;
  } else {
    return -1;
  }
  /* The quoted packet is one we sent: its reply tuple is the SNAT_IN key. */
  struct nk_lb_ct_key ik = {.family = p->family, .proto = inner_proto, .dir = NK_CT_SNAT_IN, .sport = qdport,
                            .dport = qsport};
  __builtin_memcpy(ik.saddr, inner_dst, 16);
  __builtin_memcpy(ik.daddr, inner_src, 16);
  struct nk_lb_ct *e = bpf_map_lookup_elem(&nk_lb_ct, &ik);
  if (!e) return -1;
  __u8 pod[16];
  __builtin_memcpy(pod, e->addr, 16);
  __be16 pod_port = e->port;
  __u32 csum_off = off + 2;
  if (v4) {
    __be32 from, to;
    __builtin_memcpy(&from, inner_src, 4);
    __builtin_memcpy(&to, pod, 4);
    /* outer destination: IPv4 header checksum only (ICMPv4 has no pseudo header) */
    __be32 outer_from;
    __builtin_memcpy(&outer_from, p->dst.addr, 4);
    if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), outer_from, to, 4) < 0 ||
        bpf_skb_store_bytes(skb, p->l3_off + offsetof(struct iphdr, daddr), &to, 4, 0) < 0)
      return drop(skb, 0, NK_DROP_MALFORMED, p);
    /* quoted source and its header checksum, both inside the ICMP checksum */
    __u16 old_check, new_check;
    __u32 qcheck = inner + offsetof(struct iphdr, check);
    if (bpf_skb_load_bytes(skb, qcheck, &old_check, 2) < 0 ||
        bpf_l3_csum_replace(skb, qcheck, from, to, 4) < 0 ||
        bpf_skb_load_bytes(skb, qcheck, &new_check, 2) < 0 ||
        bpf_skb_store_bytes(skb, inner + offsetof(struct iphdr, saddr), &to, 4, 0) < 0 ||
        bpf_l4_csum_replace(skb, csum_off, from, to, 4) < 0 ||
        bpf_l4_csum_replace(skb, csum_off, old_check, new_check, 2) < 0)
      return drop(skb, 0, NK_DROP_MALFORMED, p);
  } else {
    __u8 outer_old[16];
    __builtin_memcpy(outer_old, p->dst.addr, 16);
    __s64 d_outer = bpf_csum_diff((__be32 *)outer_old, 16, (__be32 *)pod, 16, 0);
    __s64 d_inner = bpf_csum_diff((__be32 *)inner_src, 16, (__be32 *)pod, 16, 0);
    if (bpf_l4_csum_replace(skb, csum_off, 0, d_outer, BPF_F_PSEUDO_HDR) < 0 ||
        bpf_skb_store_bytes(skb, p->l3_off + offsetof(struct ipv6hdr, daddr), pod, 16, 0) < 0 ||
        bpf_l4_csum_replace(skb, csum_off, 0, d_inner, 0) < 0 ||
        bpf_skb_store_bytes(skb, inner + offsetof(struct ipv6hdr, saddr), pod, 16, 0) < 0)
      return drop(skb, 0, NK_DROP_MALFORMED, p);
  }
  if (qsport != pod_port) {
    if (bpf_l4_csum_replace(skb, csum_off, qsport, pod_port, 2) < 0 ||
        bpf_skb_store_bytes(skb, port_off, &pod_port, 2, 0) < 0)
      return drop(skb, 0, NK_DROP_MALFORMED, p);
  }
  __builtin_memcpy(p->dst.addr, pod, 16);
  struct nk_endpoint *dst = bpf_map_lookup_elem(&nk_endpoints, &p->dst);
  if (!dst) return TC_ACT_OK;
  int r = to_local_pod(skb, p, dst, NK_FWD_SNAT_REVERSE, 1);
  return r >= 0 ? r : TC_ACT_OK;
}

static __always_inline int snat_reverse(struct __sk_buff *skb, struct pkt *p, const struct l4 *lp) {
  struct l4 l = *lp;
  struct nk_lb_ct_key ik = ct_key(p, &l, NK_CT_SNAT_IN);
  struct nk_lb_ct *e = bpf_map_lookup_elem(&nk_lb_ct, &ik);
  if (!e) return -1;
  __u64 now = bpf_ktime_get_ns();
  if (ct_idle(now, e->last_seen_ns, ct_timeout(l.proto, e->flags))) return -1;
  e->last_seen_ns = now;
  __u8 addr[16];
  __builtin_memcpy(addr, e->addr, 16);
  __be16 port = e->port;
  if (l.proto == IPPROTO_TCP) {
    __u8 set = l.fin ? NK_CT_F_CLOSING : NK_CT_F_ESTABLISHED;
    if ((e->flags & set) != set) {
      /* The remote answered (or closed): both directions learn it. */
      e->flags |= set;
      struct nk_lb_ct_key ok = {.family = p->family, .proto = l.proto, .dir = NK_CT_SNAT_OUT, .sport = port,
                                .dport = l.sport};
      __builtin_memcpy(ok.saddr, addr, 16);
      __builtin_memcpy(ok.daddr, p->src.addr, 16);
      struct nk_lb_ct *out = bpf_map_lookup_elem(&nk_lb_ct, &ok);
      if (out) out->flags |= set;
    }
  }
  if (nat_rewrite(skb, p, &l, 1, addr, port) < 0) return drop(skb, 0, NK_DROP_MALFORMED, p);
  __builtin_memcpy(p->dst.addr, addr, 16);
  l.dport = port;
  struct nk_endpoint *dst = bpf_map_lookup_elem(&nk_endpoints, &p->dst);
  if (!dst) {
    /* A remote backend's reply to an uplink client (lb_from_uplink): the frontend as its source. */
    int rev = lb_reverse(skb, p, &l, 0);
    if (rev < 0) return drop(skb, 0, NK_DROP_MALFORMED, p);
    return rev ? back_out(skb, p) : TC_ACT_OK;
  }
  int r = to_local_pod(skb, p, dst, NK_FWD_SNAT_REVERSE, 1);
  return r >= 0 ? r : TC_ACT_OK;
}

#endif
