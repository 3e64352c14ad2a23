// C baselines for bench/faults.mjs: the same real faults devmap serves in TypeScript, served by a C thread.
//
// c_fault_roundtrip(pages): a child process (forked here; it uses raw system calls only) maps `pages` pages of a
// memfd, registers them with its own userfaultfd in minor mode and hands the uffd to this process; it then
// touches every page once and reports the nanoseconds its touch loop took. A C thread here serves each fault
// with UFFDIO_CONTINUE, which is what devmap's host does after devmap_access → devmap_load. Returns the child's
// ns per touch, or -errno.
//
// c_ctx_switch(rounds, program): the context-switch case's C-served equivalent. Two client processes (the
// program bench/ctx-client.c in its uffd mode, the same turn-taking loop as the devmap variant runs under the
// shim) take turns on one page of a memfd; each registers it with its own uffd and runs the agent thread of
// native/shim/agent.c. This thread serves both uffds the way devmap's host serves a context switch: a fault from
// the process that does not own the page first has the owner's agent drop it (dm_agent_call, DM_AGENT_UNLOAD,
// acknowledged — the same call devmap_unload makes), then UFFDIO_CONTINUE for the faulting one. Returns the
// leader's ns per switch, or -errno (-EPROTO when not every touch was a switch).
//
// Every wait here is on other processes, in a host process that has signal handlers: Node's (libuv) SIGCHLD
// handler runs as soon as any child was spawned through child_process, and the clients spawned here send it
// when they exit — the follower often while the leader's result is still on its way. poll() is never
// restarted after a handler (SA_RESTART or not), so each wait goes through Await, which waits again for what is
// left of its time. The time is a hang guard only (kHangGuardMs, far beyond any scheduling delay of a loaded
// machine): it never decides a result that mere load could change.
//
// c_madvise_dontneed(n): MADV_DONTNEED of one page of a memfd mapping, n times; returns ns per call — beside
// devmap_unload of a client's page, which the client's agent does and acknowledges (in both loops the page is
// loaded for the first call only).
#include <napi.h>

#include <cerrno>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
#include "../shim/agent.h"
}

#include "../common.h"
#include "baselines.h"

namespace devmap {

namespace {

// How long a wait for another process may see nothing at all before the baseline gives up (-ETIMEDOUT).
constexpr int kHangGuardMs = 30000;

// poll() for up to timeout_ms in all, EINTR waited through: > 0 ready, 0 timed out, -errno.
int Await(pollfd* fds, nfds_t n, int timeout_ms) {
  int64_t deadline = Deadline(timeout_ms);
  for (;;) {
    int64_t left_ms = (deadline - MonoNs() + 999999) / 1000000;
    int rc = poll(fds, n, left_ms > 0 ? static_cast<int>(left_ms) : 0);
    if (rc >= 0) return rc;
    if (errno != EINTR) return -errno;
    if (left_ms <= 0) return 0;
  }
}

struct Server {
  int uffd;
  long faults;
};

// Serves minor faults with UFFDIO_CONTINUE until `faults` were served (or the uffd fails).
void* Serve(void* arg) {
  Server* s = static_cast<Server*>(arg);
  long served = 0;
  while (served < s->faults) {
    pollfd p{s->uffd, POLLIN, 0};
    if (Await(&p, 1, kHangGuardMs) <= 0) break;
    uffd_msg m;
    ssize_t n = read(s->uffd, &m, sizeof m);
    if (n != sizeof m) {
      if (n < 0 && errno == EAGAIN) continue;
      break;
    }
    if (m.event != UFFD_EVENT_PAGEFAULT) continue;
    long page = sysconf(_SC_PAGESIZE);
    uffdio_continue c{};
    c.range.start = m.arg.pagefault.address & ~static_cast<uint64_t>(page - 1);
    c.range.len = page;
    if (ioctl(s->uffd, UFFDIO_CONTINUE, &c) < 0 && errno != EEXIST) break;
    served++;
  }
  return nullptr;
}

int SendFd(int sock, int fd) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  std::memset(control, 0, sizeof control);
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

// A descriptor sent with exactly `len` bytes into `buf`; -1 when none came.
int RecvFdWith(int sock, void* buf, size_t len) {
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != static_cast<ssize_t>(len)) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

int RecvFd(int sock) {
  char byte;
  return RecvFdWith(sock, &byte, 1);
}

// The child: its own uffd, its own mapping, the touch loop. Raw system calls and no allocation (it is a fork of
// a multithreaded process).
[[noreturn]] void Child(int sock, int memfd, size_t len, long page) {
  int uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd < 0) uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  uffdio_api api{UFFD_API, UFFD_FEATURE_MINOR_SHMEM, 0};
  void* a = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uintptr_t>(a);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_MINOR;
  if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 || a == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ||
      SendFd(sock, uffd) < 0) {
    _exit(1);
  }
  char go;
  if (read(sock, &go, 1) != 1) _exit(2);
  volatile char* p = static_cast<volatile char*>(a);
  double t0 = NowNs();
  for (size_t off = 0; off < len; off += static_cast<size_t>(page)) (void)p[off];
  double ns = NowNs() - t0;
  if (write(sock, &ns, sizeof ns) != sizeof ns) _exit(3);
  _exit(0);
}

Napi::Value FaultRoundtrip(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1)) return env.Undefined();
  long pages = static_cast<long>(Num(info, 0));
  long page = sysconf(_SC_PAGESIZE);
  size_t len = static_cast<size_t>(pages * page);
  int memfd = static_cast<int>(syscall(SYS_memfd_create, "devmap-bench-faults", MFD_CLOEXEC));
  if (memfd < 0) return NumberOf(env, -errno);
  // The pages must be in the page cache for a minor fault (devmap's objects are fallocated likewise).
  if (ftruncate(memfd, static_cast<off_t>(len)) < 0 || fallocate(memfd, 0, 0, static_cast<off_t>(len)) < 0) {
    int err = errno;
    close(memfd);
    return NumberOf(env, -err);
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    close(memfd);
    return NumberOf(env, -errno);
  }
  pid_t pid = fork();
  if (pid == 0) Child(sv[1], memfd, len, page);
  close(sv[1]);
  close(memfd);
  double result = -EIO;
  int uffd = pid > 0 ? RecvFd(sv[0]) : -1;
  if (uffd >= 0) {
    Server s{uffd, pages};
    pthread_t thread;
    pthread_create(&thread, nullptr, Serve, &s);
    char go = 'g';
    double ns;
    if (write(sv[0], &go, 1) == 1 && read(sv[0], &ns, sizeof ns) == sizeof ns) result = ns / static_cast<double>(pages);
    pthread_join(thread, nullptr);
    close(uffd);
  }
  close(sv[0]);
  if (pid > 0) waitpid(pid, nullptr, 0);
  return NumberOf(env, result);
}

Napi::Value MadviseDontneed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1)) return env.Undefined();
  long n = static_cast<long>(Num(info, 0));
  long page = sysconf(_SC_PAGESIZE);
  int memfd = static_cast<int>(syscall(SYS_memfd_create, "devmap-bench-dontneed", MFD_CLOEXEC));
  if (memfd < 0 || ftruncate(memfd, page) < 0) return NumberOf(env, -errno);
  void* a = mmap(nullptr, static_cast<size_t>(page), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  close(memfd);
  if (a == MAP_FAILED) return NumberOf(env, -errno);
  volatile char* p = static_cast<volatile char*>(a);
  double total = 0;
  (void)p[0];
  double t0 = NowNs();
  for (long i = 0; i < n; i++) madvise(a, static_cast<size_t>(page), MADV_DONTNEED);
  total = NowNs() - t0;
  munmap(a, static_cast<size_t>(page));
  return NumberOf(env, total / static_cast<double>(n));
}

// A copy of `fd` at 100 or above (so that the spawn's dup2 onto 3, 4, 5 and 1 never clobbers a source).
int High(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 100); }

// Spawns `program` with fds 3 (turn), 4 (agent), 5 (memfd) and stdout (`out`, or this process's when -1).
pid_t SpawnClient(const char* program, const char* role, const char* rounds, int turn, int agent, int memfd, int out) {
  int t = High(turn), a = High(agent), m = High(memfd), o = out >= 0 ? High(out) : -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, t, 3);
  posix_spawn_file_actions_adddup2(&fa, a, 4);
  posix_spawn_file_actions_adddup2(&fa, m, 5);
  if (o >= 0) posix_spawn_file_actions_adddup2(&fa, o, 1);
  char* argv[] = {const_cast<char*>(program), const_cast<char*>("uffd"), const_cast<char*>(role), const_cast<char*>(rounds), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program, &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(t);
  close(a);
  close(m);
  if (o >= 0) close(o);
  return rc == 0 ? pid : -1;
}

// The client's agent hello: its uffd and its page's address; -1 when it sent none.
int RecvHello(int sock, uint64_t* base) {
  dm_agent_msg m{};
  pollfd p{sock, POLLIN, 0};
  if (Await(&p, 1, kHangGuardMs) <= 0) return -1;
  int fd = RecvFdWith(sock, &m, sizeof m);
  if (fd >= 0 && m.op != DM_AGENT_HELLO) {
    close(fd);
    return -1;
  }
  *base = static_cast<uint64_t>(m.a);
  return fd;
}

// Serves both clients' faults as a context switch until the leader's result arrives on `result`; counts the
// switches (unloads of the other process) in `switches`.
double ServeSwitches(const int uffd[2], const int agent[2], const uint64_t base[2], int result, long page, long* switches) {
  int owner = -1;
  std::string out;
  for (;;) {
    pollfd p[3] = {{uffd[0], POLLIN, 0}, {uffd[1], POLLIN, 0}, {result, POLLIN, 0}};
    int n = Await(p, 3, kHangGuardMs);
    if (n <= 0) return n == 0 ? -ETIMEDOUT : n;
    if (p[2].revents) {
      char buf[64];
      ssize_t got = read(result, buf, sizeof buf);
      if (got > 0) out.append(buf, static_cast<size_t>(got));
      if (got <= 0 || out.find('\n') != std::string::npos) return out.empty() ? -EIO : std::strtod(out.c_str(), nullptr);
    }
    for (int x = 0; x < 2; x++) {
      if (!p[x].revents) continue;
      uffd_msg m;
      if (read(uffd[x], &m, sizeof m) != sizeof m || m.event != UFFD_EVENT_PAGEFAULT) continue;
      if (owner >= 0 && owner != x && dm_agent_call(agent[owner], DM_AGENT_UNLOAD, 0, page, kHangGuardMs) == 0) (*switches)++;
      owner = x;
      uffdio_continue c{};
      c.range.start = base[x];
      c.range.len = static_cast<uint64_t>(page);
      if (ioctl(uffd[x], UFFDIO_CONTINUE, &c) < 0 && errno == EEXIST) {
        uffdio_range r{base[x], static_cast<uint64_t>(page)};
        ioctl(uffd[x], UFFDIO_WAKE, &r);
      }
    }
  }
}

Napi::Value CtxSwitch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1) || !info[1].IsString()) return env.Undefined();
  std::string rounds = std::to_string(static_cast<long>(Num(info, 0)));
  std::string program = info[1].As<Napi::String>().Utf8Value();
  long page = sysconf(_SC_PAGESIZE);
  int memfd = static_cast<int>(syscall(SYS_memfd_create, "devmap-bench-ctx", MFD_CLOEXEC));
  if (memfd < 0) return NumberOf(env, -errno);
  if (ftruncate(memfd, page) < 0 || fallocate(memfd, 0, 0, page) < 0) {
    int err = errno;
    close(memfd);
    return NumberOf(env, -err);
  }
  int turn[2], a0[2], a1[2], res[2];
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, turn);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a0);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a1);
  if (pipe2(res, O_CLOEXEC) < 0) return NumberOf(env, -errno);
  pid_t leader = SpawnClient(program.c_str(), "leader", rounds.c_str(), turn[0], a0[1], memfd, res[1]);
  pid_t follower = SpawnClient(program.c_str(), "follower", rounds.c_str(), turn[1], a1[1], memfd, -1);
  for (int fd : {turn[0], turn[1], a0[1], a1[1], memfd, res[1]}) close(fd);
  double result = -EIO;
  uint64_t base[2] = {0, 0};
  int uffd[2] = {leader > 0 ? RecvHello(a0[0], &base[0]) : -1, follower > 0 ? RecvHello(a1[0], &base[1]) : -1};
  int agent[2] = {a0[0], a1[0]};
  long switches = 0;
  if (uffd[0] >= 0 && uffd[1] >= 0) result = ServeSwitches(uffd, agent, base, res[0], page, &switches);
  // Every touch must have been a switch (the warm-up round has one), or the figure is not of this case.
  if (result >= 0 && switches != 2 * static_cast<long>(Num(info, 0)) + 1) result = -EPROTO;
  // The agents see their sockets close and unregister; the clients have ended their loops already.
  for (int fd : {a0[0], a1[0], res[0], uffd[0], uffd[1]}) if (fd >= 0) close(fd);
  if (leader > 0) waitpid(leader, nullptr, 0);
  if (follower > 0) waitpid(follower, nullptr, 0);
  return NumberOf(env, result);
}

}  // namespace

void InitFaultBaselines(Napi::Env env, Napi::Object exports) {
  exports["c_fault_roundtrip"] = Napi::Function::New(env, FaultRoundtrip, "c_fault_roundtrip");
  exports["c_madvise_dontneed"] = Napi::Function::New(env, MadviseDontneed, "c_madvise_dontneed");
  exports["c_ctx_switch"] = Napi::Function::New(env, CtxSwitch, "c_ctx_switch");
}

}  // namespace devmap
