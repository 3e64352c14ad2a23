// The C client of bench/clients.mjs: run under devmap's preload shim against a kernel host, it times system
// calls on a served device in a loop and prints nanoseconds per operation (one number). Usage:
//   client-bench mmap N LEN PATH   N × (mmap LEN bytes of PATH shared, munmap it)
//   client-bench read N PATH       N × read(fd, buf, 4096)
//   client-bench pipe N            N × (write 4096 bytes to a pipe, read them back): the baseline of `read`
//   client-bench spawn N PATH      N × (fork; the child opens PATH — connect, hello, open — and exits; wait)
//   client-bench spawn N -         the same with /dev/null, never connecting: the baseline of `spawn`
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const char* mode = argv[1];
  long n = atol(argv[2]);
  static char buf[4096];
  double t0 = 0, t1 = 0;
  if (strcmp(mode, "mmap") == 0 && argc == 5) {
    size_t len = (size_t)atol(argv[3]);
    int fd = open(argv[4], O_RDWR);
    if (fd < 0) { perror("open"); return 1; }
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      void* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED || munmap(p, len) != 0) { perror("mmap/munmap"); return 1; }
    }
    t1 = now_ns();
  } else if (strcmp(mode, "read") == 0 && argc == 4) {
    int fd = open(argv[3], O_RDWR);
    if (fd < 0) { perror("open"); return 1; }
    t0 = now_ns();
    for (long i = 0; i < n; i++) if (read(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("read"); return 1; }
    t1 = now_ns();
  } else if (strcmp(mode, "pipe") == 0) {
    int p[2];
    if (pipe(p) != 0) return 1;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      if (write(p[1], buf, sizeof buf) != (ssize_t)sizeof buf || read(p[0], buf, sizeof buf) != (ssize_t)sizeof buf) return 1;
    }
    t1 = now_ns();
  } else if (strcmp(mode, "spawn") == 0 && argc == 4) {
    const char* path = strcmp(argv[3], "-") == 0 ? "/dev/null" : argv[3];
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      pid_t pid = fork();
      if (pid < 0) return 1;
      if (pid == 0) exit(open(path, O_RDWR) < 0 ? 1 : 0);  // exit(): the shim says goodbye and waits
      int status;
      if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    }
    t1 = now_ns();
  } else {
    return 2;
  }
  printf("%.1f\n", (t1 - t0) / n);
  return 0;
}
