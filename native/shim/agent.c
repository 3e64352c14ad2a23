// The fault agent of a client process: see agent.h.
//
// Why a thread: the host decides, on its own event loop, that a client's pages must go (devmap_unload from a
// context switch) while every thread of the client may be busy — or sitting in a fault the host has not
// answered yet. Linux lets no process zap another's page tables (process_madvise accepts no MADV_DONTNEED), so
// the client keeps one thread that never touches devmap memory and only waits on its socket: it does the
// madvise and acknowledges, and devmap_unload returns after the acknowledgement.
//
// The same thread watches for the host's death: its end of the agent socket then reads end-of-file, and it
// unregisters the reservation from the uffd. Unregistering wakes every thread waiting in a fault there; they
// fault again, now as ordinary shared-memory faults, and run on.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "agent.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// One agent per connection: a Node process may hold many connections at once.
#define MAX_AGENTS 1024
// The thread only waits on a socket and calls madvise: a small stack is plenty.
#define AGENT_STACK (64 * 1024)

struct agent {
  int used;
  int sock;
  int uffd;
  uint64_t base;
  uint64_t size;
  int report;
  volatile int stopping;
  volatile int gone;
  pthread_t thread;
};

static struct agent agents[MAX_AGENTS];
static pthread_mutex_t agents_lock = PTHREAD_MUTEX_INITIALIZER;

static int send_msg(int sock, const struct dm_agent_msg* m) {
  const char* p = (const char*)m;
  size_t left = sizeof *m;
  while (left > 0) {
    ssize_t n = send(sock, p, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -EPIPE;
    p += n;
    left -= (size_t)n;
  }
  return 0;
}

// 1 for a whole message, 0 at end of stream, -errno.
static int recv_msg(int sock, struct dm_agent_msg* m) {
  char* p = (char*)m;
  size_t have = 0;
  while (have < sizeof *m) {
    ssize_t n = recv(sock, p + have, sizeof *m - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return 0;
    have += (size_t)n;
  }
  return 1;
}

static int in_range(const struct agent* ag, int64_t off, int64_t len) {
  return off >= 0 && len > 0 && (uint64_t)off < ag->size && (uint64_t)len <= ag->size - (uint64_t)off;
}

static int64_t serve(struct agent* ag, const struct dm_agent_msg* m) {
  if (!in_range(ag, m->a, m->b)) return -EINVAL;
  void* addr = (void*)(uintptr_t)(ag->base + (uint64_t)m->a);
  if (m->op == DM_AGENT_UNLOAD) {
    return madvise(addr, (size_t)m->b, MADV_DONTNEED) < 0 ? -errno : 0;
  }
  if (m->op == DM_AGENT_REFUSE) {
    if (syscall(SYS_mprotect, addr, (size_t)m->b, PROT_NONE) < 0) return -errno;
    struct uffdio_range r = {(uint64_t)(uintptr_t)addr, (uint64_t)m->b};
    return ioctl(ag->uffd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
  }
  return -EINVAL;
}

static void* run(void* arg) {
  struct agent* ag = arg;
  struct dm_agent_msg m;
  while (!ag->stopping && recv_msg(ag->sock, &m) == 1) {
    struct dm_agent_msg reply = {m.op | DM_AGENT_REPLY, m.seq, serve(ag, &m), 0};
    if (send_msg(ag->sock, &reply) < 0) break;
  }
  if (!ag->stopping) {
    // The host is gone: nobody will answer the faults of this reservation again.
    // Unregistering wakes only missing-mode waiters: the minor-mode ones are woken explicitly, and fault again
    // as ordinary shared-memory faults.
    struct uffdio_range r = {ag->base, ag->size};
    ioctl(ag->uffd, UFFDIO_UNREGISTER, &r);
    ioctl(ag->uffd, UFFDIO_WAKE, &r);
    ag->gone = 1;
    if (ag->report) {
      static const char msg[] = "devmap: ERR_DEVMAP_HOST_GONE: the kernel host went away; device mappings no longer fault into it\n";
      ssize_t ignored = write(2, msg, sizeof msg - 1);
      (void)ignored;
    }
  }
  return NULL;
}

int dm_agent_start(int sock, int uffd, uint64_t base, uint64_t size, int report) {
  pthread_mutex_lock(&agents_lock);
  int id = -1;
  for (int i = 0; i < MAX_AGENTS; i++) {
    if (!agents[i].used) {
      id = i;
      break;
    }
  }
  if (id < 0) {
    pthread_mutex_unlock(&agents_lock);
    return -EMFILE;
  }
  struct agent* ag = &agents[id];
  memset(ag, 0, sizeof *ag);
  ag->used = 1;
  ag->sock = sock;
  ag->uffd = uffd;
  ag->base = base;
  ag->size = size;
  ag->report = report;
  // The thread blocks every signal: a program's handlers never run on it, and it is never the one interrupted.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, AGENT_STACK);
  int rc = pthread_create(&ag->thread, &attr, run, ag);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) ag->used = 0;
  pthread_mutex_unlock(&agents_lock);
  return rc != 0 ? -rc : id;
}

static struct agent* find(int id) {
  return id >= 0 && id < MAX_AGENTS && agents[id].used ? &agents[id] : NULL;
}

int dm_agent_stop(int id) {
  pthread_mutex_lock(&agents_lock);
  struct agent* ag = find(id);
  if (!ag) {
    pthread_mutex_unlock(&agents_lock);
    return -EINVAL;
  }
  ag->stopping = 1;
  shutdown(ag->sock, SHUT_RDWR);
  pthread_mutex_unlock(&agents_lock);
  pthread_join(ag->thread, NULL);
  pthread_mutex_lock(&agents_lock);
  ag->used = 0;
  pthread_mutex_unlock(&agents_lock);
  return 0;
}

int dm_agent_state(int id) {
  struct agent* ag = find(id);
  return ag ? (ag->gone ? 1 : 0) : -EINVAL;
}

int dm_agent_hello(int sock, int uffd, uint64_t base, uint64_t size) {
  struct dm_agent_msg m = {DM_AGENT_HELLO, 0, (int64_t)base, (int64_t)size};
  struct iovec iov = {&m, sizeof m};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)sizeof m ? 0 : (n < 0 ? -errno : -EPIPE);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int dm_agent_call(int sock, uint32_t op, int64_t a, int64_t b, int timeout_ms) {
  static uint32_t next_seq;
  uint32_t seq = ++next_seq;
  struct dm_agent_msg m = {op, seq, a, b};
  if (send_msg(sock, &m) < 0) return -EPIPE;
  // One deadline for the whole wait: a client that keeps sending other messages cannot hold the host longer.
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd p = {sock, POLLIN, 0};
    int rc = poll(&p, 1, (int)left);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return -errno;
    if (rc == 0) return -ETIMEDOUT;
    struct dm_agent_msg reply;
    rc = recv_msg(sock, &reply);
    if (rc <= 0) return -EPIPE;
    // A late answer to a request that timed out earlier is skipped.
    if (reply.seq == seq && reply.op == (op | DM_AGENT_REPLY)) return (int)reply.a;
  }
}
