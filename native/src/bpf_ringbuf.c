/* BPF ring buffer consumer (BPF_MAP_TYPE_RINGBUF): a background thread waits on the map fd and an
 * eventfd, drains records with ring_buffer__consume and hands them to JS in batches through a
 * threadsafe function. Batches are framed as repeated [u32 length (host order)][record bytes].
 *
 * The thread never blocks on JS: batches go through the threadsafe function's queue without
 * waiting, and when that queue is full the batch is dropped and counted (`lost`, reported with the
 * next delivered batch). Events are best effort; the datapath counters stay exact.
 *
 * Lifetime: ringbufClose() stops the thread (eventfd wake-up, join), frees the ring and closes its
 * own dup of the map fd, and aborts the threadsafe function so nothing queued is delivered after
 * close. The same happens from the GC finalizer of a forgotten handle and from an env cleanup hook
 * at process exit, so no thread or fd outlives its handle. */
#include "bpf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NK_RB_BATCH_BYTES (64 * 1024)
#define NK_RB_QUEUE 64

typedef struct {
  uint8_t *data;
  size_t len;
  uint32_t records;
  uint32_t lost;
} nk_rb_batch;

typedef struct {
  int map_fd; /* our own dup, closed at stop */
  int wake_fd; /* eventfd: written by stop */
  struct ring_buffer *rb;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  bool running;   /* thread started and not yet joined (main thread only) */
  bool hook;      /* env cleanup hook registered (main thread only) */
  napi_env env;
  nk_rb_batch cur; /* owned by the thread while running */
  atomic_uint lost;
  atomic_bool closing;
} nk_rb;

static void batch_free(nk_rb_batch *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->records = 0;
}

/* Thread side: queues the current batch for JS (never blocks). */
static void rb_flush(nk_rb *r) {
  if (r->cur.len == 0) return;
  nk_rb_batch *item = malloc(sizeof *item);
  if (item) {
    *item = r->cur;
    item->lost = atomic_exchange(&r->lost, 0);
    r->cur.data = NULL;
    r->cur.len = 0;
    r->cur.records = 0;
    napi_status st = napi_call_threadsafe_function(r->tsfn, item, napi_tsfn_nonblocking);
    if (st == napi_ok) return;
    atomic_fetch_add(&r->lost, item->lost + item->records);
    if (st == napi_closing) atomic_store(&r->closing, true);
    free(item->data);
    free(item);
    return;
  }
  atomic_fetch_add(&r->lost, r->cur.records);
  batch_free(&r->cur);
}

static int rb_sample(void *ctx, void *data, size_t size) {
  nk_rb *r = ctx;
  /* A producer flooding the ring must not keep ring_buffer__consume (and so stop) waiting. */
  if (atomic_load(&r->closing)) return -ECANCELED;
  size_t need = 4 + size;
  if (r->cur.len && r->cur.len + need > NK_RB_BATCH_BYTES) rb_flush(r);
  if (!r->cur.data) {
    size_t cap = need > NK_RB_BATCH_BYTES ? need : NK_RB_BATCH_BYTES;
    r->cur.data = malloc(cap);
    if (!r->cur.data) {
      atomic_fetch_add(&r->lost, 1);
      return 0;
    }
  }
  uint32_t len = (uint32_t)size;
  memcpy(r->cur.data + r->cur.len, &len, 4);
  memcpy(r->cur.data + r->cur.len + 4, data, size);
  r->cur.len += need;
  r->cur.records++;
  return 0;
}

static void *rb_thread(void *arg) {
  nk_rb *r = arg;
  struct pollfd fds[2] = {{.fd = r->map_fd, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN}};
  while (!atomic_load(&r->closing)) {
    int n = poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (ring_buffer__consume(r->rb) < 0) break;
    rb_flush(r);
  }
  batch_free(&r->cur);
  return NULL;
}

/* Main thread: delivers one batch to the JS callback as (Buffer, records, lost). */
static void rb_call_js(napi_env env, napi_value cb, void *context, void *data) {
  nk_rb_batch *b = data;
  if (env && cb) {
    napi_value argv[3], undef;
    void *copy;
    if (napi_create_buffer_copy(env, b->len, b->data, &copy, &argv[0]) == napi_ok) {
      argv[1] = nk_u32(env, b->records);
      argv[2] = nk_u32(env, b->lost);
      napi_get_undefined(env, &undef);
      /* An exception in the callback surfaces as an uncaught exception, like any event handler. */
      napi_call_function(env, undef, cb, 3, argv, NULL);
    }
  }
  free(b->data);
  free(b);
}

/* Main thread: idempotent. */
static void rb_stop(nk_rb *r) {
  if (r->running) {
    atomic_store(&r->closing, true);
    uint64_t one = 1;
    ssize_t w = write(r->wake_fd, &one, sizeof one);
    (void)w;
    pthread_join(r->thread, NULL);
    r->running = false;
  }
  if (r->tsfn) {
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    r->tsfn = NULL;
  }
  if (r->rb) {
    ring_buffer__free(r->rb);
    r->rb = NULL;
  }
  if (r->map_fd >= 0) {
    close(r->map_fd);
    r->map_fd = -1;
  }
  if (r->wake_fd >= 0) {
    close(r->wake_fd);
    r->wake_fd = -1;
  }
}

static void rb_cleanup_hook(void *arg) {
  nk_rb *r = arg;
  r->hook = false;
  rb_stop(r);
}

static void rb_finalize(napi_env env, void *data, void *hint) {
  nk_rb *r = data;
  if (r->hook) {
    napi_remove_env_cleanup_hook(env, rb_cleanup_hook, r);
    r->hook = false;
  }
  rb_stop(r);
  free(r);
}

static nk_rb *rb_arg(napi_env env, napi_value v) {
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok ||
      !p) {
    nk_throw_type(env, "ring buffer handle expected");
    return NULL;
  }
  return p;
}

/* ringbufOpen(mapHandle, onBatch(buf, records, lost)) -> handle. */
static napi_value ringbuf_open(napi_env env, napi_callback_info info) {
  napi_value argv[2], name, ext;
  if (!nk_args(env, info, 2, argv)) return NULL;
  nk_fd *h = nk_fd_arg(env, argv[0], "map", NK_FD_MAP);
  if (!h) return NULL;
  if (h->map.type != BPF_MAP_TYPE_RINGBUF) {
    nk_throw_errno(env, EINVAL, "ringbufOpen", "the map is not a BPF_MAP_TYPE_RINGBUF");
    return NULL;
  }
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) {
    nk_throw_type(env, "onBatch must be a function");
    return NULL;
  }
  nk_rb *r = calloc(1, sizeof *r);
  if (!r) {
    nk_throw_errno(env, ENOMEM, "calloc", "ring buffer");
    return NULL;
  }
  r->map_fd = -1;
  r->wake_fd = -1;
  r->env = env;
  int err = 0;
  const char *op = "";
  r->map_fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
  if (r->map_fd < 0) {
    err = errno;
    op = "dup";
    goto fail;
  }
  r->wake_fd = eventfd(0, EFD_CLOEXEC);
  if (r->wake_fd < 0) {
    err = errno;
    op = "eventfd";
    goto fail;
  }
  r->rb = ring_buffer__new(r->map_fd, rb_sample, r, NULL);
  if (!r->rb) {
    err = errno ? errno : EINVAL;
    op = "ring_buffer__new";
    goto fail;
  }
  napi_create_string_utf8(env, "nkit-ringbuf", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, NK_RB_QUEUE, 1, NULL, NULL, NULL, rb_call_js,
                                      &r->tsfn) != napi_ok) {
    r->tsfn = NULL;
    err = EINVAL;
    op = "napi_create_threadsafe_function";
    goto fail;
  }
  /* The consumer alone does not keep the process alive. */
  napi_unref_threadsafe_function(env, r->tsfn);
  err = pthread_create(&r->thread, NULL, rb_thread, r);
  if (err) {
    op = "pthread_create";
    goto fail;
  }
  r->running = true;
  if (napi_create_external(env, r, rb_finalize, NULL, &ext) != napi_ok) {
    rb_stop(r);
    free(r);
    nk_throw_napi(env, "napi_create_external");
    return NULL;
  }
  if (napi_add_env_cleanup_hook(env, rb_cleanup_hook, r) == napi_ok) r->hook = true;
  return ext;
fail:
  rb_stop(r);
  free(r);
  nk_throw_errno(env, err, op, "BPF ring buffer consumer");
  return NULL;
}

/* ringbufClose(handle): stops the thread and frees everything; idempotent. */
static napi_value ringbuf_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!nk_args(env, info, 1, argv)) return NULL;
  nk_rb *r = rb_arg(env, argv[0]);
  if (!r) return NULL;
  if (r->hook) {
    napi_remove_env_cleanup_hook(env, rb_cleanup_hook, r);
    r->hook = false;
  }
  rb_stop(r);
  return nk_undefined(env);
}

napi_value nk_register_ringbuf(napi_env env, napi_value exports) {
  static const nk_fn fns[] = {
      {"ringbufOpen", ringbuf_open},
      {"ringbufClose", ringbuf_close},
  };
  return nk_export(env, exports, fns, sizeof fns / sizeof fns[0]) ? exports : NULL;
}
