// Robust process-shared mutexes for lib/sync/mutex.ts: thin wrappers over glibc's pthread mutex calls on a
// pthread_mutex_t that lives in a shared mapping, plus the two steps of glibc's slow path that waitAsync needs
// to sleep without blocking the JS thread (mutex_wait_value, mutex_mark_waiters). A misaligned address gives
// -EINVAL. The blocking lock sleeps in slices of the C library's timed lock, so that a Worker's teardown can
// interrupt it (LockMutex below says why that keeps every guarantee).
//
// Bytes JavaScript can overwrite. The mutex lives in memory any typed array over the mapping can write (a
// stray fill()), and glibc trusts it: its unlock follows the mutex's robust-list pointers and writes through
// them (DEQUEUE_MUTEX), so garbage there is a SIGSEGV, or a write to a random address, inside glibc. So lock
// and unlock look first (CheckedUnlock), and -EUCLEAN (ERR_DEVMAP_MUTEX_CORRUPT in JS) means "these bytes are
// not a mutex any more":
//  - lock/trylock: the type word (__kind) differs from what mutex_init writes here.
//  - unlock: the mutex is found on this thread's robust list (glibc registers the list's head with the
//    kernel; get_robust_list gives it, once per thread) and its type, lock word (our thread id), owner and
//    list pointers all agree with what glibc left there. If they do, glibc unlocks. If they do not, glibc
//    never sees it: we unlink the mutex from the list ourselves, from its neighbours' pointers (found by
//    walking from the head, forwards to its predecessor and backwards to its successor), so that neither
//    glibc's next lock or unlock of another robust mutex nor the kernel's walk at thread exit ever follows a
//    pointer out of the overwritten bytes. The words are then rewritten as a mutex that is not recoverable,
//    unlocked, and every waiter is woken: a peer inside glibc's lock() returns ENOTRECOVERABLE, one that
//    locks later too (ERR_DEVMAP_MUTEX_NOT_RECOVERABLE), until Mutex.init() makes it anew.
//  - A mutex this thread does not hold (not on its list) is left to glibc's own check (EPERM), unless its
//    lock word claims our thread id, which glibc would act on: that too is -EUCLEAN.
//  - The walk reads other mutexes' pointers, which may be garbage as well, through process_vm_readv on our
//    own pid (a bad pointer is EFAULT, not a fault); it stops after the kernel's own limit of 2048 entries.
//    A list we cannot walk back to its head is not touched: -EBADMSG, and the mutex stays pinned.
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

// --- checking the bytes before glibc sees them (see the essay above) --------------------------------------

static uint32_t* LockWord(pthread_mutex_t* m);

#if defined(__GLIBC__) && __PTHREAD_MUTEX_HAVE_PREV
#define DEVMAP_CHECKED_MUTEX 1

// The __kind mutex_init writes (robust | process-shared | error-checking), read from a scratch mutex.
static int ExpectedKind() {
  static const int kind = [] {
    pthread_mutex_t scratch;
    InitMutex(&scratch);
    return scratch.__data.__kind;
  }();
  return kind;
}

static bool KindOk(pthread_mutex_t* m) { return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == ExpectedKind(); }

static const int kMutexNotRecoverable = 0x7ffffffe;  // glibc's PTHREAD_MUTEX_NOTRECOVERABLE
static const int kMutexInconsistent = 0x7fffffff;    // glibc's PTHREAD_MUTEX_INCONSISTENT

struct RobustHead {  // the kernel's struct robust_list_head, as glibc registers it; robust_prev precedes it
  uintptr_t list;
  long futex_offset;
  uintptr_t list_op_pending;
};

static thread_local RobustHead* t_head = nullptr;
static thread_local uint32_t t_tid = 0;

// Rewrites a mutex that is on no thread's list of ours as unlocked and not recoverable, and wakes every waiter.
static int Poison(pthread_mutex_t* m) {
  m->__data.__list.__prev = nullptr;
  m->__data.__list.__next = nullptr;
  m->__data.__count = 0;
  m->__data.__nusers = 0;
  m->__data.__owner = kMutexNotRecoverable;
  m->__data.__kind = ExpectedKind();
  __atomic_store_n(LockWord(m), 0, __ATOMIC_RELEASE);
  syscall(SYS_futex, LockWord(m), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
  return EUCLEAN;
}

static int CheckedUnlock(pthread_mutex_t* m) {
  if (t_head == nullptr) {
    size_t len;
    if (syscall(SYS_get_robust_list, 0, &t_head, &len) != 0 || t_head == nullptr) return pthread_mutex_unlock(m);
    t_tid = static_cast<uint32_t>(syscall(SYS_gettid));
  }
  const uintptr_t head = reinterpret_cast<uintptr_t>(t_head);
  uintptr_t* head_prev = reinterpret_cast<uintptr_t*>(head) - 1;  // glibc's robust_prev
  const uintptr_t self = reinterpret_cast<uintptr_t>(&m->__data.__list.__next);
  uint32_t lockv = __atomic_load_n(LockWord(m), __ATOMIC_RELAXED);
  bool ours = (lockv & FUTEX_TID_MASK) == t_tid;

  // Forwards from the head to our node: its predecessor.
  uintptr_t pred = head;
  uintptr_t cur = t_head->list & ~uintptr_t(1);
  int steps = 0;
  while (cur != self && cur != head) {
    uintptr_t next;
    if (++steps > kRobustListLimit || !ReadOwn(cur, &next)) return EBADMSG;
    pred = cur;
    cur = next & ~uintptr_t(1);
  }
  // Not on this thread's list: not held here. glibc would trust a lock word that names us and unlink the
  // mutex through its (garbage) pointers, so such words are corrupt; otherwise glibc's answer is EPERM.
  if (cur == head) return ours ? Poison(m) : EPERM;

  uintptr_t next = reinterpret_cast<uintptr_t>(m->__data.__list.__next) & ~uintptr_t(1);
  uintptr_t prev = reinterpret_cast<uintptr_t>(m->__data.__list.__prev) & ~uintptr_t(1);
  uintptr_t next_prev = 0;  // the successor's back pointer, which must name us
  bool next_ok = next == head ? (*head_prev & ~uintptr_t(1)) == self
                              : ReadOwn(next - sizeof(uintptr_t), &next_prev) && (next_prev & ~uintptr_t(1)) == self;
  int owner = m->__data.__owner;
  if (KindOk(m) && ours && prev == pred && next_ok && (owner == static_cast<int>(t_tid) || owner == kMutexInconsistent)) {
    return pthread_mutex_unlock(m);
  }

  // Corrupt. Our successor, if our own pointer cannot be trusted: backwards from the head.
  uintptr_t succ = next;
  if (!next_ok) {
    succ = head;
    cur = *head_prev & ~uintptr_t(1);
    steps = 0;
    while (cur != self) {
      uintptr_t back;
      if (cur == head || ++steps > kRobustListLimit || !ReadOwn(cur - sizeof(uintptr_t), &back)) return EBADMSG;
      succ = cur;
      cur = back & ~uintptr_t(1);
    }
  }
  // Unlink: predecessor -> successor, successor <- predecessor (the kernel reads only the forward links).
  if (pred == head) t_head->list = succ;
  else *reinterpret_cast<uintptr_t*>(pred) = succ;
  if (succ == head) *head_prev = pred;
  else *(reinterpret_cast<uintptr_t*>(succ) - 1) = pred;
  // What is left: an unlocked mutex that is not recoverable, and every waiter woken to find that out.
  return Poison(m);
}
#else
static bool KindOk(pthread_mutex_t*) { return true; }
static int CheckedUnlock(pthread_mutex_t* m) { return pthread_mutex_unlock(m); }  // another C library: trusted
#endif
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
MUTEX_CALL(MutexTrylock, KindOk(m) ? TrylockMutex(m) : EUCLEAN)               // 0 | -EBUSY | -EOWNERDEAD | -ENOTRECOVERABLE | -EDEADLK

// One slice of a blocking lock: the C library's timed lock, with a deadline kSliceNs away.
static int LockSlice(pthread_mutex_t* m) {
#ifdef __GLIBC__
  struct timespec ts = ToTimespec(MonoNs() + kSliceNs);
  return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#else
  struct timespec now;  // another C library: only the CLOCK_REALTIME timed lock (a clock step stretches a slice)
  clock_gettime(CLOCK_REALTIME, &now);
  struct timespec ts = ToTimespec(static_cast<int64_t>(now.tv_sec) * 1000000000LL + now.tv_nsec + kSliceNs);
  return pthread_mutex_timedlock(m, &ts);
#endif
}

// A blocking lock that the environment's teardown can interrupt, as futex_wait_spin is: the C library's
// lock sleeps in the kernel until woken, and a Worker's terminate() would wait for it for ever. So it sleeps
// in slices of the C library's own timed lock and returns EINTR (which no lock call returns otherwise) once
// EnvStopping says this thread's environment is going away. Why the slices keep every guarantee:
//  - The uncontended path is one trylock, the CAS pthread_mutex_lock would make: no clock read, no loop.
//  - A timed lock is the same robust algorithm as pthread_mutex_lock (owner-died takeover, EDEADLK,
//    ENOTRECOVERABLE, the robust list); it only sleeps in FUTEX_WAIT_BITSET with an absolute deadline instead
//    of FUTEX_WAIT, and returns ETIMEDOUT when the deadline passes without the lock.
//  - No wake is lost at a slice's end. The kernel's futex wait returns "woken" whenever a waker took it off
//    the queue, even when its timeout fired too; the C library then re-reads the word and takes the lock if
//    it is free, or sleeps again with FUTEX_WAITERS set if another thread took it first (whose unlock then
//    wakes a sleeper), and only then can the slice end without the lock. A wake that comes while this thread is between two slices finds it off the queue and goes to
//    another sleeper (or to nobody, if none sleeps); the next slice starts by reading the word, so an unlock
//    (0) or a dead owner (FUTEX_OWNER_DIED) is seen then, and a sleep only begins on the value the word still
//    holds, with FUTEX_WAITERS set, so the owner's unlock, or the kernel when the owner dies, wakes a sleeper.
//  - The bytes are checked (KindOk) before every slice, not only once: they may be overwritten while we sleep.
//  - After ETIMEDOUT the C library leaves this thread's robust-list "operation pending" entry naming the
//    mutex; the kernel reads it only at thread exit and acts on it only if the word names this thread (never
//    here: we do not hold it) or is 0 (then it wakes one sleeper, which a free mutex allows). Left as it is.
//  - A slice that acquires while the environment is stopping: JavaScript will not run again to record the
//    lock (and pin its pages, lib/sync/held.ts), so a clean lock is given back at once (the unlock wakes a
//    sleeper, as any unlock does) and the call returns EINTR. One taken from a dead owner stays held: giving
//    it back would make it not recoverable, or hide the death; this thread's end reports it to the next owner
//    (its teardown keeps mapped what the thread's robust list names, native/regions.cc).
//  - A sleeper between two slices is at the back of the futex queue when it sleeps again: like any lock of
//    the C library's, this one promises no order among waiters.
static int LockMutex(napi_env env, pthread_mutex_t* m) {
  if (!KindOk(m)) return EUCLEAN;
  int rc = TrylockMutex(m);
  if (rc != EBUSY) return rc;
  do {
    if (rc == ETIMEDOUT && EnvStopping(env)) return EINTR;
    if (!KindOk(m)) return EUCLEAN;
    rc = LockSlice(m);
  } while (rc == ETIMEDOUT);
  if (rc == 0 && EnvStopping(env)) {
    int unlocked = CheckedUnlock(m);
    return unlocked == 0 ? EINTR : unlocked;
  }
  return rc;
}
MUTEX_CALL(MutexLock, LockMutex(info.Env(), m))  // 0 | -EOWNERDEAD | -ENOTRECOVERABLE | -EDEADLK | -EUCLEAN | -EINTR
MUTEX_CALL(MutexUnlock, CheckedUnlock(m))              // 0 | -EPERM | -EUCLEAN | -EBADMSG
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
