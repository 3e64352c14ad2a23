// What every translation unit of the addons shares: argument access, the -errno convention, clocks and the
// spin-loop primitives. Conventions, for every function in native/:
//  - Arguments were validated by the TypeScript layer; the checks here only keep a misuse from crashing (they
//    throw TypeError), they are not the API.
//  - Addresses, lengths and offsets travel as JS numbers (doubles). Every user-space address on x86-64 and
//    arm64 is below 2^53, so a double holds it exactly and no BigInt conversion is paid on each call.
//  - A system call that fails returns -errno; the TypeScript layer turns that into a Node-style system error
//    (code, errno, syscall, path). Nothing here throws for an OS failure, so the fast path never builds an
//    exception.
#pragma once
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

namespace devmap {

// True when arguments [from, count) are numbers; otherwise throws TypeError and returns false.
inline bool CheckArgs(const Napi::CallbackInfo& info, size_t count, size_t from = 0) {
  for (size_t i = from; i < count; i++) {
    if (!info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "devmap native: argument " + std::to_string(i) + " must be a number")
          .ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

// Argument i as a string; false after throwing TypeError when it is not one.
inline bool StringArg(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (!info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "devmap native: argument " + std::to_string(i) + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// Numeric arguments, after CheckArgs.
inline double Num(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }
inline void* Ptr(const Napi::CallbackInfo& info, size_t i) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(Num(info, i)));
}
inline size_t Size(const Napi::CallbackInfo& info, size_t i) { return static_cast<size_t>(Num(info, i)); }
inline int Int(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

inline Napi::Number NumberOf(Napi::Env env, double v) { return Napi::Number::New(env, v); }

// A system call's return value as the addon returns it: the value, or -errno when it failed.
inline Napi::Value Result(Napi::Env env, long rc) { return NumberOf(env, rc < 0 ? -errno : static_cast<double>(rc)); }

// Argument i as an address (a number, like every address devmap passes; TypeScript derived it from a
// validated, attached view). False after throwing TypeError when it is not a number; true with *rc = -EINVAL
// when it is null or not `align`-aligned (the one answer for a misaligned word in every file).
inline bool Addr(const Napi::CallbackInfo& info, size_t i, size_t align, uint8_t** out, long* rc) {
  double v;
  *rc = 0;
  if (napi_get_value_double(info.Env(), info[i], &v) != napi_ok) {
    Napi::TypeError::New(info.Env(), "devmap native: argument " + std::to_string(i) + " must be an address")
        .ThrowAsJavaScriptException();
    return false;
  }
  uintptr_t a = static_cast<uintptr_t>(v);
  if (!(v > 0) || a % align != 0) {
    *rc = -EINVAL;
    return true;
  }
  *out = reinterpret_cast<uint8_t*>(a);
  return true;
}

// --- clocks ------------------------------------------------------------------------------------------------

inline int64_t MonoNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

inline double NowNs() { return static_cast<double>(MonoNs()); }

inline struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000LL);
  ts.tv_nsec = static_cast<long>(ns % 1000000000LL);
  return ts;
}

constexpr int64_t kNever = INT64_MAX;

// Absolute CLOCK_MONOTONIC deadline for a timeout in ms; negative or non-finite: never.
inline int64_t Deadline(double timeout_ms) {
  if (!(timeout_ms >= 0) || timeout_ms >= 9e12) return kNever;
  return MonoNs() + static_cast<int64_t>(timeout_ms * 1e6);
}

// --- blocking calls ---------------------------------------------------------------------------------------

// A blocking call sleeps in slices of this length, so that it notices its environment going away.
constexpr int64_t kSliceNs = 50 * 1000000LL;

// True once this thread's environment is being torn down (a Worker's terminate()): a blocking call must return
// then instead of sleeping on, or terminate() waits for it forever. Node-API refuses calls that could run
// JavaScript in a stopping environment, and reading a property is such a call.
inline bool EnvStopping(napi_env env) {
  napi_value global, value;
  if (napi_get_global(env, &global) != napi_ok) return true;
  return napi_get_named_property(env, global, "undefined", &value) != napi_ok;
}

// --- reading words that may be garbage --------------------------------------------------------------------

// A word of our own address space that may not be mapped (a pointer read out of bytes JavaScript or a peer
// could overwrite): false instead of a fault. process_vm_readv on our own pid gives EFAULT for a bad address.
inline bool ReadOwn(uintptr_t addr, uintptr_t* out) {
  struct iovec local = {out, sizeof(*out)};
  struct iovec remote = {reinterpret_cast<void*>(addr), sizeof(*out)};
  return addr % sizeof(uintptr_t) == 0 && process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == sizeof(*out);
}

// The kernel's ROBUST_LIST_LIMIT: it walks no more entries of a dying thread's robust-mutex list than this.
constexpr int kRobustListLimit = 2048;

// --- spin loops ------------------------------------------------------------------------------------------

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

inline uint32_t LoadAcquire(const uint32_t* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }

}  // namespace devmap
