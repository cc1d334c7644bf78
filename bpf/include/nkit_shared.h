/* What every nkit BPF object shares (the endpoint datapath in nkit_datapath.h, the service load
 * balancer, ...), and the ABI rules of every nkit header: structs shared by the BPF programs and the
 * agent have one TS codec each (bpf/include/nkit_X.h <-> src/bpf/X.ts), fixed-width fields, natural
 * alignment, padding spelled out as named fields that are always zero; sizes and offsets are checked
 * against the BTF of the built objects by the test suite. Add fields only in place of padding or at
 * the end, never reorder. */
#ifndef NKIT_SHARED_H
#define NKIT_SHARED_H

#include <linux/types.h>

/* Address family tag of every map key or value that holds a 16-byte address (IPv4 in [0..3]). */
#define NK_FAMILY_V4 4
#define NK_FAMILY_V6 6

/* Key of every LPM trie over addresses (CIDR sets): prefixlen counts the family byte and its padding
 * (32 bits) first, so one trie holds both families. */
struct nk_prefix_key {
  __u32 prefixlen;
  __u8 family;
  __u8 pad[3];
  __u8 addr[16];
};

#endif
