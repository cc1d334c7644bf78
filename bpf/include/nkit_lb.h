/* The service load-balancer (bpf/sock_lb.bpf.c): frontends, backends, the per-socket reverse
 * translations and client affinity. TS codecs in src/bpf/lb.ts; ABI rules in nkit_shared.h.
 * Addresses are 16 bytes with a family tag (IPv4 in addr[0..3], the rest zero), ports in network
 * order, as the socket hooks see them. */
#ifndef NKIT_LB_H
#define NKIT_LB_H

#include <linux/types.h>

#include "nkit_shared.h"

/* Key of nk_lb_services: one entry per frontend {VIP, port, protocol}. */
struct nk_lb_key {
  __u8 family;   /* NK_FAMILY_V4 or NK_FAMILY_V6 */
  __u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
  __be16 port;
  __u8 addr[16];
};

#define NK_LB_F_AFFINITY 0x1 /* client-ip affinity: one client netns sticks to one backend */
#define NK_LB_F_EXTERNAL 0x2 /* reachable per packet from the uplinks (host ports): has a Maglev table */

struct nk_lb_service {
  __u32 id;               /* the frontend's number: key of its backend slots and affinity */
  __u16 count;            /* backends in slots 0..count-1; 0 = refuse connections */
  __u16 flags;            /* NK_LB_F_* */
  __u32 affinity_timeout; /* seconds an affinity entry lives after its last use */
};

/* Key of nk_lb_backends: slot k of frontend id. The agent writes slots first and the count last,
 * so a reader never sees a count that points past the slots written. */
struct nk_lb_backend_key {
  __u32 id;
  __u32 slot;
};

/* A backend, and the VIP a reverse translation restores. */
struct nk_lb_addr {
  __u8 family;
  __u8 pad;
  __be16 port;
  __u8 addr[16];
};

/* Key of nk_lb_sock_rev: a socket and the backend it was sent to, for recvmsg/getpeername. */
struct nk_lb_sock_key {
  __u64 cookie; /* bpf_get_socket_cookie */
  __u8 family;
  __u8 pad;
  __be16 port;
  __u8 addr[16];
  __u32 pad2;
};

struct nk_lb_sock_value {
  __u8 family;
  __u8 pad;
  __be16 port;
  __u8 addr[16]; /* the VIP */
  __u32 id;      /* the frontend, so a stale entry of a re-used id is recognised */
};

/* Key of nk_lb_affinity: a client (its network namespace cookie) of one frontend. */
struct nk_lb_affinity_key {
  __u64 client;
  __u32 id;
  __u32 pad;
};

struct nk_lb_affinity {
  __u64 last_used_ns; /* bpf_ktime_get_ns */
  __u32 slot;         /* the slot chosen; used only while it still holds the same backend */
  __u8 family;
  __u8 pad;
  __be16 port;
  __u8 addr[16];
};

/* ---- per-packet load-balancing at tc (bpf/datapath.bpf.c) for traffic the socket hooks never see:
 * connections from other hosts to host ports. ---- */

/* Entries of a frontend's Maglev lookup table (an array in nk_lb_maglev, keyed by frontend id, whose
 * values are backend slots; a frontend of one backend has none) unless nk_lb_config says otherwise (nkitd's limits.maglevTableSize, a
 * prime from the usual Maglev set); the agent computes the tables. */
#define NK_LB_MAGLEV_M 16381

/* nk_lb_config[0]: the per-packet load-balancer's settings, written by nkitd (services). */
struct nk_lb_config {
  __u32 maglev_m; /* entries of every Maglev table; 0 = NK_LB_MAGLEV_M */
  __u32 pad;
};

/* nk_ct_config[0]: how long an nk_lb_ct entry may stay idle, by state (nkitd's timeouts:);
 * 0 = the NK_LB_CT_*_TIMEOUT_NS default. */
struct nk_ct_config {
  __u64 tcp_established_ns;
  __u64 tcp_opening_ns;
  __u64 tcp_closing_ns;
  __u64 other_ns; /* UDP, ICMP */
};

/* Connection tracking of per-packet translated flows (nk_lb_ct), one entry per direction:
 * NK_LB_CT_FORWARD keyed by the client's tuple to the frontend (value: the backend it was sent to,
 * so a flow keeps its backend while backends change), NK_LB_CT_REVERSE keyed by the backend's reply
 * tuple to the client (value: the frontend to restore as the reply's source). */
#define NK_LB_CT_FORWARD 0
#define NK_LB_CT_REVERSE 1

/* An entry unused this long is ignored (its port may be taken over), and nkitd collects it: an
 * established TCP flow after six hours, one still opening after a minute, one closing (FIN or RST
 * seen) after ten seconds; UDP and ICMP after five minutes. Mirrored in src/bpf/lb.ts. */
#define NK_LB_CT_TCP_TIMEOUT_NS (21600ULL * 1000000000ULL)
#define NK_LB_CT_TCP_OPENING_TIMEOUT_NS (60ULL * 1000000000ULL)
#define NK_LB_CT_TCP_CLOSING_TIMEOUT_NS (10ULL * 1000000000ULL)
#define NK_LB_CT_UDP_TIMEOUT_NS (300ULL * 1000000000ULL)

/* nk_lb_ct flags. Load-balancer entries start established; masquerade entries learn it. */
#define NK_CT_F_ESTABLISHED 0x1 /* TCP: the remote answered */
#define NK_CT_F_CLOSING 0x2     /* TCP: a FIN or RST went either way */

struct nk_lb_ct_key {
  __u8 family;
  __u8 proto;
  __u8 dir;   /* NK_LB_CT_* */
  __u8 pad;
  __be16 sport;
  __be16 dport;
  __u8 saddr[16];
  __u8 daddr[16];
};

struct nk_lb_ct {
  __u64 last_seen_ns; /* bpf_ktime_get_ns of the last packet */
  __u8 family;
  __u8 flags;         /* NK_CT_F_* */
  __be16 port;
  __u8 addr[16];      /* forward: the backend; reverse: the frontend */
  __u32 id;           /* the frontend's id */
};

/* Per-CPU counters of nk_lb_counters (an array indexed by these). src/bpf/lb.ts names them. */
enum nk_lb_reason {
  NK_LB_TRANSLATED = 0,      /* a connect/sendmsg to a VIP went to a backend */
  NK_LB_REVERSED = 1,        /* a recvmsg/getpeername showed the VIP again */
  NK_LB_NO_BACKEND = 2,      /* refused: the service has no backend */
  NK_LB_BACKEND_MISSING = 3, /* refused: a slot below the count was not there (agent mid-update) */
  NK_LB_AFFINITY_HIT = 4,    /* the client's remembered backend was used */
  NK_LB_NO_SERVICE = 5,      /* refused: a VIP in the service CIDRs that no service holds */
  NK_LB_REASONS = 6,
};

#endif
