// The client processes of bench/faults.mjs's context-switch case: two of them take turns on one device page
// (native/bench/ctx_turns.h, the same loop in both variants). Built with native/shim/agent.c.
//   ctx-client device PATH leader|follower ROUNDS   under the preload shim (devmap run): maps one page of the
//       device PATH; its faults go to the devmap host, whose driver's devmap_access calls devmap_do_ctxmgt.
//   ctx-client uffd leader|follower ROUNDS          for the C server (native/bench/baseline_faults.cc): maps one
//       page of the memfd on fd 5, registers it with its own userfaultfd in minor mode, hands the uffd to the
//       server with the agent hello on fd 4 and runs the same agent thread as the shim.
// The turn socket is fd 3. The leader prints nanoseconds per switch.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../native/bench/ctx_turns.h"
#include "../native/shim/agent.h"

enum { TURN = 3, AGENT = 4, MEMFD = 5 };

static volatile unsigned char* map_uffd_page(long page) {
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  struct uffdio_api api = {UFFD_API, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID, 0};
  void* a = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, MEMFD, 0);
  if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 || a == MAP_FAILED) return NULL;
  struct uffdio_register reg = {{(uint64_t)(uintptr_t)a, (uint64_t)page}, UFFDIO_REGISTER_MODE_MINOR, 0};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) return NULL;
  if (dm_agent_hello(AGENT, uffd, (uint64_t)(uintptr_t)a, (uint64_t)page) < 0) return NULL;
  if (dm_agent_start(AGENT, uffd, (uint64_t)(uintptr_t)a, (uint64_t)page, 0) < 0) return NULL;
  return a;
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  long page = sysconf(_SC_PAGESIZE);
  int device = strcmp(argv[1], "device") == 0;
  if (device && argc < 5) return 2;
  int leader = strcmp(argv[device ? 3 : 2], "leader") == 0;
  long rounds = atol(argv[device ? 4 : 3]);
  volatile unsigned char* p;
  if (device) {
    int fd = open(argv[2], O_RDWR);
    void* a = fd < 0 ? MAP_FAILED : mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a == MAP_FAILED) {
      perror("ctx-client: mmap");
      return 10;
    }
    p = a;
  } else {
    p = map_uffd_page(page);
    if (!p) {
      perror("ctx-client: userfaultfd");
      return 11;
    }
  }
  double ns = dm_ctx_turns(p, TURN, leader, rounds);
  if (ns < 0) return 12;
  if (leader) printf("%.1f\n", ns);
  return 0;
}
