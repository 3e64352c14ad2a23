// Shared declarations of the addon's translation units.
#pragma once
#include <napi.h>
#include <cstdint>
#include <time.h>

namespace devmap {

// True when the first `count` arguments are numbers; otherwise throws TypeError.
bool CheckArgs(const Napi::CallbackInfo& info, size_t count);
// Resolves (typedArray, byteIndex) to an aligned 32-bit word, or throws.
bool WordAddress(const Napi::CallbackInfo& info, uint32_t** word);
long FutexWait(uint32_t* word, uint32_t expected, double timeout_ms);
long FutexWake(uint32_t* word, int count);

inline double NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// C baselines for bench/: each runs a loop in C and returns elapsed nanoseconds,
// so the JS path and the C path are measured in one process and one run.
void InitMemoryBaselines(Napi::Env env, Napi::Object exports);
void InitRmapBaselines(Napi::Env env, Napi::Object exports);
void InitSyncBaselines(Napi::Env env, Napi::Object exports);
// Asynchronous futex waits (native/sync.cc).
void InitSync(Napi::Env env, Napi::Object exports);
// Unix sockets with SCM_RIGHTS and SO_PEERCRED for the kernel host (native/socket.cc).
void InitSocket(Napi::Env env, Napi::Object exports);
// userfaultfd, fd readiness, the fault agent (native/uffd.cc).
void InitUffd(Napi::Env env, Napi::Object exports);

}  // namespace devmap
