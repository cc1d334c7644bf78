// cni-timer: stands in for a CNI plugin in a benchmark's cni_path and times the real one.
//
// Installed (copied or hard-linked) under a plugin's name, it runs <real dir>/<that name> with the same
// argv, environment, stdin and stdout, waits for it, appends one line to the log and exits with the
// plugin's status. The real dir and the log come from a ".cni-timer" file next to it: line 1 the real
// plugin dir, line 2 the log file. A log line is tab-separated:
//   plugin  CNI_COMMAND  CNI_CONTAINERID  start_ns  end_ns  exit_status   (CLOCK_MONOTONIC)
// Measured inside the wrapper, so the wrapper's own exec is not counted; the plugin's is.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void chomp(char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
}

int main(int argc, char **argv) {
  (void)argc;
  char self[PATH_MAX], name[PATH_MAX], conf[PATH_MAX + 16];
  snprintf(self, sizeof self, "%s", argv[0]);
  snprintf(name, sizeof name, "%s", argv[0]);
  const char *dir = dirname(self);
  const char *plugin = basename(name);
  snprintf(conf, sizeof conf, "%s/.cni-timer", dir);
  FILE *f = fopen(conf, "r");
  if (!f) {
    fprintf(stderr, "cni-timer: cannot read %s: %s\n", conf, strerror(errno));
    return 1;
  }
  char real_dir[PATH_MAX], log_path[PATH_MAX], real[2 * PATH_MAX];
  if (!fgets(real_dir, sizeof real_dir, f) || !fgets(log_path, sizeof log_path, f)) {
    fprintf(stderr, "cni-timer: %s needs two lines: the real plugin dir, the log file\n", conf);
    fclose(f);
    return 1;
  }
  fclose(f);
  chomp(real_dir);
  chomp(log_path);
  snprintf(real, sizeof real, "%s/%s", real_dir, plugin);

  unsigned long long start = now_ns();
  pid_t pid = fork();
  if (pid < 0) {
    perror("cni-timer: fork");
    return 1;
  }
  if (pid == 0) {
    argv[0] = real;
    execv(real, argv);
    fprintf(stderr, "cni-timer: exec %s: %s\n", real, strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      perror("cni-timer: waitpid");
      return 1;
    }
  }
  unsigned long long end = now_ns();
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  const char *cmd = getenv("CNI_COMMAND");
  const char *id = getenv("CNI_CONTAINERID");
  char line[1024];
  int n = snprintf(line, sizeof line, "%s\t%s\t%s\t%llu\t%llu\t%d\n", plugin, cmd ? cmd : "-",
                   id ? id : "-", start, end, code);
  // One write with O_APPEND: lines of concurrent plugins never interleave.
  int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    if (write(fd, line, (size_t)n) != n) perror("cni-timer: write log");
    close(fd);
  }
  return code;
}
