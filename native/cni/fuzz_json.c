// libFuzzer target (clang -fsanitize=fuzzer,address,undefined; `make fuzz`, run by scripts/fuzz.sh):
// the JSON scanner that reads every byte a runtime writes to nkit-cni's stdin, then every string
// member decoded the way the shim reads cniVersion, socket and the rest. A crash, a sanitizer report,
// a leak or a hang here is a crash of the plugin that runs as root on every pod start.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cni.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct buf min = {0};
  struct doc d;
  const char *err = json_parse_object((const char *)data, size, &min, &d);
  if (!err) {
    // The minified copy is itself one valid object with the same members.
    struct doc again;
    if (json_parse_object(min.p, min.len, NULL, &again) != NULL || again.count != d.count) abort();
    for (int i = 0; i < d.count; i++) {
      bool bad = false;
      for (size_t max = 0; max <= 4096; max = max ? max * 16 : 1) {
        char *v = json_get_string((const char *)data, &d, d.m[i].key, max, &bad);
        if (v && (bad || strlen(v) > max)) abort();
        if (v && d.m[i].kind == 's') (void)cni_version_supported(v);
        free(v);
      }
    }
  }
  free(min.p);
  free((void *)err); // allocated (fmt); the shim itself exits right after printing it
  return 0;
}
