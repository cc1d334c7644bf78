/* Part of bpf/datapath.bpf.c, which includes the parts in order (each uses the ones before it):
 * the transport header of translatable packets (TCP, UDP, ICMP echo) and the flow hash. */
#ifndef NKIT_DP_L4_H
#define NKIT_DP_L4_H

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

#endif
