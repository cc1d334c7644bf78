// SPDX-License-Identifier: GPL-2.0
/* Socket-level service load-balancer: cgroup v2 socket-address hooks that rewrite a connect() or
 * sendmsg() to a service VIP into one of its backends before the kernel routes anything, and
 * rewrite the backend back to the VIP where the application can see it (recvmsg, getpeername).
 * Clients on the host and in pods then talk to the backend directly: no per-packet NAT and no
 * conntrack on east-west traffic. Maps are pinned by name and owned by nkitd (src/services). */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nkit_events_map.h"
#include "nkit_lb.h"
#include "nkit_lb_maps.h"

/* errno values the refusals report (no libc headers in BPF programs). */
#define NK_ECONNREFUSED 111
#define NK_EHOSTUNREACH 113

/* LRU: there is no hook at socket release, so old sockets' entries age out. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct nk_lb_sock_key);
  __type(value, struct nk_lb_sock_value);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_sock_rev SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 131072);
  __type(key, struct nk_lb_affinity_key);
  __type(value, struct nk_lb_affinity);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_affinity SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, NK_LB_REASONS);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_counters SEC(".maps");

/* The service CIDRs (nkitd's serviceCIDRs): a connect to an address in them that no service holds
 * is refused at once instead of leaving the client to time out on a SYN nobody answers. */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 64);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct nk_prefix_key);
  __type(value, __u8);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} nk_lb_service_cidrs SEC(".maps");

static __always_inline void count(__u32 reason) {
  __u64 *c = bpf_map_lookup_elem(&nk_lb_counters, &reason);
  if (c) *c += 1;
}

static __always_inline int same_backend(const struct nk_lb_affinity *a, const struct nk_lb_addr *b) {
  if (a->family != b->family || a->port != b->port) return 0;
  const __u32 *x = (const __u32 *)a->addr, *y = (const __u32 *)b->addr;
  return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

enum lb_verdict { LB_PASS, LB_TRANSLATED, LB_REFUSED };

/* A refused connect or send, for `nkit monitor` (the per-reason counter is counted apart): the
 * frontend as destination; a socket hook sees no packet, so no length, device or endpoint. */
static __always_inline void refused_event(__u32 reason, const struct nk_lb_key *key) {
  struct nk_event *e = bpf_ringbuf_reserve(&nk_events, sizeof(*e), 0);
  if (!e) return;
  __builtin_memset(e, 0, sizeof(*e));
  e->ts_ns = bpf_ktime_get_ns();
  e->type = NK_EVENT_DROP;
  e->reason = reason;
  e->family = key->family;
  e->protocol = key->proto;
  __builtin_memcpy(e->dst, key->addr, 16);
  bpf_ringbuf_submit(e, 0);
}

static __always_inline int in_service_cidrs(const struct nk_lb_key *key) {
  struct nk_prefix_key k = {.prefixlen = 32 + (key->family == NK_FAMILY_V4 ? 32 : 128), .family = key->family};
  __builtin_memcpy(k.addr, key->addr, 16);
  return bpf_map_lookup_elem(&nk_lb_service_cidrs, &k) != NULL;
}

/* Picks a backend for a frontend key. UDP keys on the socket cookie (every datagram of a socket
 * goes to one backend, as a reply must come from where the request went); TCP picks at random per
 * connection. With affinity the client's netns keeps its backend while that slot still holds it. */
static __always_inline enum lb_verdict pick(struct bpf_sock_addr *ctx, const struct nk_lb_key *key,
                                            struct nk_lb_addr *out, __u32 *id, int conn) {
  struct nk_lb_service *svc = bpf_map_lookup_elem(&nk_lb_services, key);
  if (!svc) {
    if (!in_service_cidrs(key)) return LB_PASS;
    count(NK_LB_NO_SERVICE);
    refused_event(NK_DROP_LB_NO_SERVICE, key);
    bpf_set_retval(-NK_ECONNREFUSED);
    return LB_REFUSED;
  }
  __u16 n = svc->count;
  *id = svc->id;
  if (n == 0) {
    count(NK_LB_NO_BACKEND);
    refused_event(NK_DROP_LB_NO_BACKEND, key);
    bpf_set_retval(-NK_ECONNREFUSED);
    return LB_REFUSED;
  }
  struct nk_lb_affinity_key ak = {};
  struct nk_lb_backend_key bk = {.id = svc->id};
  struct nk_lb_addr *be;
  __u64 now = 0;
  if (svc->flags & NK_LB_F_AFFINITY) {
    ak.client = bpf_get_netns_cookie(ctx);
    ak.id = svc->id;
    now = bpf_ktime_get_ns();
    struct nk_lb_affinity *a = bpf_map_lookup_elem(&nk_lb_affinity, &ak);
    /* A use stored by another CPU may be newer than this CPU's now: that entry is fresh. */
    if (a && (now <= a->last_used_ns || now - a->last_used_ns < (__u64)svc->affinity_timeout * 1000000000ULL) &&
        a->slot < n) {
      bk.slot = a->slot;
      be = bpf_map_lookup_elem(&nk_lb_backends, &bk);
      if (be && same_backend(a, be)) {
        a->last_used_ns = now;
        *out = *be;
        count(NK_LB_AFFINITY_HIT);
        if (conn) nk_lb_count_conn(&bk);
        return LB_TRANSLATED;
      }
    }
  }
  __u32 r = key->proto == IPPROTO_UDP ? (__u32)bpf_get_socket_cookie(ctx) : bpf_get_prandom_u32();
  bk.slot = r % n;
  be = bpf_map_lookup_elem(&nk_lb_backends, &bk);
  if (!be) {
    count(NK_LB_BACKEND_MISSING);
    bpf_set_retval(-NK_EHOSTUNREACH);
    return LB_REFUSED;
  }
  *out = *be;
  if (conn) nk_lb_count_conn(&bk);
  if (svc->flags & NK_LB_F_AFFINITY) {
    struct nk_lb_affinity a = {.last_used_ns = now, .slot = bk.slot, .family = be->family, .port = be->port};
    __builtin_memcpy(a.addr, be->addr, 16);
    bpf_map_update_elem(&nk_lb_affinity, &ak, &a, BPF_ANY);
  }
  return LB_TRANSLATED;
}

/* Remembers backend -> VIP for this socket, so replies and getpeername show the VIP. */
static __always_inline void remember(struct bpf_sock_addr *ctx, const struct nk_lb_key *vip,
                                     const struct nk_lb_addr *be, __u32 id) {
  struct nk_lb_sock_key k = {.cookie = bpf_get_socket_cookie(ctx), .family = be->family, .port = be->port};
  __builtin_memcpy(k.addr, be->addr, 16);
  struct nk_lb_sock_value v = {.family = vip->family, .port = vip->port, .id = id};
  __builtin_memcpy(v.addr, vip->addr, 16);
  bpf_map_update_elem(&nk_lb_sock_rev, &k, &v, BPF_ANY);
}

/* The VIP a backend address of this socket stands for, or NULL. */
static __always_inline struct nk_lb_sock_value *reverse(struct bpf_sock_addr *ctx, __u8 family, __u32 port,
                                                        const __u32 addr[4]) {
  struct nk_lb_sock_key k = {.cookie = bpf_get_socket_cookie(ctx), .family = family, .port = (__be16)port};
  __u32 *w = (__u32 *)k.addr;
  w[0] = addr[0];
  w[1] = addr[1];
  w[2] = addr[2];
  w[3] = addr[3];
  return bpf_map_lookup_elem(&nk_lb_sock_rev, &k);
}

static __always_inline int is_v4_mapped(const __u32 a[4]) {
  return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* connect4/sendmsg4: rewrite VIP:port to a backend; conn = a connect (counted per backend). */
static __always_inline int forward4(struct bpf_sock_addr *ctx, int conn) {
  struct nk_lb_key key = {.family = NK_FAMILY_V4, .proto = (__u8)ctx->protocol, .port = (__be16)ctx->user_port};
  *(__u32 *)key.addr = ctx->user_ip4;
  struct nk_lb_addr be;
  __u32 id = 0;
  enum lb_verdict v = pick(ctx, &key, &be, &id, conn);
  if (v == LB_PASS) return 1;
  if (v == LB_REFUSED) return 0;
  ctx->user_ip4 = *(__u32 *)be.addr;
  ctx->user_port = be.port;
  remember(ctx, &key, &be, id);
  count(NK_LB_TRANSLATED);
  return 1;
}

/* connect6/sendmsg6: the same for IPv6, and for IPv4 through a dual-stack socket (::ffff:a.b.c.d). */
static __always_inline int forward6(struct bpf_sock_addr *ctx, int conn) {
  __u32 ip[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  int mapped = is_v4_mapped(ip);
  struct nk_lb_key key = {.family = mapped ? NK_FAMILY_V4 : NK_FAMILY_V6,
                          .proto = (__u8)ctx->protocol,
                          .port = (__be16)ctx->user_port};
  __u32 *k = (__u32 *)key.addr;
  if (mapped) {
    k[0] = ip[3];
  } else {
    k[0] = ip[0];
    k[1] = ip[1];
    k[2] = ip[2];
    k[3] = ip[3];
  }
  struct nk_lb_addr be;
  __u32 id = 0;
  enum lb_verdict v = pick(ctx, &key, &be, &id, conn);
  if (v == LB_PASS) return 1;
  if (v == LB_REFUSED) return 0;
  const __u32 *b = (const __u32 *)be.addr;
  if (mapped) {
    ctx->user_ip6[3] = b[0];
  } else {
    ctx->user_ip6[0] = b[0];
    ctx->user_ip6[1] = b[1];
    ctx->user_ip6[2] = b[2];
    ctx->user_ip6[3] = b[3];
  }
  ctx->user_port = be.port;
  remember(ctx, &key, &be, id);
  count(NK_LB_TRANSLATED);
  return 1;
}

/* recvmsg4/getpeername4: show the VIP where the socket sees its backend. */
static __always_inline int reverse4(struct bpf_sock_addr *ctx) {
  __u32 ip[4] = {ctx->user_ip4, 0, 0, 0};
  struct nk_lb_sock_value *v = reverse(ctx, NK_FAMILY_V4, ctx->user_port, ip);
  if (!v) return 1;
  ctx->user_ip4 = *(__u32 *)v->addr;
  ctx->user_port = v->port;
  count(NK_LB_REVERSED);
  return 1;
}

static __always_inline int reverse6(struct bpf_sock_addr *ctx) {
  __u32 ip[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
  int mapped = is_v4_mapped(ip);
  __u32 key[4] = {mapped ? ip[3] : ip[0], mapped ? 0 : ip[1], mapped ? 0 : ip[2], mapped ? 0 : ip[3]};
  struct nk_lb_sock_value *v = reverse(ctx, mapped ? NK_FAMILY_V4 : NK_FAMILY_V6, ctx->user_port, key);
  if (!v) return 1;
  const __u32 *a = (const __u32 *)v->addr;
  if (mapped) {
    ctx->user_ip6[3] = a[0];
  } else {
    ctx->user_ip6[0] = a[0];
    ctx->user_ip6[1] = a[1];
    ctx->user_ip6[2] = a[2];
    ctx->user_ip6[3] = a[3];
  }
  ctx->user_port = v->port;
  count(NK_LB_REVERSED);
  return 1;
}

SEC("cgroup/connect4")
int nk_sock_connect4(struct bpf_sock_addr *ctx) { return forward4(ctx, 1); }

SEC("cgroup/connect6")
int nk_sock_connect6(struct bpf_sock_addr *ctx) { return forward6(ctx, 1); }

SEC("cgroup/sendmsg4")
int nk_sock_sendmsg4(struct bpf_sock_addr *ctx) { return forward4(ctx, 0); }

SEC("cgroup/sendmsg6")
int nk_sock_sendmsg6(struct bpf_sock_addr *ctx) { return forward6(ctx, 0); }

SEC("cgroup/recvmsg4")
int nk_sock_recvmsg4(struct bpf_sock_addr *ctx) { return reverse4(ctx); }

SEC("cgroup/recvmsg6")
int nk_sock_recvmsg6(struct bpf_sock_addr *ctx) { return reverse6(ctx); }

SEC("cgroup/getpeername4")
int nk_sock_getpeername4(struct bpf_sock_addr *ctx) { return reverse4(ctx); }

SEC("cgroup/getpeername6")
int nk_sock_getpeername6(struct bpf_sock_addr *ctx) { return reverse6(ctx); }

char LICENSE[] SEC("license") = "GPL";
