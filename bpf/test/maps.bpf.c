// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test fixture: maps only (no programs), one per kind of map the agent uses, for map API tests. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "nkit_test.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u64);
} nk_test_hash SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, 256);
  __type(key, struct nk_hook_key);
  __type(value, struct nk_hook_counter);
} nk_test_percpu SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 16);
  __type(key, __u32);
  __type(value, __u32);
} nk_test_array SEC(".maps");

/* IPv6 address (network order) -> IPv4 address (network order) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u8[16]);
  __type(value, __u32);
} nk_test_addr SEC(".maps");
