/* Part of bpf/datapath.bpf.c, which includes the parts in order (each uses the ones before it):
 * per-packet load-balancing of external frontends (host ports, external VIPs) arriving on an uplink: Maglev choice, DNAT, remote backends, reverse NAT. */
#ifndef NKIT_DP_LB_H
#define NKIT_DP_LB_H

/* The slot of a new flow to an external frontend: its Maglev table's choice, or slot 0 for a single
 * backend (such a frontend, every host port, has no table: installing one costs an RCU grace period). */
static __always_inline int lb_slot(const struct pkt *p, const struct l4 *l, const struct nk_lb_service *svc,
                                   __u32 *slot) {
  if (svc->count == 1) {
    *slot = 0;
    return 0;
  }
  __u32 id = svc->id;
  void *table = bpf_map_lookup_elem(&nk_lb_maglev, &id);
  if (!table) return -1;
  __u32 zero = 0;
  const struct nk_lb_config *cfg = bpf_map_lookup_elem(&nk_lb_config, &zero);
  __u32 m = cfg && cfg->maglev_m ? cfg->maglev_m : NK_LB_MAGLEV_M;
  __u32 idx = flow_hash(p, l) % m;
  __u32 *s = bpf_map_lookup_elem(table, &idx);
  if (!s || *s >= svc->count) return -1;
  *slot = *s;
  return 0;
}

/* Picks the backend of a new flow to an external frontend and records both directions (the reverse
 * entry first, so a reply can never beat it). */
static __always_inline int lb_pick(const struct pkt *p, const struct l4 *l, const struct nk_lb_service *svc,
                                   const struct nk_lb_ct_key *fwd, __u64 now, struct nk_lb_addr *be) {
  if (svc->count == 0) return -1;
  __u32 id = svc->id;
  __u32 slot = 0;
  if (lb_slot(p, l, svc, &slot) < 0) return -1;
  struct nk_lb_backend_key bk = {.id = id, .slot = slot};
  struct nk_lb_addr *b = bpf_map_lookup_elem(&nk_lb_backends, &bk);
  if (!b || b->family != p->family) return -1;
  *be = *b;
  nk_lb_count_conn(&bk);
  struct nk_lb_ct_key rk = {.family = p->family, .proto = l->proto, .dir = NK_LB_CT_REVERSE, .sport = be->port,
                            .dport = l->sport};
  __builtin_memcpy(rk.saddr, be->addr, 16);
  __builtin_memcpy(rk.daddr, p->src.addr, 16);
  struct nk_lb_ct rv = {
      .last_seen_ns = now, .family = p->family, .flags = NK_CT_F_ESTABLISHED, .port = l->dport, .id = id};
  __builtin_memcpy(rv.addr, p->dst.addr, 16);
  if (bpf_map_update_elem(&nk_lb_ct, &rk, &rv, BPF_ANY) < 0) return -1;
  struct nk_lb_ct fv = {
      .last_seen_ns = now, .family = be->family, .flags = NK_CT_F_ESTABLISHED, .port = be->port, .id = id};
  __builtin_memcpy(fv.addr, be->addr, 16);
  if (bpf_map_update_elem(&nk_lb_ct, fwd, &fv, BPF_ANY) < 0) return -1;
  return 0;
}

static __always_inline int snat(struct __sk_buff *skb, struct pkt *p, const struct l4 *lp, __u32 oif,
                                 __u32 src_ep, int forced);

/* Sends a translated packet back out of the uplink it arrived on, to the next hop the routing table
 * names for its new destination. bpf_redirect_neigh without parameters looks the route up for
 * output, which (unlike bpf_fib_lookup from this ingress device) needs no forwarding switch on the
 * uplink. Backends and clients of the load-balancer are reached through the uplink they use. */
static __always_inline int back_out(struct __sk_buff *skb, struct pkt *p) {
  if (p->hop_limit <= 1) return drop(skb, 0, NK_DROP_NO_ROUTE, p);
  if (dec_hop_limit(skb, p) < 0) return drop(skb, 0, NK_DROP_MALFORMED, p);
  count(0, NK_FWD_LB_REMOTE, skb->len);
  return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
}

/* Uplink ingress to an external frontend (a host port): translate to a backend and deliver it.
 * Returns -1 when the packet is not for a frontend, else the tc verdict. An established flow keeps
 * its backend even after the backend left the service; a SYN always chooses afresh. */
static __always_inline int lb_from_uplink(struct __sk_buff *skb, struct pkt *p, const struct l4 *lp) {
  struct l4 l = *lp;
  struct nk_lb_key fk = {.family = p->family, .proto = l.proto, .port = l.dport};
  __builtin_memcpy(fk.addr, p->dst.addr, 16);
  struct nk_lb_service *svc = bpf_map_lookup_elem(&nk_lb_services, &fk);
  if (!svc || !(svc->flags & NK_LB_F_EXTERNAL)) return -1;
  struct nk_lb_ct_key ck = ct_key(p, &l, NK_LB_CT_FORWARD);
  __u64 now = bpf_ktime_get_ns();
  struct nk_lb_addr be = {};
  struct nk_lb_ct *ct = bpf_map_lookup_elem(&nk_lb_ct, &ck);
  if (ct && !l.syn && ct->id == svc->id && !ct_idle(now, ct->last_seen_ns, ct_timeout(l.proto, ct->flags))) {
    ct->last_seen_ns = now;
    be.family = ct->family;
    be.port = ct->port;
    __builtin_memcpy(be.addr, ct->addr, 16);
  } else if (lb_pick(p, &l, svc, &ck, now, &be) < 0) {
    return drop(skb, 0, NK_DROP_LB_NO_BACKEND, p);
  }
  if (nat_rewrite(skb, p, &l, 1, be.addr, be.port) < 0) return drop(skb, 0, NK_DROP_MALFORMED, p);
  __builtin_memcpy(p->dst.addr, be.addr, 16);
  l.dport = be.port;
  struct nk_endpoint *dst = bpf_map_lookup_elem(&nk_endpoints, &p->dst);
  if (!dst) {
    /* A backend on another host: the flow leaves with this uplink's address and a port of its own,
     * so the backend answers here, where both translations are undone (snat_reverse, lb_reverse). */
    int n = snat(skb, p, &l, skb->ifindex, 0, 1);
    if (n == -1) return drop(skb, 0, NK_DROP_NAT_NO_PORT, p);
    if (n == 0) return drop(skb, 0, NK_DROP_NO_ROUTE, p); /* the uplink has no address of the family */
    if (n < -1) return drop(skb, 0, NK_DROP_MALFORMED, p);
    return back_out(skb, p);
  }
  int r = to_local_pod(skb, p, dst, NK_FWD_LB_DNAT, 1);
  return r >= 0 ? r : TC_ACT_OK;
}

/* A backend's reply to a flow lb_from_uplink translated: restore the frontend as its source.
 * Returns 1 when rewritten, 0 when the packet is not such a reply, -1 on a rewrite failure. */
static __always_inline int lb_reverse(struct __sk_buff *skb, struct pkt *p, const struct l4 *lp, __u32 src_ep) {
  struct l4 l = *lp;
  struct nk_lb_ct_key rk = ct_key(p, &l, NK_LB_CT_REVERSE);
  struct nk_lb_ct *ct = bpf_map_lookup_elem(&nk_lb_ct, &rk);
  if (!ct) return 0;
  __u64 now = bpf_ktime_get_ns();
  if (ct_idle(now, ct->last_seen_ns, ct_timeout(l.proto, ct->flags))) return 0;
  ct->last_seen_ns = now;
  __u8 addr[16];
  __builtin_memcpy(addr, ct->addr, 16);
  __be16 port = ct->port;
  if (nat_rewrite(skb, p, &l, 0, addr, port) < 0) return -1;
  __builtin_memcpy(p->src.addr, addr, 16);
  count(src_ep, NK_FWD_LB_RNAT, skb->len);
  return 1;
}

#endif
