/* Kernel feature probes that leave nothing behind: throwaway programs and links on an ifindex
 * that cannot exist, plus libbpf's helper probe. */
#include "bpf_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A program that only returns 0; enough for the kernel to validate a link request. */
static int load_trivial_sched_cls(void) {
  struct bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT},
  };
  return bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "nk_probe", "GPL", insns, 2, NULL);
}

/* probeLinkCreate(attachType) -> errno of BPF_LINK_CREATE against ifindex 0xffffffff (0 if it
 * unexpectedly succeeded; the link is closed again). The kernel resolves the attach type to its
 * implementation before looking up the device, so ENODEV means "implemented" while EINVAL (or
 * similar) means the kernel does not know the attach point. */
static napi_value probe_link_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  uint32_t attach_type;
  if (!nk_get_u32(env, argv[0], "attachType", &attach_type)) return NULL;
  sigset_t old;
  nk_signals_block(&old);
  int prog = load_trivial_sched_cls();
  nk_signals_restore(&old);
  if (prog < 0) {
    nk_throw_errno(env, -prog, "bpf_prog_load", "probe program (SCHED_CLS)");
    return NULL;
  }
  int link = bpf_link_create(prog, (int)0xffffffffu, attach_type, NULL);
  int result = 0;
  if (link >= 0)
    close(link);
  else
    result = -link;
  close(prog);
  return nk_i32(env, result);
}

/* probeHelper(progType, helperId) -> boolean */
static napi_value probe_helper(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!nk_args(env, info, 2, argv)) return NULL;
  uint32_t prog_type, helper;
  if (!nk_get_u32(env, argv[0], "progType", &prog_type) || !nk_get_u32(env, argv[1], "helperId", &helper))
    return NULL;
  sigset_t old;
  nk_signals_block(&old);
  int r = libbpf_probe_bpf_helper(prog_type, helper, NULL);
  nk_signals_restore(&old);
  if (r < 0) {
    char detail[64];
    snprintf(detail, sizeof detail, "helper %u for program type %u", helper, prog_type);
    nk_throw_errno(env, -r, "libbpf_probe_bpf_helper", detail);
    return NULL;
  }
  return nk_bool(env, r == 1);
}

bool nk_register_bpf_probe(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"probeLinkCreate", probe_link_create},
      {"probeHelper", probe_helper},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]);
}
