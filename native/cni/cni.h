// The CNI side of the shim: the spec versions it speaks, its error codes and the error output.
// src/cni/codes.ts and src/cni/protocol.ts are the TypeScript side of the same tables; the
// shim prints both tables when run without CNI_COMMAND, and a test compares them.
#ifndef NKIT_CNI_CNI_H
#define NKIT_CNI_CNI_H
#include <stdbool.h>

// The CNI error codes the shim emits itself (before or instead of reaching nkitd), named as in
// src/cni/codes.ts (CniCode).
#define NK_CNI_CODES(X)          \
  X(INCOMPATIBLE_VERSION, 1)     \
  X(INVALID_ENV, 4)              \
  X(IO, 5)                       \
  X(DECODE, 6)                   \
  X(INVALID_CONFIG, 7)           \
  X(TRY_AGAIN, 11)               \
  X(STATUS_UNAVAILABLE, 50)      \
  X(PROTOCOL, 106)

#define NK_CNI_CODE_ENUM(name, value) E_##name = value,
enum { NK_CNI_CODES(NK_CNI_CODE_ENUM) };
#undef NK_CNI_CODE_ENUM

extern const char *const cni_supported_versions[];
extern const unsigned cni_n_supported_versions;

bool cni_version_supported(const char *v);
// "0.3.0, 0.3.1, ..." for messages.
const char *cni_supported_list(void);
// The cniVersion error JSON carries (the caller's once it is known and supported).
void cni_set_version(const char *v);
// Prints the tables (versions, error codes) for operators and the drift test.
void cni_print_tables(void);

// CNI error JSON on stdout, exit 1.
_Noreturn void fail(int code, const char *msg, const char *details);
_Noreturn void oom(void);

#endif
