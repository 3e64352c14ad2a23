// C baselines for bench/faults.mjs: the same real faults devmap serves in TypeScript, served by a C thread.
//
// c_fault_roundtrip(pages): a child process (forked here; it uses raw system calls only) maps `pages` pages of a
// memfd, registers them with its own userfaultfd in minor mode and hands the uffd to this process; it then
// touches every page once and reports the nanoseconds its touch loop took. A C thread here serves each fault
// with UFFDIO_CONTINUE, which is what devmap's host does after devmap_access → devmap_load. Returns the child's
// ns per touch, or -errno.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "../common.h"
#include "baselines.h"

namespace devmap {

namespace {

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
    if (poll(&p, 1, 5000) <= 0) break;
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

int RecvFd(int sock) {
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
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

}  // namespace

void InitFaultBaselines(Napi::Env env, Napi::Object exports) {
  exports["c_fault_roundtrip"] = Napi::Function::New(env, FaultRoundtrip, "c_fault_roundtrip");
  exports["c_madvise_dontneed"] = Napi::Function::New(env, MadviseDontneed, "c_madvise_dontneed");
}

}  // namespace devmap
