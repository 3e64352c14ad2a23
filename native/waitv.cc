// The waiter threads behind waitAsync (waitv_*): the one piece of machinery in the addon. In short:
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
//  - The thread never loads a word itself. The object under an alias can shrink (a resize in this process,
//    an ftruncate by a peer), and a load from a page past the end of a shared object is a SIGBUS, which on
//    this thread (every signal blocked, no JS to tell) would kill the process. The re-read goes through the
//    kernel instead (ReadWords): process_vm_readv(2) on our own pid walks the page tables and answers a
//    missing page with a short count, one call for every Slot of the Group. Where a seccomp profile forbids
//    it, each word is probed with FUTEX_WAIT_BITSET and an expired deadline (the kernel reads the word and
//    answers EAGAIN, ETIMEDOUT or EFAULT). futex_waitv reads the words in the kernel too, and says EFAULT.
//    A Slot whose page is gone completes with -EFAULT (ERR_DEVMAP_TRUNCATED in JS); the others wait on.
//  - No wake is lost. A FUTEX_WAKE that ends our futex_waitv was meant for one waiter of that word; if every
//    entry of the woken Slot was cancelled meanwhile, the thread passes the wake on (FUTEX_WAKE 1 through
//    its alias) before it drops the Slot, so another waiter, in any process, gets it.
//  - Completions go to a queue; one napi thread-safe-function call drains it on the JS thread, which also
//    joins exited threads. Cancellation (AbortSignal) removes the entry under the lock, or, if the thread
//    completed it first, takes the completion out of the queue: either way exactly one outcome is reported.
//  - The thread-safe function is referenced while an entry is pending (a pending wait keeps the event loop
//    alive, like a timer) and unreferenced otherwise. At environment teardown a cleanup hook stops and joins
//    every thread before the thread-safe function is released.
#include <napi.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <linux/futex.h>
#include <map>
#include <mutex>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common.h"

namespace devmap {

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
  // When each step of the latest wait happened (CLOCK_MONOTONIC ns), for bench/sync.mjs --breakdown: the JS
  // thread added it; the waiter thread went to sleep with it, woke for it, queued its completion; the JS
  // thread received it. Relaxed stores: a diagnostic, not a synchronisation.
  int64_t t_add = 0, t_asleep = 0, t_woke = 0, t_queued = 0, t_js = 0;
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
  __atomic_store_n(&s->t_queued, MonoNs(), __ATOMIC_RELAXED);
  napi_call_threadsafe_function(s->tsfn, nullptr, napi_tsfn_nonblocking);
}

static void FreeSlot(State* s, Slot* sl) {
  s->slots.erase(sl->key);
  munmap(sl->alias, sl->alias_len);
  delete sl;
}

// FreeSlot for the waiter thread, which unmaps the alias later, outside the lock (an munmap in a threaded
// process waits for other CPUs to drop the page from their TLBs, and the JS thread may want the lock).
static void DropSlot(State* s, Slot* sl, std::vector<std::pair<void*, size_t>>* unmap_later) {
  s->slots.erase(sl->key);
  unmap_later->emplace_back(sl->alias, sl->alias_len);
  delete sl;
}

static void Complete(State* s, Slot* sl, int result) {
  for (const Entry& e : sl->entries) {
    s->pending.erase(e.id);
    s->done.emplace_back(e.id, result);
  }
  sl->entries.clear();
}

// --- reading words without faulting (see the essay above) ------------------------------------------------

static pid_t g_pid = 0;              // set by InitWaitv; a Node process does not fork
static bool g_no_vm_readv = false;   // process_vm_readv refused once (seccomp): probe from then on

// 0: the word holds `expected`; 1: it does not (or a wake arrived: 'ok' means "look again"); -1: unreadable.
static int Probe(uint32_t* word, uint32_t expected) {
  struct timespec past = {0, 0};  // an absolute CLOCK_MONOTONIC deadline long gone
  long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &past, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (r < 0 && errno == ETIMEDOUT) return 0;
  if (r < 0 && errno == EFAULT) return -1;
  return 1;
}

// values[i] = the word of slots[i] now, or gone[i] = 1 when its page cannot be read. With the probe fallback
// a changed word reads as (expected ^ 1): some value other than what the first entry expects.
static void ReadWords(const std::vector<Slot*>& slots, std::vector<uint32_t>* values, std::vector<char>* gone) {
  size_t n = slots.size();
  values->assign(n, 0);
  gone->assign(n, 0);
  size_t i = 0;
  if (!__atomic_load_n(&g_no_vm_readv, __ATOMIC_RELAXED)) {
    std::vector<struct iovec> local(n), remote(n);
    for (size_t k = 0; k < n; k++) {
      local[k] = {&(*values)[k], sizeof(uint32_t)};
      remote[k] = {slots[k]->word, sizeof(uint32_t)};
    }
    while (i < n) {
      ssize_t got = process_vm_readv(g_pid, &local[i], n - i, &remote[i], n - i, 0);
      if (got < 0 && errno != EFAULT) {
        __atomic_store_n(&g_no_vm_readv, true, __ATOMIC_RELAXED);
        break;
      }
      // A copy stops at the first element it cannot read (never inside one): that element's page is gone.
      i += got < 0 ? 0 : static_cast<size_t>(got) / sizeof(uint32_t);
      if (i < n) (*gone)[i++] = 1;
    }
  }
  for (; i < n; i++) {
    if (slots[i]->entries.empty()) continue;
    uint32_t expected = slots[i]->entries[0].expected;
    int p = Probe(slots[i]->word, expected);
    if (p < 0) (*gone)[i] = 1;
    else (*values)[i] = p == 0 ? expected : expected ^ 1;
  }
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
  std::vector<uint32_t> values;
  std::vector<char> gone;
  std::vector<std::pair<void*, size_t>> unmap_later;
  bool fault_unexplained = false;  // futex_waitv said EFAULT: the re-read must find the page that is gone
  std::unique_lock<std::mutex> lk(s->mu);
  for (;;) {
    if (s->stopping) return nullptr;  // teardown joins us and frees the slots
    // Settle what can be settled: changed words complete 'ok', passed deadlines 'timed-out', words whose
    // page is gone -EFAULT.
    int64_t now = MonoNs();
    int64_t next_deadline = kNever;
    ReadWords(g->slots, &values, &gone);
    bool found_gone = false;
    for (size_t i = 0; i < g->slots.size(); i++) {
      Slot* sl = g->slots[i];
      if (gone[i]) {
        found_gone = true;
        Complete(s, sl, -EFAULT);
        continue;
      }
      uint32_t v = values[i];
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
    }
    if (fault_unexplained && !found_gone) {
      for (Slot* sl : g->slots) Complete(s, sl, -EFAULT);  // nothing to single out: fail rather than spin
    }
    fault_unexplained = false;
    QueueDelivery(s);  // first: the JS thread can run while we tidy up
    for (size_t i = 0; i < g->slots.size();) {
      Slot* sl = g->slots[i];
      if (sl->entries.empty()) {
        DropSlot(s, sl, &unmap_later);
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
      lk.unlock();
      for (auto& a : unmap_later) munmap(a.first, a.second);
      return nullptr;
    }
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
    for (auto& a : unmap_later) munmap(a.first, a.second);
    unmap_later.clear();
    __atomic_store_n(&s->t_asleep, MonoNs(), __ATOMIC_RELAXED);
    long r = syscall(SYS_futex_waitv, vec.data(), static_cast<unsigned>(vec.size()), 0,
                     next_deadline == kNever ? nullptr : &ts, CLOCK_MONOTONIC);
    int err = r < 0 ? errno : 0;
    if (r >= 1) __atomic_store_n(&s->t_woke, MonoNs(), __ATOMIC_RELAXED);
    lk.lock();
    // Slots are freed only by this thread (or by teardown after joining it), so snapshot[] is still valid;
    // but the Slot may have lost its entries to cancellation meanwhile, which Complete() handles.
    if (r >= 1) {
      Slot* woken = snapshot[static_cast<size_t>(r) - 1];
      if (woken->entries.empty()) {
        // Every wait this wake could end was cancelled meanwhile: it belongs to another waiter. Pass it on.
        syscall(SYS_futex, woken->word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
      } else {
        Complete(s, woken, 0);
        QueueDelivery(s);  // before the re-read: the JS thread can start at once
      }
    } else if (r < 0 && err == EFAULT) {
      fault_unexplained = true;
    } else if (r < 0 && err != EAGAIN && err != ETIMEDOUT && err != EINTR) {
      for (Slot* sl : g->slots) Complete(s, sl, -err);  // e.g. ENOMEM: fail the waits rather than spin
    }
  }
}

// Runs on the JS thread: delivers completions as one array [id, result, id, result, ...].
static void CallJs(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;  // the thread-safe function is being torn down
  State* s = static_cast<State*>(context);
  __atomic_store_n(&s->t_js, MonoNs(), __ATOMIC_RELAXED);
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
  // The C API, each status checked: a Worker being terminated can still drain the queue here (its loop runs
  // once more during cleanup), when JS can no longer run; node-addon-api would turn the failing call into a
  // fatal error ("napi_throw"). Then the completions are simply dropped, as the promises die with the Worker.
  if (s->on_complete.IsEmpty()) return;
  napi_value out, fn, recv, num;
  if (napi_create_array_with_length(env, done.size() * 2, &out) != napi_ok) return;
  for (size_t i = 0; i < done.size(); i++) {
    if (napi_create_double(env, done[i].first, &num) != napi_ok || napi_set_element(env, out, static_cast<uint32_t>(2 * i), num) != napi_ok ||
        napi_create_double(env, done[i].second, &num) != napi_ok || napi_set_element(env, out, static_cast<uint32_t>(2 * i + 1), num) != napi_ok) {
      return;
    }
  }
  if (napi_get_reference_value(env, static_cast<napi_ref>(s->on_complete), &fn) != napi_ok || fn == nullptr ||
      napi_get_undefined(env, &recv) != napi_ok) {
    return;
  }
  napi_call_function(env, recv, fn, 1, &out, nullptr);  // an exception stays pending: Node reports it
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
  return NumberOf(info.Env(), s->supported ? 0 : -ENOSYS);
}

// waitv_add(address, expected, timeoutMs, tag) -> id (> 0) | -errno
// `tag` names the Mapping, so that equal addresses of different mappings never share a Slot.
static Napi::Value WaitvAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State* s = StateOf(info);
  uint8_t* p = nullptr;
  long rc;
  if (!Addr(info, 0, 4, &p, &rc)) return env.Undefined();
  if (rc < 0) return NumberOf(env, static_cast<double>(rc));
  if (!CheckArgs(info, 4, 1)) return env.Undefined();
  if (!s->supported) return NumberOf(env, -ENOSYS);
  __atomic_store_n(&s->t_add, MonoNs(), __ATOMIC_RELAXED);
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
    if (alias == MAP_FAILED) return NumberOf(env, -errno);
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
        return NumberOf(env, -err);
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
  return NumberOf(env, id);
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
  return NumberOf(env, result);
}

// waitv_threads() -> waiter threads alive or not yet joined (for tests and diagnostics)
static Napi::Value WaitvThreads(const Napi::CallbackInfo& info) {
  State* s = StateOf(info);
  std::lock_guard<std::mutex> lk(s->mu);
  return NumberOf(info.Env(), static_cast<double>(s->groups.size() + s->finished.size()));
}

// waitv_times() -> [added, asleep, woke, queued, delivered] of the latest wait, CLOCK_MONOTONIC ns (diagnostic)
static Napi::Value WaitvTimes(const Napi::CallbackInfo& info) {
  State* s = StateOf(info);
  Napi::Array out = Napi::Array::New(info.Env(), 5);
  const int64_t* t[] = {&s->t_add, &s->t_asleep, &s->t_woke, &s->t_queued, &s->t_js};
  for (uint32_t i = 0; i < 5; i++) out.Set(i, NumberOf(info.Env(), static_cast<double>(__atomic_load_n(t[i], __ATOMIC_RELAXED))));
  return out;
}

void InitWaitv(Napi::Env env, Napi::Object exports) {
  g_pid = getpid();
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

  exports["waitv_init"] = Napi::Function::New(env, WaitvInit, "waitv_init", s);
  exports["waitv_add"] = Napi::Function::New(env, WaitvAdd, "waitv_add", s);
  exports["waitv_cancel"] = Napi::Function::New(env, WaitvCancel, "waitv_cancel", s);
  exports["waitv_threads"] = Napi::Function::New(env, WaitvThreads, "waitv_threads", s);
  exports["waitv_times"] = Napi::Function::New(env, WaitvTimes, "waitv_times", s);
}

}  // namespace devmap
