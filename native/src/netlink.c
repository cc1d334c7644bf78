/* Placeholder until the netlink module lands: registers nothing. */
#include "common.h"

napi_value nk_register_netlink(napi_env env, napi_value exports) { return exports; }
