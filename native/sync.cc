// Cross-process synchronisation: a spinning futex wait, the asynchronous waiter threads behind waitAsync,
// and thin wrappers over glibc's robust process-shared pthread mutexes (lib/sync/mutex.ts).
//
// Conventions are those of devmap.cc: the TypeScript layer validates, failures come back as -errno, and the
// checks here only keep a misuse from crashing. Words are passed as addresses, as mmap and munmap take
// them: lib/sync/word.ts derives each one from an attached devmap view, an index inside it and the view's
// base address (word_address), which spares every wait and notify a typed-array lookup (~0.2 µs). A null
// or misaligned address gives -EINVAL.
//
// The asynchronous waits (waitv_*) are the one piece of machinery in the addon. In short:
//  - Each pending waitAsync is an Entry {id, expected, deadline}. Entries on the same word of the same
//    Mapping share a Slot, and a Slot is one element of a futex_waitv(2) vector (syscall 449, up to 128
//    futexes per call).
//  - A Group is one waiter thread that sleeps in futex_waitv on element 0, its private control word, plus up
//    to 127 Slots. The JS thread adds or cancels entries under State::mu and then bumps the control word and
//    FUTEX_WAKEs it, so the thread wakes, takes the new set under the lock and sleeps again. A thread whose
//    Group has no Slot left exits, and the JS thread joins it, unless it is the last one: that one stays,
//    idle, for the next wait. So an environment has at most one idle waiter thread, and it is joined at
//    teardown.
//  - A Slot waits on its own one-page alias of the word's page (mremap(old_size = 0) makes a second mapping
//    of the same shared pages). The futex key of a shared mapping is (object, offset), so the alias and the
//    user's view wake each other, and the waiter thread never touches the user's address: unmapping the
//    user's Mapping while a wait is pending cannot fault the thread or make it read unrelated memory.
//  - After every return from futex_waitv the thread re-reads every Slot under the lock: a woken Slot, or one
//    whose word no longer holds the expected value, completes its entries with 0 ('ok'); an entry whose
//    deadline has passed completes with 1 ('timed-out'). The re-read matters because futex_waitv reports
//    only one woken index per return, and a change made before the thread went to sleep wakes nobody.
//  - Completions go to a queue; one napi thread-safe-function call drains it on the JS thread, which also
//    joins exited threads. Cancellation (AbortSignal) removes the entry under the lock, or, if the thread
//    completed it first, takes the completion out of the queue: either way exactly one outcome is reported.
//  - The thread-safe function is referenced while an entry is pending (a pending wait keeps the event loop
//    alive, like a timer) and unreferenced otherwise. At environment teardown a cleanup hook stops and joins
//    every thread before the thread-safe function is released.
#include <napi.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <linux/futex.h>
#include <map>
#include <mutex>
#include <string>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

#include "devmap.h"

namespace devmap {

// --- helpers ----------------------------------------------------------------------------------------------

static inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

static inline uint32_t Load(const uint32_t* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }

static inline int64_t MonoNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

static inline struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000LL);
  ts.tv_nsec = static_cast<long>(ns % 1000000000LL);
  return ts;
}

static const int64_t kNever = INT64_MAX;

// Absolute CLOCK_MONOTONIC deadline for a timeout in ms; negative or non-finite: never.
static int64_t Deadline(double timeout_ms) {
  if (!(timeout_ms >= 0) || timeout_ms >= 9e12) return kNever;
  return MonoNs() + static_cast<int64_t>(timeout_ms * 1e6);
}

// Argument i as an address (a number, like every address devmap passes; TypeScript derived it from a
// validated, attached view). False after throwing TypeError when it is not a number; *rc = -EINVAL when it
// is null or not `align`-aligned.
static bool Addr(const Napi::CallbackInfo& info, size_t i, size_t align, uint8_t** out, long* rc) {
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

static inline Napi::Number Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

// True when arguments [from, to) are numbers; otherwise throws TypeError.
static bool Numbers(const Napi::CallbackInfo& info, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    if (!info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "devmap native: argument " + std::to_string(i) + " must be a number")
          .ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

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
  if (rc < 0) return Num(env, static_cast<double>(rc));
  uint32_t expected;
  double timeout_ms, spin, waiters_addr;
  if (napi_get_value_uint32(env, info[1], &expected) != napi_ok || napi_get_value_double(env, info[2], &timeout_ms) != napi_ok ||
      napi_get_value_double(env, info[3], &spin) != napi_ok || napi_get_value_double(env, info[4], &waiters_addr) != napi_ok) {
    Napi::TypeError::New(env, "devmap native: futex_wait_spin needs numbers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (waiters_addr != 0) {
    if (!Addr(info, 4, 4, &q, &rc)) return env.Undefined();
    if (rc < 0) return Num(env, static_cast<double>(rc));
  }
  uint32_t* word = reinterpret_cast<uint32_t*>(p);
  uint32_t* waiters = reinterpret_cast<uint32_t*>(q);
  if (Load(word) != expected) return Num(env, -EAGAIN);
  if (timeout_ms != 0) {
    for (double i = 0; i < spin; i++) {
      CpuRelax();
      if (Load(word) != expected) return Num(env, 0);
    }
  }
  int64_t deadline = Deadline(timeout_ms);
  struct timespec ts = ToTimespec(deadline);
  if (waiters != nullptr) __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
  long result;
  for (;;) {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a retry after EINTR waits only for
    // the time that remains. No FUTEX_PRIVATE_FLAG: the word is shared with other processes.
    long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, deadline == kNever ? nullptr : &ts, nullptr,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0) {
      result = 0;
    } else if (errno == EINTR) {
      continue;
    } else {
      result = errno == EAGAIN ? 0 : -errno;  // EAGAIN: changed after the check above, i.e. stored and notified
    }
    break;
  }
  if (waiters != nullptr) __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
  return Num(env, static_cast<double>(result));
}

// futex_wake_addr(address, count) -> woken | -errno   (shared: other processes' waiters count)
static Napi::Value FutexWakeAddr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p = nullptr;
  long rc;
  int32_t count;
  if (!Addr(info, 0, 4, &p, &rc)) return env.Undefined();
  if (rc < 0) return Num(env, static_cast<double>(rc));
  if (napi_get_value_int32(env, info[1], &count) != napi_ok) {
    Napi::TypeError::New(env, "devmap native: futex_wake_addr needs a count").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  long r = syscall(SYS_futex, p, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return Num(env, r < 0 ? -errno : static_cast<double>(r));
}

// --- asynchronous waits: the waiter threads ---------------------------------------------------------------

static const size_t kSlotsPerGroup = FUTEX_WAITV_MAX - 1;  // element 0 is the control word
static const int kCancelled = 2;

struct Entry {
  double id;
  uint32_t expected;
  int64_t deadline;
};

struct Group;

struct Slot {
  std::pair<double, uintptr_t> key;  // (mapping tag, user address of the word)
  uint32_t* word;                     // the same word, through our alias
  void* alias;
  size_t alias_len;
  Group* group;
  std::vector<Entry> entries;
};

struct Group {
  pthread_t thread;
  uint32_t control = 0;  // bumped and woken by the JS thread whenever the Group's set changes
  std::vector<Slot*> slots;
};

struct State {
  std::mutex mu;
  std::vector<Group*> groups;    // running
  std::vector<Group*> finished;  // threads that have exited, to be joined on the JS thread
  std::map<std::pair<double, uintptr_t>, Slot*> slots;
  std::unordered_map<double, Slot*> pending;      // entry id -> its Slot
  std::vector<std::pair<double, int>> done;        // (id, 0 | 1 | -errno) not yet delivered
  bool call_queued = false;
  bool stopping = false;
  // JS-thread-only fields.
  napi_env env = nullptr;
  napi_threadsafe_function tsfn = nullptr;
  Napi::FunctionReference on_complete;
  double next_id = 1;
  int64_t js_pending = 0;
  bool supported = false;
};

static void Kick(Group* g) {
  __atomic_fetch_add(&g->control, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &g->control, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// With mu held: asks the JS thread to drain `done` and join `finished`.
static void QueueDelivery(State* s) {
  if (s->call_queued || (s->done.empty() && s->finished.empty())) return;
  s->call_queued = true;
  napi_call_threadsafe_function(s->tsfn, nullptr, napi_tsfn_nonblocking);
}

static void FreeSlot(State* s, Slot* sl) {
  s->slots.erase(sl->key);
  munmap(sl->alias, sl->alias_len);
  delete sl;
}

static void Complete(State* s, Slot* sl, int result) {
  for (const Entry& e : sl->entries) {
    s->pending.erase(e.id);
    s->done.emplace_back(e.id, result);
  }
  sl->entries.clear();
}

struct ThreadArg {
  State* s;
  Group* g;
};

static void* WaiterThread(void* arg) {
  State* s = static_cast<ThreadArg*>(arg)->s;
  Group* g = static_cast<ThreadArg*>(arg)->g;
  delete static_cast<ThreadArg*>(arg);
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals belong to the JS threads

  std::vector<struct futex_waitv> vec;
  std::vector<Slot*> snapshot;
  std::unique_lock<std::mutex> lk(s->mu);
  for (;;) {
    if (s->stopping) return nullptr;  // teardown joins us and frees the slots
    // Settle what can be settled: changed words complete 'ok', passed deadlines 'timed-out'.
    int64_t now = MonoNs();
    int64_t next_deadline = kNever;
    for (size_t i = 0; i < g->slots.size();) {
      Slot* sl = g->slots[i];
      uint32_t v = Load(sl->word);
      std::vector<Entry> keep;
      for (const Entry& e : sl->entries) {
        int result = e.expected != v ? 0 : e.deadline <= now ? 1 : -1;
        if (result < 0) {
          keep.push_back(e);
          if (e.deadline < next_deadline) next_deadline = e.deadline;
        } else {
          s->pending.erase(e.id);
          s->done.emplace_back(e.id, result);
        }
      }
      sl->entries.swap(keep);
      if (sl->entries.empty()) {
        FreeSlot(s, sl);
        g->slots[i] = g->slots.back();
        g->slots.pop_back();
      } else {
        i++;
      }
    }
    if (g->slots.empty() && s->groups.size() > 1) {
      // Nothing left to wait for and another thread is running: leave the running list so no new Slot
      // lands here, and exit. The last thread stays, idle on its control word, so that a program waiting
      // on one word after another does not start a thread per wait.
      for (size_t i = 0; i < s->groups.size(); i++) {
        if (s->groups[i] == g) {
          s->groups.erase(s->groups.begin() + static_cast<long>(i));
          break;
        }
      }
      s->finished.push_back(g);
      QueueDelivery(s);
      return nullptr;
    }
    QueueDelivery(s);
    vec.assign(g->slots.size() + 1, {});
    snapshot.assign(g->slots.begin(), g->slots.end());
    vec[0].uaddr = reinterpret_cast<uintptr_t>(&g->control);
    vec[0].val = __atomic_load_n(&g->control, __ATOMIC_ACQUIRE);
    vec[0].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
    for (size_t i = 0; i < snapshot.size(); i++) {
      vec[i + 1].uaddr = reinterpret_cast<uintptr_t>(snapshot[i]->word);
      vec[i + 1].val = snapshot[i]->entries[0].expected;  // all remaining entries expect the current value
      vec[i + 1].flags = FUTEX_32;                         // shared: other processes wake it
    }
    struct timespec ts = ToTimespec(next_deadline);
    lk.unlock();
    long r = syscall(SYS_futex_waitv, vec.data(), static_cast<unsigned>(vec.size()), 0,
                     next_deadline == kNever ? nullptr : &ts, CLOCK_MONOTONIC);
    int err = r < 0 ? errno : 0;
    lk.lock();
    // Slots are freed only by this thread (or by teardown after joining it), so snapshot[] is still valid;
    // but the Slot may have lost its entries to cancellation meanwhile, which Complete() handles.
    if (r >= 1) {
      Complete(s, snapshot[static_cast<size_t>(r) - 1], 0);
    } else if (r < 0 && err != EAGAIN && err != ETIMEDOUT && err != EINTR) {
      for (Slot* sl : g->slots) Complete(s, sl, -err);  // e.g. ENOMEM: fail the waits rather than spin
    }
  }
}

// Runs on the JS thread: delivers completions as one array [id, result, id, result, ...].
static void CallJs(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;  // the thread-safe function is being torn down
  State* s = static_cast<State*>(context);
  std::vector<std::pair<double, int>> done;
  std::vector<Group*> finished;
  {
    std::lock_guard<std::mutex> lk(s->mu);
    done.swap(s->done);
    finished.swap(s->finished);
    s->call_queued = false;
  }
  for (Group* g : finished) {
    pthread_join(g->thread, nullptr);
    delete g;
  }
  if (done.empty()) return;
  s->js_pending -= static_cast<int64_t>(done.size());
  if (s->js_pending == 0) napi_unref_threadsafe_function(env, s->tsfn);
  Napi::Env e(env);
  Napi::Array out = Napi::Array::New(e, done.size() * 2);
  for (size_t i = 0; i < done.size(); i++) {
    out.Set(static_cast<uint32_t>(2 * i), Num(e, done[i].first));
    out.Set(static_cast<uint32_t>(2 * i + 1), Num(e, done[i].second));
  }
  if (!s->on_complete.IsEmpty()) s->on_complete.Call({out});
}

// Environment teardown: stop and join every waiter thread, free the aliases, release the thread-safe
// function (whose finalizer frees the State).
static void Teardown(void* arg) {
  State* s = static_cast<State*>(arg);
  std::vector<Group*> groups;
  {
    std::lock_guard<std::mutex> lk(s->mu);
    s->stopping = true;
    groups = s->groups;
    for (Group* g : groups) Kick(g);
  }
  for (Group* g : groups) pthread_join(g->thread, nullptr);
  for (Group* g : s->finished) pthread_join(g->thread, nullptr);
  for (Group* g : groups) {
    for (Slot* sl : g->slots) FreeSlot(s, sl);
    delete g;
  }
  for (Group* g : s->finished) delete g;
  s->groups.clear();
  s->finished.clear();
  s->on_complete.Reset();
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
}

static void FinalizeState(napi_env, void* data, void*) { delete static_cast<State*>(data); }

static State* StateOf(const Napi::CallbackInfo& info) { return static_cast<State*>(info.Data()); }

// waitv_init(onComplete(batch)) -> 0 | -ENOSYS (no futex_waitv in this kernel)
static Napi::Value WaitvInit(const Napi::CallbackInfo& info) {
  State* s = StateOf(info);
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(info.Env(), "devmap native: waitv_init needs a function").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  s->on_complete = Napi::Persistent(info[0].As<Napi::Function>());
  return Num(info.Env(), s->supported ? 0 : -ENOSYS);
}

// waitv_add(address, expected, timeoutMs, tag) -> id (> 0) | -errno
// `tag` names the Mapping, so that equal addresses of different mappings never share a Slot.
static Napi::Value WaitvAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* s = StateOf(info);
  uint8_t* p = nullptr;
  long rc;
  if (!Addr(info, 0, 4, &p, &rc)) return env.Undefined();
  if (rc < 0) return Num(env, static_cast<double>(rc));
  if (!Numbers(info, 1, 4)) return env.Undefined();
  if (!s->supported) return Num(env, -ENOSYS);
  uint32_t expected = info[1].As<Napi::Number>().Uint32Value();
  int64_t deadline = Deadline(info[2].As<Napi::Number>().DoubleValue());
  std::pair<double, uintptr_t> key(info[3].As<Napi::Number>().DoubleValue(), reinterpret_cast<uintptr_t>(p));

  std::lock_guard<std::mutex> lk(s->mu);
  Slot* sl;
  auto found = s->slots.find(key);
  if (found != s->slots.end()) {
    sl = found->second;
  } else {
    size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* base = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(page - 1));
    void* alias = mremap(base, 0, page, MREMAP_MAYMOVE);
    if (alias == MAP_FAILED) return Num(env, -errno);
    Group* g = nullptr;
    for (Group* c : s->groups) {
      if (c->slots.size() < kSlotsPerGroup) {
        g = c;
        break;
      }
    }
    if (g == nullptr) {
      g = new Group();
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 256 * 1024);
      int err = pthread_create(&g->thread, &attr, WaiterThread, new ThreadArg{s, g});
      pthread_attr_destroy(&attr);
      if (err != 0) {
        delete g;
        munmap(alias, page);
        return Num(env, -err);
      }
      s->groups.push_back(g);
    }
    sl = new Slot{key, reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(alias) + (p - static_cast<uint8_t*>(base))),
                  alias, page, g, {}};
    s->slots[key] = sl;
    g->slots.push_back(sl);
  }
  double id = s->next_id++;
  sl->entries.push_back(Entry{id, expected, deadline});
  s->pending[id] = sl;
  Kick(sl->group);
  if (s->js_pending++ == 0) napi_ref_threadsafe_function(env, s->tsfn);
  return Num(env, id);
}

// waitv_cancel(id) -> 2 (cancelled while pending) | 0 | 1 | -errno (it had completed: this is its result,
// now taken out of the queue) | -ENOENT (unknown or already delivered)
static Napi::Value WaitvCancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* s = StateOf(info);
  if (!CheckArgs(info, 1)) return env.Undefined();
  double id = info[0].As<Napi::Number>().DoubleValue();
  int result = -ENOENT;
  {
    std::lock_guard<std::mutex> lk(s->mu);
    auto it = s->pending.find(id);
    if (it != s->pending.end()) {
      Slot* sl = it->second;
      for (size_t i = 0; i < sl->entries.size(); i++) {
        if (sl->entries[i].id == id) {
          sl->entries.erase(sl->entries.begin() + static_cast<long>(i));
          break;
        }
      }
      s->pending.erase(it);
      Kick(sl->group);  // lets the thread drop an empty Slot (and exit if it was the last)
      result = kCancelled;
    } else {
      for (size_t i = 0; i < s->done.size(); i++) {
        if (s->done[i].first == id) {
          result = s->done[i].second;
          s->done.erase(s->done.begin() + static_cast<long>(i));
          break;
        }
      }
    }
  }
  if (result != -ENOENT && --s->js_pending == 0) napi_unref_threadsafe_function(env, s->tsfn);
  return Num(env, result);
}

// waitv_threads() -> waiter threads alive or not yet joined (for tests and diagnostics)
static Napi::Value WaitvThreads(const Napi::CallbackInfo& info) {
  State* s = StateOf(info);
  std::lock_guard<std::mutex> lk(s->mu);
  return Num(info.Env(), static_cast<double>(s->groups.size() + s->finished.size()));
}

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
    if (rc < 0) return Num(info.Env(), static_cast<double>(rc)); \
    return Num(info.Env(), -static_cast<double>(expr));         \
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
  if (rc < 0) return Num(info.Env(), static_cast<double>(rc));
  uint32_t* w = LockWord(m);
  uint32_t v = Load(w);
  for (;;) {
    if ((v & FUTEX_TID_MASK) == 0) return Num(info.Env(), -1);
    if (v & FUTEX_WAITERS) return Num(info.Env(), v);
    if (__atomic_compare_exchange_n(w, &v, v | FUTEX_WAITERS, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
      return Num(info.Env(), v | FUTEX_WAITERS);
    }
  }
}

// mutex_mark_waiters(address): the owner, having acquired with trylock after sleeping, sets
// FUTEX_WAITERS as glibc's lock does after a sleep, so its unlock wakes whoever still sleeps.
static Napi::Value MutexMarkWaiters(const Napi::CallbackInfo& info) {
  pthread_mutex_t* m;
  long rc;
  if (!MutexAt(info, &m, &rc)) return info.Env().Undefined();
  if (rc < 0) return Num(info.Env(), static_cast<double>(rc));
  __atomic_fetch_or(LockWord(m), FUTEX_WAITERS, __ATOMIC_RELAXED);
  return Num(info.Env(), 0);
}

// mutex_layout() -> [sizeof(pthread_mutex_t), alignof, byte offset of the futex word]
static Napi::Value MutexLayout(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), 3);
  out.Set(0u, Num(info.Env(), sizeof(pthread_mutex_t)));
  out.Set(1u, Num(info.Env(), alignof(pthread_mutex_t)));
  out.Set(2u, Num(info.Env(), kLockWordOffset));
  return out;
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
  return Num(info.Env(), static_cast<double>(base) + info[1].As<Napi::Number>().DoubleValue());
}

// gettid() -> the calling thread's kernel id (the owner id a held mutex records)
static Napi::Value GetTid(const Napi::CallbackInfo& info) {
  return Num(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

void InitSync(Napi::Env env, Napi::Object exports) {
  State* s = new State();
  s->env = env;
  // futex_waitv with no futexes: EINVAL where the call exists, ENOSYS before Linux 5.16.
  s->supported = !(syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, 0) < 0 && errno == ENOSYS);
  napi_value name;
  napi_create_string_utf8(env, "devmap.waitAsync", NAPI_AUTO_LENGTH, &name);
  napi_status st = napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, s, FinalizeState, s, CallJs,
                                                   &s->tsfn);
  if (st != napi_ok) {
    delete s;
    Napi::Error::New(env, "devmap native: cannot create the waiter's thread-safe function").ThrowAsJavaScriptException();
    return;
  }
  napi_unref_threadsafe_function(env, s->tsfn);
  // Registered after the thread-safe function, so it runs before the function's own teardown.
  napi_add_env_cleanup_hook(env, Teardown, s);

  exports["futex_wait_spin"] = Napi::Function::New(env, FutexWaitSpin, "futex_wait_spin");
  exports["futex_wake_addr"] = Napi::Function::New(env, FutexWakeAddr, "futex_wake_addr");
  exports["waitv_init"] = Napi::Function::New(env, WaitvInit, "waitv_init", s);
  exports["waitv_add"] = Napi::Function::New(env, WaitvAdd, "waitv_add", s);
  exports["waitv_cancel"] = Napi::Function::New(env, WaitvCancel, "waitv_cancel", s);
  exports["waitv_threads"] = Napi::Function::New(env, WaitvThreads, "waitv_threads", s);
  exports["mutex_layout"] = Napi::Function::New(env, MutexLayout, "mutex_layout");
  exports["mutex_init"] = Napi::Function::New(env, MutexInit, "mutex_init");
  exports["mutex_lock"] = Napi::Function::New(env, MutexLock, "mutex_lock");
  exports["mutex_trylock"] = Napi::Function::New(env, MutexTrylock, "mutex_trylock");
  exports["mutex_unlock"] = Napi::Function::New(env, MutexUnlock, "mutex_unlock");
  exports["mutex_consistent"] = Napi::Function::New(env, MutexConsistent, "mutex_consistent");
  exports["mutex_wait_value"] = Napi::Function::New(env, MutexWaitValue, "mutex_wait_value");
  exports["mutex_mark_waiters"] = Napi::Function::New(env, MutexMarkWaiters, "mutex_mark_waiters");
  exports["word_address"] = Napi::Function::New(env, WordAddressJs, "word_address");
  exports["gettid"] = Napi::Function::New(env, GetTid, "gettid");
}

}  // namespace devmap
