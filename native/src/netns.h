/* Network namespace helpers shared by the addon's modules. */
#ifndef NKIT_NETNS_H
#define NKIT_NETNS_H

#include <stddef.h>

#define NK_DETAIL_LEN 256

/* Opens a netns file (O_RDONLY|O_CLOEXEC) and checks it lives on nsfs. Returns the fd, or -errno
 * with a human-readable reason in detail. */
int nk_netns_open(const char *path, char *detail, size_t dlen);

/* Runs fn(arg) on a fresh thread that first joins the netns at path, so the calling thread (the JS
 * thread or a libuv worker) never changes namespace. Returns fn's result (0 or -errno), or -errno
 * from opening/entering the netns with a reason in detail. With path NULL, fn runs directly. */
int nk_in_netns(const char *path, int (*fn)(void *arg), void *arg, char *detail, size_t dlen);

/* socket(2) created inside the netns at path (NULL: the caller's). Returns the fd or -errno. */
int nk_netns_socket(const char *path, int domain, int type, int protocol, char *detail, size_t dlen);

#endif
