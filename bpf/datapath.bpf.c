// SPDX-License-Identifier: GPL-2.0
/* nkit endpoint datapath: host routing for pods without the upper host stack.
 *
 * Attach points (same programs for both device kinds):
 *   nk_from_container  veth: tcx ingress of the host end | netkit: peer (runs as the pod transmits)
 *   nk_to_container    veth: tcx egress of the host end  | netkit: primary
 *   nk_from_uplink     tcx ingress of uplink devices
 * Per-packet load-balancing for connections from other hosts to host ports: nk_from_uplink
 * translates the destination to a backend pod (Maglev choice, conntrack in nk_lb_ct),
 * nk_from_container restores the frontend as the source of the backend's replies.
 * In all three ctx->ifindex is a host-netns device: for netkit the skb already points at the
 * primary when peer programs run, which is why one endpoint map serves both modes.
 *
 * Per-endpoint facts live in maps shared by all pods (pinned by name under nkitd's bpffs dir), so
 * programs are loaded once per nkitd start and wiring a pod is a map update plus two links. */
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

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct nk_endpoint_key);
  __type(value, struct nk_endpoint);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_endpoints SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct nk_counter_key);
  __type(value, struct nk_counter);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_counters SEC(".maps");

/* Per-host-device view used to tell a spoofed source from an unknown device without a reverse
 * scan: ifindex -> endpoint id. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_devices SEC(".maps");

/* Frontend id -> its Maglev table (NK_LB_MAGLEV_M backend slots). The agent builds a new table and
 * swaps it in with one update, so a reader never sees a half-written one. */
struct nk_lb_maglev_inner {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, NK_LB_MAGLEV_M);
  /* tables of any size (nk_lb_config.maglev_m) may be put in */
  __uint(map_flags, BPF_F_INNER_MAP);
  __type(key, __u32);
  __type(value, __u32);
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, 8192);
  __type(key, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
  __array(values, struct nk_lb_maglev_inner);
} nk_lb_maglev SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct nk_lb_config);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct nk_ct_config);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_ct_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct nk_lb_ct_key);
  __type(value, struct nk_lb_ct);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_ct SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct nk_nat_config);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_nat_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 256);
  __type(key, __u32);
  __type(value, struct nk_nat_device);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_nat_devices SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 1024);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct nk_prefix_key); /* destinations never masqueraded: pod, service, nonMasquerade CIDRs */
  __type(value, __u8);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_nat_exclude SEC(".maps");

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

/* ---- per-packet load-balancing ---- */

struct l4 {
  __u32 off;  /* transport header offset */
  __u8 proto; /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP or IPPROTO_ICMPV6 */
  __u8 syn;   /* TCP SYN without ACK: a new connection */
  __u8 icmp;  /* an ICMP echo: its identifier is the request's sport and the reply's dport */
  __u8 fin;   /* TCP FIN or RST: the flow is closing */
  __be16 sport;
  __be16 dport;
};

#define NK_ICMP_ECHO_REPLY 0
#define NK_ICMP_ECHO_REQUEST 8
#define NK_ICMP6_ECHO_REQUEST 128
#define NK_ICMP6_ECHO_REPLY 129

/* TCP or UDP ports, or an ICMP echo's identifier, of an unfragmented packet whose headers are in
 * the linear area. Returns 0 when the packet is translatable. IPv6 extension headers are not
 * walked: such packets are not ours. */
/* Makes the first `need` bytes (at most the packet) linear, so header reads see them: GRO on a
 * receiving veth or a GSO skb may keep the transport header outside the linear area, and such a
 * packet must still be translated (the stack would answer it with a RST). Invalidates packet
 * pointers: callers read data/data_end afterwards. */
static __always_inline int ensure_linear(struct __sk_buff *skb, __u32 need) {
  if (need > skb->len) need = skb->len;
  if ((void *)(long)skb->data + need <= (void *)(long)skb->data_end) return 0;
  return bpf_skb_pull_data(skb, need) < 0 ? -1 : 0;
}

static __always_inline int parse_l4(struct __sk_buff *skb, const struct pkt *p, struct l4 *l) {
  int is_icmp = (p->family == NK_FAMILY_V4 && p->protocol == IPPROTO_ICMP) ||
                (p->family == NK_FAMILY_V6 && p->protocol == IPPROTO_ICMPV6);
  if (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP && !is_icmp) return -1;
  /* the largest IPv4 header, then a TCP header without options */
  if (ensure_linear(skb, sizeof(struct ethhdr) + 60 + sizeof(struct tcphdr)) < 0) return -1;
  void *data = (void *)(long)skb->data;
  void *end = (void *)(long)skb->data_end;
  __u32 off;
  if (p->family == NK_FAMILY_V4) {
    struct iphdr *ip = data + sizeof(struct ethhdr);
    if ((void *)(ip + 1) > end) return -1;
    if (ip->frag_off & bpf_htons(0x3fff)) return -1; /* MF or a fragment offset: no ports here */
    off = sizeof(struct ethhdr) + ip->ihl * 4;
  } else {
    off = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
  }
  if (off > sizeof(struct ethhdr) + 60) return -1;
  __u8 *h = data + off;
  l->icmp = 0;
  if (is_icmp) {
    /* type, code, checksum, identifier, sequence */
    if ((void *)(h + 8) > end) return -1;
    __u8 type = h[0];
    __be16 id = *(__be16 *)(h + 4);
    int request = type == NK_ICMP_ECHO_REQUEST || type == NK_ICMP6_ECHO_REQUEST;
    int reply = type == NK_ICMP_ECHO_REPLY || type == NK_ICMP6_ECHO_REPLY;
    if (!request && !reply) return -1;
    if (p->family == NK_FAMILY_V4 ? type > NK_ICMP_ECHO_REQUEST : type < NK_ICMP6_ECHO_REQUEST) return -1;
    l->icmp = 1;
    l->syn = 0;
    l->sport = request ? id : 0;
    l->dport = request ? 0 : id;
  } else if (p->protocol == IPPROTO_TCP) {
    struct tcphdr *t = (struct tcphdr *)h;
    if ((void *)(t + 1) > end) return -1;
    l->syn = t->syn && !t->ack;
    l->fin = t->fin || t->rst;
    l->sport = t->source;
    l->dport = t->dest;
  } else {
    struct udphdr *u = (struct udphdr *)h;
    if ((void *)(u + 1) > end) return -1;
    l->syn = 0;
    l->sport = u->source;
    l->dport = u->dest;
  }
  l->off = off;
  l->proto = p->protocol;
  return 0;
}

static __always_inline __u32 mix32(__u32 h, __u32 k) {
  k *= 0xcc9e2d51;
  k = (k << 15) | (k >> 17);
  k *= 0x1b873593;
  h ^= k;
  h = (h << 13) | (h >> 19);
  return h * 5 + 0xe6546b64;
}

/* The Maglev key of a flow: the client's address, both ports and the protocol. Deterministic (no
 * per-boot seed), so every host running the same tables picks the same backend for a flow. */
static __always_inline __u32 flow_hash(const struct pkt *p, const struct l4 *l) {
  const __u32 *s = (const __u32 *)p->src.addr;
  __u32 h = mix32(l->proto, s[0]);
  h = mix32(h, s[1]);
  h = mix32(h, s[2]);
  h = mix32(h, s[3]);
  h = mix32(h, ((__u32)l->sport << 16) | l->dport);
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  return h ^ (h >> 16);
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

/* Picks the backend of a new flow to an external frontend from its Maglev table and records both
 * directions (the reverse entry first, so a reply can never beat it). */
static __always_inline int lb_pick(const struct pkt *p, const struct l4 *l, const struct nk_lb_service *svc,
                                   const struct nk_lb_ct_key *fwd, __u64 now, struct nk_lb_addr *be) {
  if (svc->count == 0) return -1;
  __u32 id = svc->id;
  void *table = bpf_map_lookup_elem(&nk_lb_maglev, &id);
  if (!table) return -1;
  __u32 zero = 0;
  const struct nk_lb_config *cfg = bpf_map_lookup_elem(&nk_lb_config, &zero);
  __u32 m = cfg && cfg->maglev_m ? cfg->maglev_m : NK_LB_MAGLEV_M;
  __u32 idx = flow_hash(p, l) % m;
  __u32 *slot = bpf_map_lookup_elem(table, &idx);
  if (!slot || *slot >= svc->count) return -1;
  struct nk_lb_backend_key bk = {.id = id, .slot = *slot};
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
  struct nk_lb_ct_key ck = {.family = p->family, .proto = l.proto, .dir = NK_LB_CT_FORWARD, .sport = l.sport,
                            .dport = l.dport};
  __builtin_memcpy(ck.saddr, p->src.addr, 16);
  __builtin_memcpy(ck.daddr, p->dst.addr, 16);
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
  struct nk_lb_ct_key rk = {.family = p->family, .proto = l.proto, .dir = NK_LB_CT_REVERSE, .sport = l.sport,
                            .dport = l.dport};
  __builtin_memcpy(rk.saddr, p->src.addr, 16);
  __builtin_memcpy(rk.daddr, p->dst.addr, 16);
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

/* ---- masquerade ---- */

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
  struct nk_lb_ct_key ok = {.family = p->family, .proto = l.proto, .dir = NK_CT_SNAT_OUT, .sport = l.sport,
                            .dport = l.dport};
  __builtin_memcpy(ok.saddr, p->src.addr, 16);
  __builtin_memcpy(ok.daddr, p->dst.addr, 16);
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
  struct nk_lb_ct_key ik = {.family = p->family, .proto = l.proto, .dir = NK_CT_SNAT_IN, .sport = l.sport,
                            .dport = l.dport};
  __builtin_memcpy(ik.saddr, p->src.addr, 16);
  __builtin_memcpy(ik.daddr, p->dst.addr, 16);
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
