// Robust process-shared mutexes for lib/sync/mutex.ts: thin wrappers over glibc's pthread mutex calls on a
// pthread_mutex_t that lives in a shared mapping, plus the two steps of glibc's slow path that waitAsync needs
// to sleep without blocking the JS thread (mutex_wait_value, mutex_mark_waiters). A misaligned address gives
// -EINVAL.
#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

namespace devmap {

// --- robust process-shared mutexes (pthread) -------------------------------------------------------------

#ifdef __GLIBC__
static const size_t kLockWordOffset = offsetof(pthread_mutex_t, __data.__lock);
#else
static const size_t kLockWordOffset = 4;  // musl: _m_lock is the second int
#endif

// The mutex at argument 0; false after throwing, or true with *rc = -EINVAL when misaligned.
static bool MutexAt(const Napi::CallbackInfo& info, pthread_mutex_t** m, long* rc) {
  uint8_t* p = nullptr;
  if (!Addr(info, 0, alignof(pthread_mutex_t), &p, rc)) return false;
  *m = reinterpret_cast<pthread_mutex_t*>(p);
  return true;
}

#define MUTEX_CALL(name, expr)                                  \
  static Napi::Value name(const Napi::CallbackInfo& info) {     \
    pthread_mutex_t* m;                                         \
    long rc;                                                    \
    if (!MutexAt(info, &m, &rc)) return info.Env().Undefined(); \
    if (rc < 0) return NumberOf(info.Env(), static_cast<double>(rc)); \
    return NumberOf(info.Env(), -static_cast<double>(expr));         \
  }

// mutex_init: a robust, process-shared, error-checking mutex (glibc puts a held one on the owning thread's
// kernel robust list, so the kernel marks it FUTEX_OWNER_DIED when that thread or its process dies).
static int InitMutex(pthread_mutex_t* m) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  int rc = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return rc;
}

MUTEX_CALL(MutexInit, InitMutex(m))
MUTEX_CALL(MutexLock, pthread_mutex_lock(m))            // 0 | -EOWNERDEAD | -ENOTRECOVERABLE | -EDEADLK

static uint32_t* LockWord(pthread_mutex_t* m);

// pthread_mutex_trylock, with one repair. On a robust mutex that is not recoverable, glibc's trylock
// (2.36, and master as of this writing) takes the futex word with a CAS and then means to release it before
// returning ENOTRECOVERABLE, but tests the CAS's result (0) against its own id, so the word stays ours and
// every later attempt of this thread says EDEADLK. The lock path releases it properly; here we do what it
// does: if the word holds our id, clear it and wake one waiter, which then sees ENOTRECOVERABLE in turn.
static int TrylockMutex(pthread_mutex_t* m) {
  int rc = pthread_mutex_trylock(m);
  if (rc == ENOTRECOVERABLE) {
    uint32_t* w = LockWord(m);
    uint32_t self = static_cast<uint32_t>(syscall(SYS_gettid));
    if ((__atomic_load_n(w, __ATOMIC_RELAXED) & FUTEX_TID_MASK) == self) {
      __atomic_store_n(w, 0, __ATOMIC_RELEASE);
      syscall(SYS_futex, w, FUTEX_WAKE, 1, nullptr, nullptr, 0);
    }
  }
  return rc;
}
MUTEX_CALL(MutexTrylock, TrylockMutex(m))               // 0 | -EBUSY | -EOWNERDEAD | -ENOTRECOVERABLE | -EDEADLK
MUTEX_CALL(MutexUnlock, pthread_mutex_unlock(m))        // 0 | -EPERM
MUTEX_CALL(MutexConsistent, pthread_mutex_consistent(m))  // 0 | -EINVAL

static uint32_t* LockWord(pthread_mutex_t* m) {
  return reinterpret_cast<uint32_t*>(reinterpret_cast<uint8_t*>(m) + kLockWordOffset);
}

// mutex_wait_value(address) -> the lock word value to wait on (with FUTEX_WAITERS set, so the
// unlocking owner, or the kernel when the owner dies, wakes a waiter) | -1: free or owner dead, retry now.
// This is the slow path of glibc's robust lock, minus the sleep, which waitAsync does.
static Napi::Value MutexWaitValue(const Napi::CallbackInfo& info) {
  pthread_mutex_t* m;
  long rc;
  if (!MutexAt(info, &m, &rc)) return info.Env().Undefined();
  if (rc < 0) return NumberOf(info.Env(), static_cast<double>(rc));
  uint32_t* w = LockWord(m);
  uint32_t v = LoadAcquire(w);
  for (;;) {
    if ((v & FUTEX_TID_MASK) == 0) return NumberOf(info.Env(), -1);
    if (v & FUTEX_WAITERS) return NumberOf(info.Env(), v);
    if (__atomic_compare_exchange_n(w, &v, v | FUTEX_WAITERS, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
      return NumberOf(info.Env(), v | FUTEX_WAITERS);
    }
  }
}

// mutex_mark_waiters(address): the owner, having acquired with trylock after sleeping, sets
// FUTEX_WAITERS as glibc's lock does after a sleep, so its unlock wakes whoever still sleeps.
static Napi::Value MutexMarkWaiters(const Napi::CallbackInfo& info) {
  pthread_mutex_t* m;
  long rc;
  if (!MutexAt(info, &m, &rc)) return info.Env().Undefined();
  if (rc < 0) return NumberOf(info.Env(), static_cast<double>(rc));
  __atomic_fetch_or(LockWord(m), FUTEX_WAITERS, __ATOMIC_RELAXED);
  return NumberOf(info.Env(), 0);
}

// mutex_layout() -> [sizeof(pthread_mutex_t), alignof, byte offset of the futex word]
static Napi::Value MutexLayout(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), 3);
  out.Set(0u, NumberOf(info.Env(), sizeof(pthread_mutex_t)));
  out.Set(1u, NumberOf(info.Env(), alignof(pthread_mutex_t)));
  out.Set(2u, NumberOf(info.Env(), kLockWordOffset));
  return out;
}

void InitRobustMutex(Napi::Env env, Napi::Object exports) {
  exports["mutex_layout"] = Napi::Function::New(env, MutexLayout, "mutex_layout");
  exports["mutex_init"] = Napi::Function::New(env, MutexInit, "mutex_init");
  exports["mutex_lock"] = Napi::Function::New(env, MutexLock, "mutex_lock");
  exports["mutex_trylock"] = Napi::Function::New(env, MutexTrylock, "mutex_trylock");
  exports["mutex_unlock"] = Napi::Function::New(env, MutexUnlock, "mutex_unlock");
  exports["mutex_consistent"] = Napi::Function::New(env, MutexConsistent, "mutex_consistent");
  exports["mutex_wait_value"] = Napi::Function::New(env, MutexWaitValue, "mutex_wait_value");
  exports["mutex_mark_waiters"] = Napi::Function::New(env, MutexMarkWaiters, "mutex_mark_waiters");
}

}  // namespace devmap
