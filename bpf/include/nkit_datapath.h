/* The endpoint datapath (bpf/datapath.bpf.c): map keys and values, forwarding/drop reasons and the
 * drop events. TS codecs in src/bpf/datapath.ts; ABI rules in nkit_shared.h. */
#ifndef NKIT_DATAPATH_H
#define NKIT_DATAPATH_H

#include <linux/types.h>

#include "nkit_shared.h"

/* Key of nk_endpoints: one entry per pod address. IPv4 uses addr[0..3]; the rest stays zero. */
struct nk_endpoint_key {
  __u8 family;
  __u8 pad[3];
  __u8 addr[16];
};

/* The endpoint flags. */
#define NK_EP_F_L2 0x1     /* device has Ethernet addresses (veth): rewrite MACs on redirect */
#define NK_EP_F_NETKIT 0x2 /* device is a netkit primary */

struct nk_endpoint {
  __u32 ifindex;  /* host-side device (veth host end or netkit primary), host netns */
  __u32 ep_id;    /* numeric endpoint id, the key of the counters */
  __u32 flags;    /* NK_EP_F_* */
  __u8 mac[6];    /* pod-side MAC (veth only) */
  __u8 host_mac[6]; /* host-side MAC (veth only) */
};

/* Why a packet went where it went. Values below 64 are forwarding outcomes, 64 and up are drops.
 * src/datapath/reasons.ts holds the same list with names. */
enum nk_reason {
  NK_FWD_REDIRECT_PEER = 1,   /* pod -> local pod, bpf_redirect_peer */
  NK_FWD_REDIRECT_NEIGH = 2,  /* pod -> off-host, bpf_fib_lookup + bpf_redirect_neigh */
  NK_FWD_TO_STACK = 3,        /* pod -> host stack (local destination or no BPF route) */
  NK_FWD_TO_CONTAINER = 4,    /* host stack -> pod */
  NK_FWD_FROM_UPLINK = 5,     /* uplink ingress -> local pod, bpf_redirect_peer */
  NK_FWD_NON_IP = 6,          /* ARP and other control traffic handed to the stack */
  NK_FWD_REDIRECT_LOCAL = 7,  /* netkit pod -> local pod via the destination primary, bpf_redirect */
  NK_FWD_LB_DNAT = 8,         /* uplink -> a host port's backend pod, destination translated */
  NK_FWD_LB_RNAT = 9,         /* a backend's reply to an uplink client, source restored to the frontend */
  NK_FWD_SNAT = 10,           /* pod -> off-host, masqueraded to the uplink's address */
  NK_FWD_SNAT_REVERSE = 11,   /* uplink -> pod, a reply to a masqueraded flow */
  NK_FWD_LB_REMOTE = 12,      /* uplink <-> a frontend's backend on another host: translated both ways, back out the uplink */
  NK_DROP_SPOOFED_SOURCE = 64, /* source address not owned by the sending endpoint */
  NK_DROP_UNKNOWN_SOURCE = 65, /* packet from a device that is no endpoint */
  NK_DROP_MALFORMED = 66,     /* truncated or invalid header */
  NK_DROP_UNSUPPORTED_L3 = 67, /* neither IPv4, IPv6 nor ARP */
  NK_DROP_NO_ROUTE = 68,      /* FIB says blackhole/unreachable/prohibit */
  NK_DROP_LB_NO_BACKEND = 69, /* per-packet load-balancing: the frontend has no (usable) backend */
  NK_DROP_NAT_NO_PORT = 70,   /* masquerade: every port tried for the flow was taken */
  NK_DROP_LB_NO_SERVICE = 71, /* socket load-balancer: a VIP in the service CIDRs that no service holds */
};

struct nk_counter_key {
  __u32 ep_id;
  __u32 reason;
};

struct nk_counter {
  __u64 packets;
  __u64 bytes;
};

/* ---- datapath events (ring buffer nk_events, consumed by `nkit monitor`) ---- */
#define NK_EVENTS_RING_BYTES (256 * 1024)

enum nk_event_type {
  NK_EVENT_DROP = 1,
};

/* One ring-buffer record per dropped packet. Best effort: when the ring is full the event is lost
 * but the drop is still counted in nk_counters. Addresses are in network order (IPv4 in
 * src[0..3]/dst[0..3]); family 0 means the packet was not parsed as IP. */
struct nk_event {
  __u64 ts_ns;    /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
  __u32 type;     /* enum nk_event_type */
  __u32 reason;   /* enum nk_reason */
  __u32 ep_id;    /* endpoint the drop is counted against (0 = none) */
  __u32 ifindex;  /* skb->ifindex at the hook */
  __u32 len;      /* skb->len */
  __u8 family;    /* NK_FAMILY_V4, NK_FAMILY_V6 or 0 */
  __u8 protocol;  /* IPv4 protocol / IPv6 next header (0 when unknown) */
  __u16 pad;      /* zero */
  __u8 src[16];
  __u8 dst[16];
};

#endif
