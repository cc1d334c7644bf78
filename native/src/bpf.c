/* Placeholder until the bpf module lands: registers nothing. */
#include "common.h"

napi_value nk_register_bpf(napi_env env, napi_value exports) { return exports; }
