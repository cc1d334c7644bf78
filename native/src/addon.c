/* Module entry: each concern (netns, netlink, bpf, sd_notify, ring buffers, the native heap)
 * registers its own functions. */
#include "common.h"

static napi_value init(napi_env env, napi_value exports) {
  if (!nk_register_netns(env, exports)) return NULL;
  if (!nk_register_netlink(env, exports)) return NULL;
  if (!nk_register_bpf(env, exports)) return NULL;
  if (!nk_register_sdnotify(env, exports)) return NULL;
  if (!nk_register_ringbuf(env, exports)) return NULL;
  if (!nk_register_memory(env, exports)) return NULL;
  return exports;
}

NAPI_MODULE(nkit, init)
