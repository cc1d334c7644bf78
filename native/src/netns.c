/* Placeholder until the netns module lands: registers nothing. */
#include "common.h"

napi_value nk_register_netns(napi_env env, napi_value exports) { return exports; }
