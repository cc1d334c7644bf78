/* The process's native heap: glibc keeps memory malloc has freed (the parser's memory of nkitd's
 * 1.6 MB bundle, a burst's buffers) in its arenas, counted in RSS, until malloc_trim(3) hands the
 * free pages back. nkitd measured 10 MiB of it right after starting (bench/README.md, Memory). */
#include "common.h"

#include <malloc.h>

/* mallocFreeBytes() -> number: bytes malloc holds free in its arenas (mallinfo2 fordblks). */
static napi_value malloc_free_bytes(napi_env env, napi_callback_info info) {
  struct mallinfo2 mi = mallinfo2();
  napi_value v;
  if (napi_create_double(env, (double)mi.fordblks, &v) != napi_ok) return NULL;
  return v;
}

/* mallocTrim() -> bool: returns the free pages of every arena to the kernel; true when any were. */
static napi_value malloc_trim_all(napi_env env, napi_callback_info info) {
  return nk_bool(env, malloc_trim(0) == 1);
}

napi_value nk_register_memory(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"mallocFreeBytes", malloc_free_bytes},
      {"mallocTrim", malloc_trim_all},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]) ? exports : NULL;
}
