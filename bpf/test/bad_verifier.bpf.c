// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test fixture: compiles, but the verifier must reject it (packet read without a bounds check),
 * so load errors can be checked for the verifier's own words. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tcx/ingress")
int nk_bad_packet_read(struct __sk_buff *skb) {
  __u8 *data = (__u8 *)(long)skb->data;
  /* deliberately no `data + 1 > data_end` check */
  return data[0] == 0 ? TCX_NEXT : TCX_PASS;
}
