// Futex words for lib/sync: a wait that spins in C before it sleeps, a wake, and the two helpers lib/sync/word.ts
// needs to turn a validated view into an address (word_address) and to name the calling thread (gettid).
//
// Words are passed as addresses, as mmap and munmap take them: lib/sync/word.ts derives each one from an
// attached devmap view, an index inside it and the view's base address, which spares every wait and notify a
// typed-array lookup (~0.2 µs). A null or misaligned address gives -EINVAL.
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <linux/futex.h>
#include <unordered_set>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

namespace devmap {

// --- synchronous wait with bounded spinning --------------------------------------------------------------

// futex_wait_spin(address, expected, timeoutMs, spinIterations, waitersAddress) -> 0 | -errno
//   -EAGAIN: the word did not hold `expected` on entry ('not-equal').
//   0: woken, or the word changed while spinning or just before sleeping ('ok').
//   -ETIMEDOUT: the deadline passed. EINTR is retried against the same absolute deadline.
// waitersAddress (0: none) is a second word, a count of sleepers: it is incremented (sequentially
// consistent) after the spin and before the sleep, and decremented after, so that a notifier which reads 0
// there after its store may skip FUTEX_WAKE (see notify's `waiters` option).
static Napi::Value FutexWaitSpin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p = nullptr;
  uint8_t* q = nullptr;
  long rc;
  if (!Addr(info, 0, 4, &p, &rc)) return env.Undefined();
  if (rc < 0) return NumberOf(env, static_cast<double>(rc));
  uint32_t expected;
  double timeout_ms, spin, waiters_addr;
  if (napi_get_value_uint32(env, info[1], &expected) != napi_ok || napi_get_value_double(env, info[2], &timeout_ms) != napi_ok ||
      napi_get_value_double(env, info[3], &spin) != napi_ok || napi_get_value_double(env, info[4], &waiters_addr) != napi_ok) {
    Napi::TypeError::New(env, "devmap native: futex_wait_spin needs numbers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (waiters_addr != 0) {
    if (!Addr(info, 4, 4, &q, &rc)) return env.Undefined();
    if (rc < 0) return NumberOf(env, static_cast<double>(rc));
  }
  uint32_t* word = reinterpret_cast<uint32_t*>(p);
  uint32_t* waiters = reinterpret_cast<uint32_t*>(q);
  if (LoadAcquire(word) != expected) return NumberOf(env, -EAGAIN);
  if (timeout_ms != 0) {
    for (double i = 0; i < spin; i++) {
      CpuRelax();
      if (LoadAcquire(word) != expected) return NumberOf(env, 0);
    }
  }
  int64_t deadline = Deadline(timeout_ms);
  if (waiters != nullptr) __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
  long result;
  for (;;) {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a retry waits only for the time that
    // remains. It sleeps in slices (kSliceNs): between two, a Worker being terminated returns -EINTR instead
    // of holding terminate() up forever. No FUTEX_PRIVATE_FLAG: the word is shared with other processes.
    int64_t slice = MonoNs() + kSliceNs;
    struct timespec ts = ToTimespec(deadline < slice ? deadline : slice);
    long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &ts, nullptr, FUTEX_BITSET_MATCH_ANY);
    if (r == 0) {
      result = 0;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == ETIMEDOUT && MonoNs() < deadline) {
      if (EnvStopping(env)) {
        result = -EINTR;
        break;
      }
      continue;
    } else {
      result = errno == EAGAIN ? 0 : -errno;  // EAGAIN: changed after the check above, i.e. stored and notified
    }
    break;
  }
  if (waiters != nullptr) __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
  return NumberOf(env, static_cast<double>(result));
}

// futex_wake_addr(address, count) -> woken | -errno   (shared: other processes' waiters count)
static Napi::Value FutexWakeAddr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p = nullptr;
  long rc;
  int32_t count;
  if (!Addr(info, 0, 4, &p, &rc)) return env.Undefined();
  if (rc < 0) return NumberOf(env, static_cast<double>(rc));
  if (napi_get_value_int32(env, info[1], &count) != napi_ok) {
    Napi::TypeError::New(env, "devmap native: futex_wake_addr needs a count").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  long r = syscall(SYS_futex, p, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return NumberOf(env, r < 0 ? -errno : static_cast<double>(r));
}

// word_address(typedArray, byteIndex) -> the virtual address of that byte (JS checks alignment with it once
// per buffer; the address is no secret: Mapping#address shows it)
static Napi::Value WordAddressJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(info.Env(), "devmap native: expected (TypedArray, byteIndex)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  uintptr_t base = reinterpret_cast<uintptr_t>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return NumberOf(info.Env(), static_cast<double>(base) + info[1].As<Napi::Number>().DoubleValue());
}

// futex_alias(address) -> the address of the same word through a new one-page mapping of the same pages
// (mremap with old_size 0 duplicates a shared mapping) | -errno. The futex key of a shared mapping is
// (object, offset), so a wake through the alias reaches the word's waiters even after the caller's mapping
// is gone; lib/sync/mutex.ts keeps one while a lockAsync sleeps, to pass on a wake it may have consumed.
// futex_alias_release(aliasAddress) unmaps it. The environment keeps the list of its aliases, and its
// cleanup hook unmaps those still there, so a Worker terminated while a lockAsync sleeps leaves none behind.
struct Aliases {
  std::unordered_set<uintptr_t> pages;  // JS-thread only
};

static uintptr_t PageSize() {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return page;
}

static Napi::Value FutexAlias(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Aliases* aliases = static_cast<Aliases*>(info.Data());
  uint8_t* p = nullptr;
  long rc;
  if (!Addr(info, 0, 4, &p, &rc)) return env.Undefined();
  if (rc < 0) return NumberOf(env, static_cast<double>(rc));
  uintptr_t base = reinterpret_cast<uintptr_t>(p) & ~(PageSize() - 1);
  void* alias = mremap(reinterpret_cast<void*>(base), 0, PageSize(), MREMAP_MAYMOVE);
  if (alias == MAP_FAILED) return NumberOf(env, -errno);
  aliases->pages.insert(reinterpret_cast<uintptr_t>(alias));
  return NumberOf(env, static_cast<double>(reinterpret_cast<uintptr_t>(alias) + (reinterpret_cast<uintptr_t>(p) - base)));
}

// futex_alias_release(aliasAddress) -> 0 | -errno | -ENOENT (not an alias futex_alias made)
static Napi::Value FutexAliasRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Aliases* aliases = static_cast<Aliases*>(info.Data());
  if (!CheckArgs(info, 1)) return env.Undefined();
  uintptr_t page = static_cast<uintptr_t>(Num(info, 0)) & ~(PageSize() - 1);
  if (aliases->pages.erase(page) == 0) return NumberOf(env, -ENOENT);
  return Result(env, munmap(reinterpret_cast<void*>(page), PageSize()));
}

static void ReleaseAliases(void* arg) {
  Aliases* aliases = static_cast<Aliases*>(arg);
  for (uintptr_t page : aliases->pages) munmap(reinterpret_cast<void*>(page), PageSize());
  delete aliases;
}

// gettid() -> the calling thread's kernel id (the owner id a held mutex records)
static Napi::Value GetTid(const Napi::CallbackInfo& info) {
  return NumberOf(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

void InitFutex(Napi::Env env, Napi::Object exports) {
  exports["futex_wait_spin"] = Napi::Function::New(env, FutexWaitSpin, "futex_wait_spin");
  exports["futex_wake_addr"] = Napi::Function::New(env, FutexWakeAddr, "futex_wake_addr");
  Aliases* aliases = new Aliases();
  napi_add_env_cleanup_hook(env, ReleaseAliases, aliases);
  exports["futex_alias"] = Napi::Function::New(env, FutexAlias, "futex_alias", aliases);
  exports["futex_alias_release"] = Napi::Function::New(env, FutexAliasRelease, "futex_alias_release", aliases);
  exports["word_address"] = Napi::Function::New(env, WordAddressJs, "word_address");
  exports["gettid"] = Napi::Function::New(env, GetTid, "gettid");
}

}  // namespace devmap
