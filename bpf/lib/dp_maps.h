/* Part of bpf/datapath.bpf.c, which includes the parts in order (each uses the ones before it):
 * the datapath object's maps (the load-balancer's shared ones are in nkit_lb_maps.h, the event ring in nkit_events_map.h). */
#ifndef NKIT_DP_MAPS_H
#define NKIT_DP_MAPS_H

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

#endif
