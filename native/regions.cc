// The range table, the SIGBUS handler that reads it, and what each Node environment owns.
//
// Every range of address space devmap holds for JavaScript has a row in one process-wide table: the pages of
// a live Mapping (kRowLive), pages taken away and replaced by trash that wait to be given back (kRowTrash),
// and the PROT_NONE reservations of simulated address spaces (kRowReserve; the rows inside them are
// kRowNested). The table serves two readers that cannot call into JavaScript:
//
//  1. The SIGBUS handler. A peer that truncates a shared object makes the next touch of a page past its new
//     end raise SIGBUS. When the faulting address lies in a live row (or a trash row: a stale view over a
//     shared anonymous object that unmap punched empty, whose object someone truncated through
//     /proc/<pid>/map_files), the handler replaces that one page with
//     a private zero page (mmap MAP_FIXED: the "trash page" of illumos seg_dev), sets kFlagTruncated in the
//     row's flags word and returns, so the instruction retries on harmless memory. The Mapping's next call
//     reads the flag (JavaScript sees the flags words as an Int32Array, no native call) and throws
//     ERR_DEVMAP_TRUNCATED. Any other SIGBUS goes to the handler that was installed before ours, unchanged
//     (or, when that was the default, kills the process as it would have). The handler only loads atomics
//     and calls mmap(2), which is async-signal-safe in practice on Linux (a plain system call); the table
//     never moves (one mmap'd array, reserved once) and rows are published with release stores, so a signal
//     arriving on any thread while another adds or removes rows reads either the old or the new row.
//  2. An environment's teardown hook. When a Worker ends, JavaScript can no longer reach anything that
//     environment made (its views cannot leave it: Node refuses to post external ArrayBuffers to another
//     thread), so the hook gives back every range the environment's rows hold and closes the descriptors it
//     opened through devmap and did not close. The main thread's hook runs at exit.
//
// Store counters: each view devmap makes counts +1 on a counter JavaScript chose, and V8's deleter of its
// backing store counts -1 (Node calls the finalizer once no ArrayBuffer holds the store any more: after the
// view is detached, collected, or — when ArrayBuffer.prototype.transfer or a BYOB stream moved the store into
// another ArrayBuffer — after that one goes). JavaScript reads the counters to know when nothing can still
// reach pages it took away. Word 0 of the counters is a scratch word (mmap_row's row index); word 1 counts the
// counters that fell to zero, whose indices a ring in the last kZeroRing words keeps (CounterAdd).
//
// Fork count: pthread_atfork's prepare handler counts every fork(2) the C library makes (libuv's spawn is
// one: its child shares this process's MAP_SHARED objects until it execs). A shared anonymous object whose
// range quarantine.ts wants to hand to a new Mapping is reused only when no fork began since it was made.
#include "regions.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <pthread.h>
#include <unordered_set>
#include <vector>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

namespace devmap {

namespace {

constexpr size_t kCapacity = size_t(1) << 20;  // rows; reserved address space, touched as rows are used
constexpr size_t kCounters = size_t(1) << 20;  // store counters per environment (words, see CounterAdd)
constexpr size_t kZeroRing = size_t(1) << 16;  // the last words of the counters: counters that fell to zero

struct Row {
  std::atomic<uintptr_t> start;
  std::atomic<uintptr_t> len;
  std::atomic<int32_t> kind;  // 0: free
  std::atomic<uint32_t> env;
};

Row* g_rows = nullptr;
int32_t* g_flags = nullptr;
std::atomic<size_t> g_used{0};  // rows ever handed out: the handler scans [0, g_used)
std::mutex g_mu;                // add/remove (never taken by the handler)
std::vector<int32_t>* g_free = nullptr;
std::atomic<uint32_t> g_next_env{1};
struct sigaction g_previous;
size_t g_page = 4096;
// Process-wide words JavaScript shares across environments: word 0 counts the forks this process has begun
// (pthread_atfork's prepare handler); word 1 is the VMA budget, slots of vm.max_map_count devmap may still take
// before it counts the table again, and word 2 the most mappings devmap lets the table hold (the limit less the
// reserve), both kept by lib/memory/map-count.ts.
int32_t* g_forks = nullptr;
constexpr size_t kProcessWords = 3;

// The lines of /proc/self/maps, from a signal handler (open, read and close only), or -1. One thread counts at a
// time (the buffer is static: an alternate signal stack may be too small for it); another gets -1.
long CountMappingsInHandler() {
  static char buf[4096];
  static std::atomic_flag busy = ATOMIC_FLAG_INIT;
  // Another thread counting: wait for it, a bounded while (a child forked during a count inherits the flag set
  // with no thread to clear it: it gives up and answers -1).
  for (int spins = 0; busy.test_and_set(std::memory_order_acquire); spins++) {
    if (spins > 20000) return -1;
    syscall(SYS_sched_yield);
  }
  long lines = -1;
  int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC));
  if (fd >= 0) {
    lines = 0;
    for (;;) {
      ssize_t got = read(fd, buf, sizeof buf);
      if (got <= 0) {
        if (got < 0) lines = -1;
        break;
      }
      for (ssize_t k = 0; k < got; k++) lines += buf[k] == '\n';
    }
    close(fd);
  }
  busy.clear(std::memory_order_release);
  return lines;
}

// Room for a split (two more mappings): from the budget, or, once it is spent, from a count of the table.
bool RoomForSplit() {
  if (g_forks == nullptr) return false;
  if (__atomic_sub_fetch(&g_forks[1], 2, __ATOMIC_SEQ_CST) >= 0) return true;
  int32_t most = __atomic_load_n(&g_forks[2], __ATOMIC_RELAXED);
  long count = most > 0 ? CountMappingsInHandler() : -1;
  // A thread that counted meanwhile may have refilled the budget.
  if (count >= 0 && __atomic_sub_fetch(&g_forks[1], 2, __ATOMIC_SEQ_CST) >= 0) return true;
  if (count < 0 || count + 2 > most) return false;
  // As lib/memory/map-count.ts does after a count: half the room found, so the next faults need not count.
  __atomic_store_n(&g_forks[1], static_cast<int32_t>((most - count) / 2) - 2, __ATOMIC_SEQ_CST);
  return true;
}

void* Reserve(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void OnSigbus(int sig, siginfo_t* si, void* context) {
  int saved = errno;
  uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
  Row* rows = g_rows;
  size_t n = g_used.load(std::memory_order_acquire);
  if (si->si_code > 0 && rows != nullptr) {
    for (size_t i = 0; i < n; i++) {
      int32_t kind = rows[i].kind.load(std::memory_order_acquire);
      if ((kind & (kRowLive | kRowTrash)) == 0) continue;
      uintptr_t s = rows[i].start.load(std::memory_order_relaxed);
      uintptr_t l = rows[i].len.load(std::memory_order_relaxed);
      if (a < s || a >= s + l) continue;
      // One zero page where the fault was: it splits the mapping in up to three, so it needs room in the
      // table (lib/memory/map-count.ts). Where devmap's share of the table is used up, or the kernel's table is
      // full, the whole row becomes zero pages instead, which splits nothing (the pages of it the truncation
      // left read zeros too): the Mapping is lost either way (its next call says ERR_DEVMAP_TRUNCATED), the
      // process is not.
      void* page = reinterpret_cast<void*>(a & ~(g_page - 1));
      const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
      bool room = RoomForSplit();
      if ((room && mmap(page, g_page, PROT_READ | PROT_WRITE, flags, -1, 0) != MAP_FAILED) ||
          mmap(reinterpret_cast<void*>(s), l, PROT_READ | PROT_WRITE, flags, -1, 0) != MAP_FAILED) {
        __atomic_or_fetch(&g_flags[i], kFlagTruncated, __ATOMIC_SEQ_CST);
        errno = saved;
        return;
      }
      break;
    }
  }
  errno = saved;
  // Not ours: what would have happened without devmap.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) return g_previous.sa_sigaction(sig, si, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  // Default action: restore it; a fault re-executes and kills, a signal sent by someone is raised again.
  signal(SIGBUS, SIG_DFL);
  if (si->si_code <= 0) raise(SIGBUS);
}

// Runs in the forking thread before fork(2) copies the address space: a child made from here on may share
// every MAP_SHARED object this process maps now (lib/memory/quarantine.ts reads the count).
void OnFork() { __atomic_add_fetch(g_forks, 1, __ATOMIC_SEQ_CST); }

void InitProcess() {
  g_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  g_rows = static_cast<Row*>(Reserve(kCapacity * sizeof(Row)));
  g_flags = static_cast<int32_t*>(Reserve(kCapacity * sizeof(int32_t)));
  g_forks = static_cast<int32_t*>(Reserve(g_page));
  if (g_forks != nullptr) pthread_atfork(OnFork, nullptr, nullptr);
  g_free = new std::vector<int32_t>();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

struct EnvState {
  uint32_t id;
  int32_t* counters;
  std::unordered_set<int> fds;
};

// The robust mutexes the calling thread holds, by the C library's own record: the entries of the robust list it
// registered with the kernel (get_robust_list), which the kernel walks when the thread exits. This is what
// teardown keeps mapped. JavaScript's record (kFlagPinned, set by lock() after the C library returns, cleared by
// unlock() after it) can be wrong at teardown: a Worker terminated between a lock's success and the pin holds a
// mutex whose Mapping is not pinned, one terminated between an unlock and the unpin holds none in a pinned
// Mapping. Entries are read with ReadOwn (their words are in memory anyone may have overwritten). False when the
// walk did not get back to the head (an unreadable entry, or the kernel's limit): then the pins are all we have.
static bool HeldRobustEntries(std::vector<uintptr_t>* out) {
  struct robust_list_head* head = nullptr;
  size_t len;
  if (syscall(SYS_get_robust_list, 0, &head, &len) != 0 || head == nullptr) return false;
  const uintptr_t end = reinterpret_cast<uintptr_t>(head);
  uintptr_t cur = reinterpret_cast<uintptr_t>(head->list.next) & ~uintptr_t(1);  // bit 0 marks a PI futex
  for (int steps = 0; cur != end; steps++) {
    uintptr_t next;
    if (steps == kRobustListLimit || !ReadOwn(cur, &next)) return false;
    out->push_back(cur);
    cur = next & ~uintptr_t(1);
  }
  return true;
}

static bool ContainsAny(const std::vector<uintptr_t>& addrs, uintptr_t start, uintptr_t len) {
  for (uintptr_t a : addrs) {
    if (a - start < len) return true;
  }
  return false;
}

// Runs on the environment's own thread (a Worker's, or the main thread at exit), before that thread ends.
static void Teardown(void* arg) {
  EnvState* s = static_cast<EnvState*>(arg);
  if (g_rows != nullptr) {
    std::vector<uintptr_t> held;
    const bool list_known = HeldRobustEntries(&held);
    std::lock_guard<std::mutex> lock(g_mu);
    size_t n = g_used.load(std::memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
      Row& r = g_rows[i];
      int32_t kind = r.kind.load(std::memory_order_acquire);
      if (kind == 0 || r.env.load(std::memory_order_relaxed) != s->id) continue;
      r.kind.store(0, std::memory_order_release);
      // A held Mutex's pages stay: the kernel walks the dying thread's robust list after this and must find them.
      bool pinned = list_known ? ContainsAny(held, r.start.load(std::memory_order_relaxed), r.len.load(std::memory_order_relaxed))
                               : (__atomic_load_n(&g_flags[i], __ATOMIC_ACQUIRE) & kFlagPinned) != 0;
      if ((kind & kRowNested) == 0 && !pinned) {
        munmap(reinterpret_cast<void*>(r.start.load(std::memory_order_relaxed)), r.len.load(std::memory_order_relaxed));
      }
      g_flags[i] = 0;
      g_free->push_back(static_cast<int32_t>(i));
    }
  }
  for (int fd : s->fds) close(fd);
  if (s->counters != nullptr) munmap(s->counters, kCounters * sizeof(int32_t));
  delete s;
}

bool InitEnvState(napi_env env) {
  static std::once_flag once;
  std::call_once(once, InitProcess);
  if (g_rows == nullptr || g_flags == nullptr || g_forks == nullptr) return false;
  EnvState* s = new EnvState();
  s->id = g_next_env.fetch_add(1);
  s->counters = static_cast<int32_t*>(Reserve(kCounters * sizeof(int32_t)));
  if (s->counters == nullptr || napi_set_instance_data(env, s, nullptr, nullptr) != napi_ok) {
    if (s->counters != nullptr) munmap(s->counters, kCounters * sizeof(int32_t));
    delete s;
    return false;
  }
  if (napi_add_env_cleanup_hook(env, Teardown, s) != napi_ok) {
    napi_set_instance_data(env, nullptr, nullptr, nullptr);
    munmap(s->counters, kCounters * sizeof(int32_t));
    delete s;
    return false;
  }
  return true;
}

EnvState* StateOf(napi_env env) {
  void* data = nullptr;
  if (napi_get_instance_data(env, &data) != napi_ok) return nullptr;
  return static_cast<EnvState*>(data);
}

long RowAdd(napi_env env, uintptr_t start, size_t len, int32_t kind) {
  EnvState* s = StateOf(env);
  if (s == nullptr) return -EINVAL;
  std::lock_guard<std::mutex> lock(g_mu);
  size_t i;
  if (!g_free->empty()) {
    i = static_cast<size_t>(g_free->back());
    g_free->pop_back();
  } else {
    i = g_used.load(std::memory_order_relaxed);
    if (i >= kCapacity) return -ENOMEM;
  }
  Row& r = g_rows[i];
  r.start.store(start, std::memory_order_relaxed);
  r.len.store(len, std::memory_order_relaxed);
  r.env.store(s->id, std::memory_order_relaxed);
  __atomic_store_n(&g_flags[i], 0, __ATOMIC_RELAXED);
  r.kind.store(kind, std::memory_order_release);
  if (i >= g_used.load(std::memory_order_relaxed)) g_used.store(i + 1, std::memory_order_release);
  return static_cast<long>(i);
}

void RowSet(long row, uintptr_t start, size_t len, int32_t kind) {
  if (row < 0 || static_cast<size_t>(row) >= g_used.load(std::memory_order_acquire)) return;
  Row& r = g_rows[row];
  // Narrow first, then publish the kind: a concurrent signal sees a range that is ours either way.
  r.kind.store(0, std::memory_order_release);
  r.start.store(start, std::memory_order_relaxed);
  r.len.store(len, std::memory_order_relaxed);
  // A row set live covers a new mapping (a pooled range handed out again): nothing of the old one's flags holds.
  if (kind & kRowLive) __atomic_store_n(&g_flags[row], 0, __ATOMIC_RELEASE);
  r.kind.store(kind, std::memory_order_release);
}

void RowRemove(long row) {
  if (row < 0 || static_cast<size_t>(row) >= g_used.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_rows[row].kind.load(std::memory_order_relaxed) == 0) return;
  g_rows[row].kind.store(0, std::memory_order_release);
  __atomic_store_n(&g_flags[row], 0, __ATOMIC_RELAXED);
  g_free->push_back(static_cast<int32_t>(row));
}

void CounterAdd(napi_env env, int32_t counter, int32_t delta) {
  EnvState* s = StateOf(env);
  if (s == nullptr || counter < 2 || static_cast<size_t>(counter) >= kCounters - kZeroRing) return;
  if ((s->counters[counter] += delta) != 0 || delta >= 0) return;
  // Word 1 counts the counters that fell to zero, and the ring keeps the latest of them: JavaScript reads them
  // to release a quarantine as soon as its last store is freed, without polling every waiting one.
  uint32_t n = static_cast<uint32_t>(s->counters[1]);
  s->counters[kCounters - kZeroRing + n % kZeroRing] = counter;
  s->counters[1] = static_cast<int32_t>(n + 1);
}

void SetScratch(napi_env env, int32_t value) {
  EnvState* s = StateOf(env);
  if (s != nullptr) s->counters[0] = value;
}

void FdOpened(napi_env env, long fd) {
  if (fd < 0) return;
  EnvState* s = StateOf(env);
  if (s != nullptr) s->fds.insert(static_cast<int>(fd));
}

void FdClosed(napi_env env, int fd) {
  EnvState* s = StateOf(env);
  if (s != nullptr) s->fds.erase(fd);
}

napi_value Tables(napi_env env) {
  EnvState* s = StateOf(env);
  napi_value out, flags, counters, forks;
  if (s == nullptr || napi_create_array_with_length(env, 3, &out) != napi_ok) return nullptr;
  if (napi_create_external_arraybuffer(env, g_flags, kCapacity * sizeof(int32_t), nullptr, nullptr, &flags) != napi_ok ||
      napi_create_external_arraybuffer(env, s->counters, kCounters * sizeof(int32_t), nullptr, nullptr, &counters) != napi_ok ||
      napi_create_external_arraybuffer(env, g_forks, kProcessWords * sizeof(int32_t), nullptr, nullptr, &forks) != napi_ok ||
      napi_set_element(env, out, 0, flags) != napi_ok || napi_set_element(env, out, 1, counters) != napi_ok ||
      napi_set_element(env, out, 2, forks) != napi_ok) {
    return nullptr;
  }
  return out;
}

}  // namespace devmap
