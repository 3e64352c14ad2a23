/*
 * Mutex: a robust lock that lives in 16 words of a shared mapping and works across processes and threads.
 *
 * 1. What it is. The words hold a POSIX mutex made process-shared, robust and error-checking
 *    (pthread_mutexattr_setpshared / setrobust / settype ERRORCHECK), followed by a marker that Mutex.init
 *    writes last. The C library does the locking; devmap calls it, one function per call (native/robust_mutex.cc).
 *    A C program, or Python through ctypes, can share the same mutex.
 *
 * 2. Why the C library's robust mutex. The owner of a mutex must be detectable as dead, exactly, even after
 *    its pid has been reused. Checking "is the owner's pid alive?" (kill(pid, 0), /proc) is racy against pid
 *    reuse unless the start time is stored too, and it only learns of a death when a waiter wakes up to look.
 *    The kernel's robust futex list is exact: each thread registers a list of the robust mutexes it holds
 *    (set_robust_list), and when the thread dies — SIGKILL included — the kernel walks the list, sets
 *    FUTEX_OWNER_DIED in each held mutex's futex word and wakes one waiter. The list is per thread and glibc
 *    has already registered one for every thread it runs (the main thread and every worker thread), so devmap
 *    cannot register its own; it does not need to, because pthread robust mutexes use that list. The cost of
 *    this choice: every process sharing a Mutex must use the same C library ABI (glibc with glibc), and the
 *    owner is a thread — the JS thread (main or worker) that locked it, identified by its kernel thread id.
 *
 * 3. The protocol, as in POSIX:
 *    - lock()/tryLock()/lockAsync() return { ownerDied: false } normally, and { ownerDied: true } when the
 *      previous owner died holding it. The caller then owns an *inconsistent* mutex: it repairs the shared
 *      state and calls consistent(), then unlock(). If it unlocks without consistent(), the mutex becomes
 *      permanently unusable and every later lock fails with ERR_DEVMAP_MUTEX_NOT_RECOVERABLE (re-create it
 *      with Mutex.init once nobody uses it).
 *    - unlock() by a thread that does not hold it: ERR_DEVMAP_MUTEX_NOT_OWNER. lock() by the thread that
 *      already holds it: ERR_DEVMAP_MUTEX_DEADLOCK (it would never return). tryLock() then returns null.
 *    - lockAsync() from the thread that holds the lock waits for that thread's own unlock(), so several
 *      async tasks of one thread can take turns.
 *
 * 4. lockAsync never blocks the event loop. It is the C library's slow path with the sleep replaced by
 *    waitAsync: try the lock; if it is held, set FUTEX_WAITERS in the futex word (so the owner's unlock, or
 *    the kernel when the owner dies, issues a wake) and wait asynchronously for the word to change; retry.
 *    Having slept, the new owner sets FUTEX_WAITERS again, as glibc does, so the others are woken in turn.
 *
 * 5. Rules. The memory of a held Mutex must stay mapped until it is unlocked: the C library links a held
 *    mutex into the owner thread's robust list, whose pointers live in those words, and the kernel reads them
 *    when the thread dies. A Mutex keeps its array, hence its Mapping, from being garbage-collected, and a
 *    held Mutex pins its pages against every call that could take them away: unmap(), protect() below
 *    read+write and a SharedMemory#resize() that would cut them off all throw ERR_DEVMAP_BUSY until the Mutex
 *    is unlocked (lib/sync/held.ts). Mutex.init must run
 *    exactly once per location, before any process uses it, and never while it may be in use.
 */
import { DevmapError, options, systemError, typeError } from '../errors';
import { native } from '../native';
import { assertMapSlots } from '../memory/map-count';
import type { Mapping } from '../memory/mapping';
import { waitAsync } from './futex';
import { heldAt, hold, release } from './held';
import { CLAIM_WORD, MARKER, MARKER_WORD, claimOrAttach } from './open-or-create';
import { inspectMutex, type MutexInfo } from './inspect';
import { address, mappingOf, timeoutMs, wordsOf } from './word';
import { typedArrayBuffer, typedArrayByteOffset } from '../intrinsics';

export interface LockResult {
  /** The previous owner died holding the lock: repair the protected state, then call consistent(). */
  readonly ownerDied: boolean;
}

export interface LockAsyncOptions {
  /** Milliseconds; when it passes without the lock, the promise rejects with ERR_DEVMAP_MUTEX_TIMEOUT. */
  timeout?: number;
  /** Aborting rejects the promise with signal.reason. */
  signal?: AbortSignal;
}

const LOCKED: LockResult = Object.freeze({ ownerDied: false });
const OWNER_DIED: LockResult = Object.freeze({ ownerDied: true });

const EBUSY = -16;
const EDEADLK = -35;
const EINVAL = -22;
const EOWNERDEAD = -130;
const ENOTRECOVERABLE = -131;
const EPERM = -1;
const EUCLEAN = -117;
const EBADMSG = -74;
const TID_MASK = 0x3fffffff;
const WORDS = 16;

interface Layout {
  size: number;
  align: number;
  /** Index, in 32-bit words from the Mutex's first word, of the futex word. */
  lockWord: number;
}
let layout: Layout | undefined;
function getLayout(): Layout {
  if (layout === undefined) {
    const [size, align, offset] = native().mutex_layout();
    if (size > 4 * CLAIM_WORD || align > 8) {
      throw new DevmapError('ERR_DEVMAP_UNSUPPORTED_PLATFORM', `pthread_mutex_t needs ${size} bytes here; Mutex reserves ${4 * CLAIM_WORD}`);
    }
    layout = { size, align, lockWord: offset / 4 };
  }
  return layout;
}

let tid: number | undefined;
/** The kernel id of the calling thread: what a held mutex records as its owner. */
function selfId(): number {
  return (tid ??= native().gettid());
}

function mutexError(rc: number, what: string): Error {
  switch (rc) {
    case ENOTRECOVERABLE:
      return new DevmapError(
        'ERR_DEVMAP_MUTEX_NOT_RECOVERABLE',
        'The Mutex is not recoverable: an owner acquired it after its previous owner died and unlocked it without calling consistent()',
      );
    case EDEADLK:
      return new DevmapError('ERR_DEVMAP_MUTEX_DEADLOCK', `${what}: this thread already holds the Mutex`);
    case EPERM:
      return new DevmapError('ERR_DEVMAP_MUTEX_NOT_OWNER', `${what}: this thread does not hold the Mutex`);
    case EINVAL:
      return new DevmapError('ERR_DEVMAP_MUTEX_UNINITIALIZED', `${what}: these words do not hold a Mutex made by Mutex.init()`);
    case EUCLEAN:
      return new DevmapError(
        'ERR_DEVMAP_MUTEX_CORRUPT',
        what === 'unlock'
          ? `${what}: the Mutex's bytes were overwritten (not by the C library); it was left unlocked and not recoverable: re-create it with Mutex.init() once nobody uses it`
          : `${what}: the Mutex's bytes were overwritten (not by the C library), so it was not touched: re-create it with Mutex.init() once nobody uses it`,
      );
    case EBADMSG:
      return new DevmapError(
        'ERR_DEVMAP_MUTEX_CORRUPT',
        `${what}: this thread's robust-mutex list is overwritten beyond repair; the Mutex stays held and its mapping pinned`,
      );
    default:
      return systemError(rc, `pthread_mutex_${what}`);
  }
}

/** pthread_mutex_init of a robust, process-shared, error-checking mutex at `addr` (native/sync.cc). */
function initAt(addr: number): void {
  const rc = native().mutex_init(addr);
  if (rc < 0) throw systemError(rc, 'pthread_mutex_init');
}

export class Mutex {
  /** 32-bit words a Mutex occupies; its index must be even (the words 8-byte aligned in memory). */
  static readonly WORDS = WORDS;

  readonly #array: Int32Array;
  readonly #index: number;
  /** Address of the pthread_mutex_t (valid while #array is attached, which #check() verifies). */
  readonly #addr: number;
  readonly #lockIndex: number;
  #mapping: Mapping;
  /** The words are in a view over an alias (a simulated process's memory), which may go stale while mapped. */
  #aliased: boolean;

  /**
   * Writes a new, unlocked Mutex into array[index .. index + Mutex.WORDS) and returns it. Do this once per
   * location, before other processes attach with `new Mutex(array, index)`, never while it may be in use.
   */
  static init(array: Int32Array, index: number): Mutex {
    const addr = address(array, index, 8, WORDS);
    Atomics.store(array, index + MARKER_WORD, 0);
    initAt(addr);
    Atomics.store(array, index + MARKER_WORD, MARKER);
    return new Mutex(array, index);
  }

  /**
   * The way for peers started in any order: attaches to the Mutex at array[index] if there is one, otherwise
   * initializes it there, exactly once however many threads and processes call this at the same moment.
   * `created` is true for the one caller that initialized it. The words must be zero (fresh shared memory) or
   * hold a Mutex; an initializer that died midway is detected and replaced (lib/sync/open-or-create.ts).
   * `timeout` (ms, default none) bounds the wait for a live initializer that does not finish.
   */
  static openOrCreate(array: Int32Array, index: number, opts?: { timeout?: number }): { mutex: Mutex; created: boolean } {
    const o = options<{ timeout: number }>(opts, 'options', ['timeout']);
    const ms = timeoutMs(o.timeout, 'options.timeout');
    const addr = address(array, index, 8, WORDS);
    const claim = new BigInt64Array(typedArrayBuffer(array), typedArrayByteOffset(array) + 4 * (index + CLAIM_WORD), 1);
    const created = claimOrAttach(array, index, claim, selfId(), ms, () => initAt(addr));
    return { mutex: new Mutex(array, index), created };
  }

  /** Attaches to the Mutex that Mutex.init() wrote at array[index] (in this or another process). */
  constructor(array: Int32Array, index: number) {
    const addr = address(array, index, 8, WORDS);
    const l = getLayout();
    if (Atomics.load(array, index + MARKER_WORD) !== MARKER) {
      throw new DevmapError('ERR_DEVMAP_MUTEX_UNINITIALIZED', `array[${index}] does not hold a Mutex: create one with Mutex.init()`);
    }
    this.#array = array;
    this.#index = index;
    this.#addr = addr;
    this.#lockIndex = index + l.lockWord;
    this.#mapping = mappingOf(array)!; // address() accepted it: a devmap view
    this.#aliased = this.#mapping.aliasedViews;
  }

  /**
   * Blocks the calling thread until it holds the Mutex. (It sleeps in 50 ms slices of the C library's timed
   * lock, so that terminating a Worker blocked here settles: then the native call gives up with EINTR, which
   * surfaces as a system error only if anything still runs.)
   */
  lock(): LockResult {
    this.#check();
    const rc = native().mutex_lock(this.#addr);
    if (rc === 0) return this.#held(LOCKED);
    if (rc === EOWNERDEAD) return this.#held(OWNER_DIED);
    throw this.#lockError(rc, 'lock');
  }

  /** Takes the Mutex if it is free (or its owner died), else returns null. Never blocks. */
  tryLock(): LockResult | null {
    this.#check();
    const rc = native().mutex_trylock(this.#addr);
    if (rc === 0) return this.#held(LOCKED);
    if (rc === EOWNERDEAD) return this.#held(OWNER_DIED);
    if (rc === EBUSY || rc === EDEADLK) return null;
    throw this.#lockError(rc, 'trylock');
  }

  /** Takes the Mutex without blocking the event loop. */
  async lockAsync(opts?: LockAsyncOptions): Promise<LockResult> {
    this.#check();
    const o = options<LockAsyncOptions>(opts, 'options', ['timeout', 'signal']);
    const ms = timeoutMs(o.timeout, 'options.timeout');
    const signal = o.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('an AbortSignal', 'options.signal', signal);
    const deadline = ms < 0 ? Infinity : performance.now() + ms;
    const n = native();
    let slept = false;
    // While this task sleeps, a second mapping of the lock word's page (native/futex.cc, futex_alias): an
    // unlock's single wake may end our sleep after the caller unmapped its mapping, and then this is the only
    // address left to pass it on through. 0 where the kernel cannot make one (a hugetlb mapping).
    let forwardWord = 0;
    try {
      for (;;) {
        signal?.throwIfAborted();
        this.#check(); // the pages may have been unmapped while this task slept: never hand the C library a dead address
        const rc = n.mutex_trylock(this.#addr);
        if (rc === 0 || rc === EOWNERDEAD) {
          if (slept) n.mutex_mark_waiters(this.#addr);
          return this.#held(rc === 0 ? LOCKED : OWNER_DIED);
        }
        if (rc !== EBUSY && rc !== EDEADLK) throw this.#lockError(rc, 'trylock');
        const value = n.mutex_wait_value(this.#addr);
        if (value === -1) continue; // released, or its owner died, since the attempt: try again now
        const remaining = deadline - performance.now();
        if (remaining <= 0) {
          throw new DevmapError('ERR_DEVMAP_MUTEX_TIMEOUT', `lockAsync: the Mutex was not acquired within ${ms} ms`);
        }
        if (forwardWord === 0) {
          assertMapSlots(1, 'lockAsync()'); // the alias below is a mapping
          forwardWord = Math.max(0, n.futex_alias(this.#addr + 4 * (this.#lockIndex - this.#index)));
        }
        await waitAsync(this.#array, this.#lockIndex, value | 0, { timeout: remaining === Infinity ? undefined : remaining, signal });
        slept = true;
      }
    } catch (err) {
      // Giving up after a sleep (timeout, abort, unmap, an error): the unlock's single wake may have been
      // ours, and then nobody else would get one. Pass it on (a spare wake is harmless: the waker re-checks).
      if (slept && forwardWord !== 0) n.futex_wake_addr(forwardWord, 1);
      else if (slept && wordsOf(this.#array) > 0) n.futex_wake_addr(this.#addr + 4 * (this.#lockIndex - this.#index), 1);
      throw err;
    } finally {
      if (forwardWord !== 0) n.futex_alias_release(forwardWord);
    }
  }

  /** Releases the Mutex; the calling thread must hold it. */
  unlock(): void {
    this.#check();
    // Locked through another mapping of the same bytes, it is on the robust list at that address: unlock there.
    const at = heldAt(this.#addr) ?? this.#addr;
    const rc = native().mutex_unlock(at);
    if (rc < 0 && rc !== EUCLEAN) throw mutexError(rc, 'unlock');
    // Unlocked, or (EUCLEAN) left unlocked and not recoverable: not held by this thread either way.
    release(at);
    if (rc === EUCLEAN) throw mutexError(rc, 'unlock');
  }

  /**
   * Why a lock attempt failed. Words that are not a Mutex (EUCLEAN) on a Mapping whose object a peer truncated
   * under it are that truncation (the first touch of the lost page replaced it with a zero page, which a lock
   * asleep in slices reads at its next slice), not a Mutex overwritten in place.
   */
  #lockError(rc: number, what: string): Error {
    if (rc === EUCLEAN && this.#mappingNow().truncated) {
      return new DevmapError('ERR_DEVMAP_TRUNCATED', `${what}: the page under the Mutex is gone (the shared object was made smaller under it)`);
    }
    return mutexError(rc, what);
  }

  /** While held, the mapping under the words cannot be unmapped (see rule 5 above). */
  #held(result: LockResult): LockResult {
    hold(this.#addr, this.#mappingNow());
    return result;
  }

  /**
   * The Mapping the words are in now: a partial unmap (never while held) hands them to a surviving piece, and
   * a view of a simulated process taken away from its pages (alias.ts) belongs to an unmapped Mapping.
   */
  #mappingNow(): Mapping {
    if (!this.#mapping.mapped || this.#aliased) this.#mapping = mappingOf(this.#array)!;
    return this.#mapping;
  }

  /**
   * Marks a Mutex acquired with { ownerDied: true } as consistent again (the caller has repaired what it
   * protects), so that its unlock() leaves it usable.
   */
  consistent(): void {
    this.#check();
    if (this.owner !== selfId()) throw mutexError(EPERM, 'consistent');
    const rc = native().mutex_consistent(this.#addr);
    if (rc === EINVAL) {
      throw new DevmapError('ERR_DEVMAP_MUTEX_CONSISTENT', 'consistent: the Mutex is not inconsistent (it was not acquired with ownerDied: true)');
    }
    if (rc < 0) throw mutexError(rc, 'consistent');
  }

  /** The kernel thread id of the holder (a process's pid for its main thread), or 0 when free. */
  get owner(): number {
    this.#check();
    return Atomics.load(this.#array, this.#lockIndex) & TID_MASK;
  }

  /**
   * Decodes the Mutex at byte `offset` of `target` (its Mapping, an ArrayBuffer, or a snapshot of the bytes)
   * without locking or writing: holder thread, owner-died, waiters (lib/sync/inspect.ts).
   */
  static inspect(target: Mapping | ArrayBuffer | ArrayBufferView, offset = 0): MutexInfo {
    return inspectMutex(target, offset);
  }

  /** The id that this thread's locks record (see owner). */
  static get threadId(): number {
    return selfId();
  }

  #check(): void {
    // A detached array's [[ArrayLength]] is 0; an attached one holds at least the Mutex's words (checked when
    // made). Read through the captured getter: an own `length` property must not make a dead address live.
    // unmap() leaves the caller's views attached over trash pages: the Mapping says whether they are gone.
    if (wordsOf(this.#array) === 0 || !this.#mappingNow().mapped) {
      throw new DevmapError('ERR_DEVMAP_UNMAPPED', `The Mutex at index ${this.#index} is gone: the pages under it have been unmapped`);
    }
  }
}
