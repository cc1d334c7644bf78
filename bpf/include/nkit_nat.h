/* Masquerade (bpf/datapath.bpf.c): pod traffic leaving through an uplink gets the uplink's address
 * and a port of its own; replies arriving on the uplink are translated back and delivered into the
 * pod. Translations live in nk_lb_ct (directions NK_CT_SNAT_*), the conntrack the per-packet
 * load-balancer uses too. TS codecs in src/bpf/nat.ts; ABI rules in nkit_shared.h. */
#ifndef NKIT_NAT_H
#define NKIT_NAT_H

#include <linux/types.h>

#include "nkit_shared.h"

/* nk_lb_ct directions of masqueraded flows. OUT is keyed by the pod's tuple (value: the uplink
 * address and port it was given); IN by the remote's reply tuple to that address and port (value:
 * the pod's address and port). Inserting IN with BPF_NOEXIST is what claims a port: two flows
 * can never share a translated tuple. */
#define NK_CT_SNAT_OUT 2
#define NK_CT_SNAT_IN 3

#define NK_NAT_F_V4 0x1
#define NK_NAT_F_V6 0x2

/* Ports tried before a flow is dropped as NAT_NO_PORT: its own, one at random, then the next ones. */
#define NK_NAT_TRIES 16

/* nk_nat_config[0]: what nkitd's `masquerade:` section says. */
struct nk_nat_config {
  __u32 flags;    /* NK_NAT_F_*: families masqueraded */
  __u16 port_min; /* host order */
  __u16 port_max;
};

/* nk_nat_devices: uplink ifindex -> the addresses masqueraded flows leaving through it get. */
struct nk_nat_device {
  __u32 flags;    /* NK_NAT_F_*: which addresses are set */
  __u8 addr4[4];
  __u8 addr6[16];
};

#endif
