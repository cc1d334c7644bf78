/* rr: netperf-style TCP_RR and TCP_CRR for nkit's benchmarks (netperf is not in Debian 12 main).
 *
 *   rr server [-4|-6] PORT                     serve until killed (one thread per connection)
 *   rr rr  HOST PORT SECONDS                   one connection, 1-byte request/response ping-pong
 *   rr crr HOST PORT SECONDS                   connect + 1-byte request/response + close, repeated
 *
 * Client output is one JSON line: {"mode","transactions","seconds","rate","p50_us","p90_us","p99_us"}.
 * Latencies go into a log2-linear histogram so memory stays constant however long the run. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* 64 buckets per power of two of nanoseconds: about 1.1% resolution. */
#define SUB 64
static uint64_t hist[64 * SUB];
static void record(uint64_t ns) {
  if (ns == 0) ns = 1;
  int p = 63 - __builtin_clzll(ns);
  uint64_t base = 1ull << p;
  int sub = p >= 6 ? (int)((ns - base) >> (p - 6)) : (int)((ns - base) << (6 - p));
  if (sub >= SUB) sub = SUB - 1;
  hist[p * SUB + sub]++;
}
static double quantile(uint64_t total, double q) {
  uint64_t want = (uint64_t)(q * (double)total), seen = 0;
  for (int i = 0; i < 64 * SUB; i++) {
    seen += hist[i];
    if (seen > want) {
      int p = i / SUB, sub = i % SUB;
      double base = (double)(1ull << p);
      return (base + base * (sub + 0.5) / SUB) / 1000.0;
    }
  }
  return 0;
}

static void die(const char *what) {
  fprintf(stderr, "rr: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int full_io(int fd, char *buf, size_t n, int writing) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return -1;
    }
    done += (size_t)r;
  }
  return 0;
}

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char b;
  /* 'c' asks for a close after the reply (TCP_CRR): the server closes first, so TIME_WAIT lands
   * here and the client never runs out of ports. */
  while (full_io(fd, &b, 1, 0) == 0 && full_io(fd, &b, 1, 1) == 0 && b != 'c') {
  }
  close(fd);
  return NULL;
}

static int server(int family, const char *port) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_storage ss = {0};
  socklen_t len;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)atoi(port));
    a->sin6_addr = in6addr_any;
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(port));
    len = sizeof *a;
  }
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) die("bind");
  if (listen(fd, 4096) < 0) die("listen");
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      die("accept");
    }
    pthread_t t;
    if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)c) != 0) die("pthread_create");
    pthread_detach(t);
  }
  return 0;
}

static struct addrinfo *resolve(const char *host, const char *port) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *ai;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "rr: %s: %s\n", host, gai_strerror(rc));
    exit(1);
  }
  return ai;
}

static int dial(struct addrinfo *ai) {
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) die("connect");
  return fd;
}

static int client(const char *mode, const char *host, const char *port, double seconds) {
  struct addrinfo *ai = resolve(host, port);
  int crr = strcmp(mode, "crr") == 0;
  uint64_t start = now_ns(), deadline = start + (uint64_t)(seconds * 1e9), n = 0, t0, t1 = start;
  int fd = crr ? -1 : dial(ai);
  char b = crr ? 'c' : 'x';
  do {
    t0 = now_ns();
    if (crr) fd = dial(ai);
    if (full_io(fd, &b, 1, 1) < 0 || full_io(fd, &b, 1, 0) < 0) die("transaction");
    if (crr) {
      char eof;
      if (read(fd, &eof, 1) != 0) die("expected the server to close");
      close(fd);
    }
    t1 = now_ns();
    record(t1 - t0);
    n++;
  } while (t1 < deadline);
  if (!crr) close(fd);
  double secs = (double)(t1 - start) / 1e9;
  printf("{\"mode\":\"%s\",\"transactions\":%llu,\"seconds\":%.3f,\"rate\":%.1f,\"p50_us\":%.2f,\"p90_us\":%.2f,"
         "\"p99_us\":%.2f}\n",
         crr ? "TCP_CRR" : "TCP_RR", (unsigned long long)n, secs, (double)n / secs, quantile(n, 0.5),
         quantile(n, 0.9), quantile(n, 0.99));
  freeaddrinfo(ai);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 3 && strcmp(argv[1], "server") == 0) {
    int family = AF_INET;
    int i = 2;
    if (strcmp(argv[i], "-6") == 0) family = AF_INET6, i++;
    else if (strcmp(argv[i], "-4") == 0) i++;
    if (i >= argc) goto usage;
    return server(family, argv[i]);
  }
  if (argc == 5 && (strcmp(argv[1], "rr") == 0 || strcmp(argv[1], "crr") == 0))
    return client(argv[1], argv[2], argv[3], atof(argv[4]));
usage:
  fprintf(stderr, "usage: rr server [-4|-6] PORT | rr rr|crr HOST PORT SECONDS\n");
  return 2;
}
