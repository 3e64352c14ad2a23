// C baselines of a cross-process ping-pong, for bench/sync.mjs.
//
// Both fork a child that shares one MAP_SHARED anonymous page with the parent. The word is the turn: the
// parent stores 1 and waits for 0, the child waits for 1 and stores 0; one round trip is one exchange each
// way. The child runs only system calls and plain loads and stores before _exit, which is what may safely
// run in the child of a multi-threaded process. Each returns the elapsed nanoseconds of n round trips, as
// measured by the parent, or -errno.
#include <cerrno>
#include <cstdint>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common.h"
#include "baselines.h"

namespace devmap {

// Waits while *w == v: `spin` polls, then FUTEX_WAIT (shared) when spin >= 0; spin < 0 polls forever.
static void WaitWhile(uint32_t* w, uint32_t v, long spin) {
  for (long i = 0; spin < 0 || i < spin; i++) {
    if (LoadAcquire(w) != v) return;
    CpuRelax();
  }
  while (LoadAcquire(w) == v) syscall(SYS_futex, w, FUTEX_WAIT, v, nullptr, nullptr, 0);
}

// Stores v and, unless spinning only, FUTEX_WAKEs (unconditionally, as a JS notify() does).
static void Post(uint32_t* w, uint32_t v, bool wake) {
  __atomic_store_n(w, v, __ATOMIC_RELEASE);
  if (wake) syscall(SYS_futex, w, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

static double PingPong(double n_rounds, long spin) {
  long n = static_cast<long>(n_rounds);
  bool wake = spin >= 0;
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return -errno;
  uint32_t* w = static_cast<uint32_t*>(page);
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    munmap(page, 4096);
    return -err;
  }
  if (pid == 0) {
    for (long i = 0; i < n; i++) {
      WaitWhile(w, 0, spin);
      Post(w, 0, wake);
    }
    _exit(0);
  }
  // One warm-up exchange so that both sides are running before the clock starts.
  Post(w, 1, wake);
  WaitWhile(w, 1, spin);
  double t0 = NowNs();
  for (long i = 1; i < n; i++) {
    Post(w, 1, wake);
    WaitWhile(w, 1, spin);
  }
  double elapsed = NowNs() - t0;
  int status;
  waitpid(pid, &status, 0);
  munmap(page, 4096);
  return n > 1 ? elapsed * static_cast<double>(n) / static_cast<double>(n - 1) : elapsed;
}

// c_futex_pingpong(n, spin = 0) -> ns for n round trips: FUTEX_WAIT/FUTEX_WAKE, after `spin` polls.
static Napi::Value FutexPingPong(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  long spin = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  if (spin < 0) spin = 0;
  return Napi::Number::New(info.Env(), PingPong(info[0].As<Napi::Number>().DoubleValue(), spin));
}

// c_spin_pingpong(n) -> ns for n round trips, both sides polling, no system call.
static Napi::Value SpinPingPong(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), PingPong(info[0].As<Napi::Number>().DoubleValue(), -1));
}

void InitSyncBaselines(Napi::Env env, Napi::Object exports) {
  exports["c_futex_pingpong"] = Napi::Function::New(env, FutexPingPong, "c_futex_pingpong");
  exports["c_spin_pingpong"] = Napi::Function::New(env, SpinPingPong, "c_spin_pingpong");
}

}  // namespace devmap
