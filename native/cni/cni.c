#include "cni.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

const char *const cni_supported_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
const unsigned cni_n_supported_versions = sizeof cni_supported_versions / sizeof cni_supported_versions[0];

static char g_cni_version[16] = "1.1.0";

bool cni_version_supported(const char *v) {
  for (unsigned k = 0; k < cni_n_supported_versions; k++)
    if (strcmp(v, cni_supported_versions[k]) == 0) return true;
  return false;
}

const char *cni_supported_list(void) {
  static char s[128];
  s[0] = 0;
  for (unsigned k = 0; k < cni_n_supported_versions; k++) {
    if (k) strcat(s, ", ");
    strcat(s, cni_supported_versions[k]);
  }
  return s;
}

void cni_set_version(const char *v) { snprintf(g_cni_version, sizeof g_cni_version, "%s", v); }

void cni_print_tables(void) {
  printf("CNI protocol versions supported: %s\nError codes:", cni_supported_list());
  const char *sep = " ";
#define NK_CNI_CODE_PRINT(name, value) \
  printf("%s%d %s", sep, value, #name); \
  sep = ", ";
  NK_CNI_CODES(NK_CNI_CODE_PRINT)
#undef NK_CNI_CODE_PRINT
  printf("\n");
}

void fail(int code, const char *msg, const char *details) {
  struct buf b = {0};
  buf_puts(&b, "{\"cniVersion\":");
  buf_json_str(&b, g_cni_version);
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  buf_puts(&b, ",\"code\":");
  buf_puts(&b, num);
  buf_puts(&b, ",\"msg\":");
  buf_json_str(&b, msg);
  buf_puts(&b, ",\"details\":");
  buf_json_str(&b, details ? details : "");
  buf_puts(&b, "}\n");
  fwrite(b.p, 1, b.len, stdout);
  fflush(stdout);
  exit(1);
}

// Not through fail(): its buffer would need the memory that just ran out.
void oom(void) {
  printf("{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"nkit-cni: out of memory\",\"details\":\"\"}\n",
         g_cni_version, E_IO);
  fflush(stdout);
  exit(1);
}
