/*
 * wait / waitAsync / notify: Atomics.wait and friends for words of shared mappings, across processes.
 *
 * 1. What a wait is. Like Atomics.wait, wait(array, index, expected) returns 'not-equal' at once if the word
 *    does not hold `expected`, and otherwise sleeps until notified or until the timeout ('timed-out'). Under
 *    it is a futex(2) without FUTEX_PRIVATE_FLAG, so the kernel keys the wait by (memory object, offset): a
 *    notify through any mapping of the same object, in any process or thread, wakes it.
 *
 * 2. 'ok' means "look again". A wait also ends 'ok' when it sees that the word no longer holds `expected`
 *    (while spinning, or because the value changed between its check and its sleep), and, as with any futex,
 *    wakeups may be spurious. Protocols built on it must store first, notify second, and re-check the word
 *    after every 'ok' — which is what correct Atomics.wait code does anyway.
 *
 * 3. Spinning. A sleeping waiter costs its partner a futex wake (a system call plus a context switch, several
 *    microseconds); a waiter that polls the word for a moment first sees a prompt partner's store within
 *    nanoseconds. wait() therefore polls the word getSpin().iterations times (with the CPU's pause
 *    instruction, in C) before it sleeps. setSpin({ iterations: 0 }) turns that off. waitAsync never spins:
 *    it must not hold the event loop.
 *
 *    Spinning only pays if the partner does not make a system call either: a notify() is a FUTEX_WAKE, a
 *    few hundred nanoseconds even when nobody sleeps. The `waiters` option removes it from the fast path:
 *    give wait, waitAsync and notify the index of a second word that counts sleepers. A waiter increments
 *    it just before it sleeps (after spinning) and decrements it after; notify reads it with a full fence
 *    after the caller's store and skips the system call when it is 0. Either the notifier sees the count,
 *    or the kernel's check sees the new value: no wakeup is lost. (A process killed while asleep leaves the
 *    count too high, which only costs a system call per notify.)
 *
 * 4. waitAsync. A pending async wait is registered with a native waiter thread that sleeps in futex_waitv(2)
 *    on up to 127 words at once. More pending words start more threads; a thread exits when it has nothing
 *    left to wait for, except the last, which stays idle for the next wait (at most one idle thread).
 *    libuv's thread pool is never used, so any number of pending waits leave fs, dns and crypto work
 *    running. Completions come back through one thread-safe function. Details: native/waitv.cc.
 *    - Async waits of one thread on one word share a kernel wait: a notify that reaches them ends all of
 *      them (and counts as one in notify's result). Extra wakeups are allowed by (2).
 *    - The kernel check happens on the waiter thread, a moment after the JS-side check, as if the thread
 *      that called futex(2) had been preempted in between; a changed value is seen and ends the wait 'ok'.
 *    - Timeouts are kept by the waiter thread (an absolute CLOCK_MONOTONIC deadline), not by JS timers.
 *    - Cancellation by AbortSignal is exact: either the entry is removed before the thread completes it
 *      (the promise rejects with signal.reason), or the thread completed it first and that result is used.
 *      Nothing is left behind either way.
 *    - Lifetime: a pending wait keeps the event loop alive, as a pending timer does (give it a timeout or a
 *      signal if it may never end); with nothing pending the loop is free to exit. At environment teardown
 *      (process exit, worker termination) the threads are stopped and joined; pending promises never settle.
 *    - Unmapping while a wait is pending is safe: the waiter thread waits through its own one-page alias of
 *      the word's page (mremap with old_size 0), never through the caller's address, and the wait (on the memory object) still ends
 *      by notify from a process or mapping that has the object, by its timeout, or by its signal. The
 *      pending wait also holds the array, so a Mapping is never garbage-collected under it.
 */
import { DevmapError, integer, options, rangeError, systemError, typeError } from '../errors';
import { native } from '../native';
import { mapCountError, takeMapSlots } from '../memory/map-count';
import { address, int32, tagOf, timeoutMs, wordsOf } from './word';

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

const EAGAIN = -11;
const EINVAL = -22;
const ETIMEDOUT = -110;
const ENOSYS = -38;
const EFAULT = -14;
const CANCELLED = 2;
const INT32_MAX = 0x7fffffff;

// --- spinning ------------------------------------------------------------------------------------------------

export interface SpinOptions {
  /** Polls of the word (each one pause instruction) before wait() sleeps; 0 turns spinning off. */
  iterations?: number;
}

/**
 * The default: a few microseconds of polling (a pause costs ~20–40 ns on current x86-64 parts), about one
 * futex round trip: a partner that answers at once is caught, one that does not costs little.
 */
export const DEFAULT_SPIN_ITERATIONS = 200;
const MAX_SPIN_ITERATIONS = 1_000_000;
let spinIterations = DEFAULT_SPIN_ITERATIONS;

/** Sets how long wait() polls before it sleeps, for this thread (each worker has its own setting). */
export function setSpin(opts: SpinOptions): void {
  if (opts === undefined) throw typeError('an object', 'options', opts);
  const o = options<SpinOptions>(opts, 'options', ['iterations']);
  if (o.iterations !== undefined) spinIterations = integer(o.iterations, 'options.iterations', 0, MAX_SPIN_ITERATIONS);
}

export function getSpin(): Required<SpinOptions> {
  return { iterations: spinIterations };
}

// --- wait / notify -------------------------------------------------------------------------------------------

function misaligned(index: unknown): RangeError {
  const err = new RangeError(`Expected an index whose word is 4-byte aligned in memory for index but received ${String(index)}`);
  (err as RangeError & { code: string }).code = 'ERR_OUT_OF_RANGE';
  return err;
}

export interface SyncWaitOptions {
  /** Milliseconds; default: no timeout. */
  timeout?: number;
  /** Index in the same array of a sleeper-count word shared with notify({ waiters }); see the essay above. */
  waiters?: number;
}

/**
 * options(), with the key check done once per options object: wait and notify are called in tight loops
 * with the same object, and listing its keys every time would allocate. The values are read every time.
 */
const checkedOptions = new WeakSet<object>();
function hotOptions<T extends object>(value: unknown, name: string, known: readonly string[]): Partial<T> {
  if (typeof value === 'object' && value !== null && checkedOptions.has(value)) return value as Partial<T>;
  const o = options<T>(value, name, known);
  checkedOptions.add(o);
  return o;
}

function waitersIndex(array: Int32Array, value: unknown, index: number, name: string): number {
  if (value === undefined) return -1;
  const w = integer(value, name, 0, wordsOf(array) - 1);
  if (w === index) throw rangeError('an index other than the waited word', name, value);
  return w;
}

/**
 * Sleeps while `array[index] === expected` (after spinning briefly, see setSpin), until notified or until the
 * timeout has passed. `timeout` is milliseconds (default: none) or an options object. Blocks the calling
 * thread, like Atomics.wait.
 */
export function wait(array: Int32Array, index: number, expected: number, timeout?: number | SyncWaitOptions): WaitResult {
  // Whatever the caller controls (option getters may unmap or resize) is read first, once, into locals; the
  // address is derived after, and nothing but the addon runs between it and the system call.
  let rawTimeout: unknown = timeout;
  let rawWaiters: unknown;
  let timeoutName = 'timeout';
  if (timeout !== null && typeof timeout === 'object') {
    const o = hotOptions<SyncWaitOptions>(timeout, 'options', ['timeout', 'waiters']);
    rawTimeout = o.timeout;
    rawWaiters = o.waiters;
    timeoutName = 'options.timeout';
  }
  const ms = timeoutMs(rawTimeout, timeoutName);
  expected = int32(expected, 'expected');
  const addr = address(array, index);
  const waiters = waitersIndex(array, rawWaiters, index, 'options.waiters');
  const rc = native().futex_wait_spin(addr, expected >>> 0, ms, spinIterations, waiters < 0 ? 0 : addr + 4 * (waiters - index));
  if (rc === 0) return 'ok';
  if (rc === EAGAIN) return 'not-equal';
  if (rc === ETIMEDOUT) return 'timed-out';
  if (rc === EINVAL) throw misaligned(index);
  throw systemError(rc, 'futex');
}

export interface NotifyOptions {
  /** Index of the sleeper-count word the waiters were given: when it reads 0, no system call is made. */
  waiters?: number;
}

/**
 * Wakes up to `count` (default: all) threads or processes sleeping on `array[index]` and returns how many
 * the kernel woke. Waiters that are spinning, and the async waits of one thread on this word beyond the
 * first, are woken without being counted.
 */
export function notify(array: Int32Array, index: number, count: number = Infinity, opts?: NotifyOptions): number {
  const n = count === Infinity ? INT32_MAX : integer(count, 'count', 0, INT32_MAX);
  const rawWaiters = opts === undefined ? undefined : hotOptions<NotifyOptions>(opts, 'options', ['waiters']).waiters;
  const addr = address(array, index);
  if (rawWaiters !== undefined) {
    const waiters = waitersIndex(array, rawWaiters, index, 'options.waiters');
    // A read-modify-write is a full fence: the caller's store to array[index] is visible before we read.
    if (Atomics.add(array, waiters, 0) === 0) return 0;
  }
  const rc = native().futex_wake_addr(addr, n);
  if (rc < 0) throw rc === EINVAL ? misaligned(index) : systemError(rc, 'futex');
  return rc;
}

// --- waitAsync -----------------------------------------------------------------------------------------------

export interface WaitAsyncOptions {
  /** Milliseconds; default: no timeout. */
  timeout?: number;
  /** Aborting rejects the promise with signal.reason and removes the wait. */
  signal?: AbortSignal;
  /** Index of a sleeper-count word (see wait): counted from registration until the wait settles. */
  waiters?: number;
}

interface Pending {
  resolve(result: WaitResult): void;
  reject(err: unknown): void;
  /** Keeps the array, hence its Mapping, reachable while the wait is pending. */
  array: Int32Array;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** The sleeper-count word to decrement when the wait settles, or -1. */
  waiters: number;
}

const pending = new Map<number, Pending>();
let initialized = false;

function settle(p: Pending, rc: number): void {
  if (p.waiters >= 0 && wordsOf(p.array) > 0) Atomics.sub(p.array, p.waiters, 1);
  if (p.signal !== undefined && p.onAbort !== undefined) p.signal.removeEventListener('abort', p.onAbort);
  if (rc === 0) p.resolve('ok');
  else if (rc === 1) p.resolve('timed-out');
  else if (rc === EFAULT) p.reject(truncated());
  else p.reject(systemError(rc, 'futex_waitv'));
}

function truncated(): DevmapError {
  return new DevmapError(
    'ERR_DEVMAP_TRUNCATED',
    'waitAsync: the page under the word is gone (the shared object was made smaller while the wait was pending)',
  );
}

function onComplete(batch: number[]): void {
  for (let i = 0; i < batch.length; i += 2) {
    const p = pending.get(batch[i]);
    if (p === undefined) continue;
    pending.delete(batch[i]);
    settle(p, batch[i + 1]);
  }
}

function init(): void {
  if (native().waitv_init(onComplete) === ENOSYS) {
    throw new DevmapError('ERR_DEVMAP_UNSUPPORTED_PLATFORM', 'waitAsync needs futex_waitv(2), which this kernel lacks (Linux 5.16 or later)');
  }
  initialized = true;
}

/**
 * Waits without blocking: resolves 'not-equal' if `array[index] !== expected` now, otherwise 'ok' when
 * notified (or when the word is seen to change), or 'timed-out'. Rejects with `signal.reason` if aborted first.
 */
export function waitAsync(array: Int32Array, index: number, expected: number, opts?: WaitAsyncOptions): Promise<WaitResult> {
  // Options first (their getters, the signal's checks), then the address: see wait().
  expected = int32(expected, 'expected');
  const o = options<WaitAsyncOptions>(opts, 'options', ['timeout', 'signal', 'waiters']);
  const rawTimeout = o.timeout;
  const rawWaiters = o.waiters;
  const signal = o.signal;
  const ms = timeoutMs(rawTimeout, 'options.timeout');
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('an AbortSignal', 'options.signal', signal);
  if (signal?.aborted) return Promise.reject(signal.reason);
  const addr = address(array, index);
  const waiters = waitersIndex(array, rawWaiters, index, 'options.waiters');
  if (array[index] !== expected) return Promise.resolve('not-equal');
  if (ms === 0) return Promise.resolve('timed-out');
  if (!initialized) init();
  // A pending wait may sleep on an alias of the word's page (one per word): a mapping, so it takes its entry.
  if (!takeMapSlots(1)) return Promise.reject(mapCountError('waitAsync()'));
  if (waiters >= 0) Atomics.add(array, waiters, 1);
  const id = native().waitv_add(addr, expected >>> 0, ms, tagOf(array));
  if (id < 0) {
    if (waiters >= 0) Atomics.sub(array, waiters, 1);
    return Promise.reject(systemError(id, 'mremap')); // alignment was checked above; e.g. EINVAL on hugetlb
  }
  return new Promise<WaitResult>((resolve, reject) => {
    const p: Pending = { resolve, reject, array, signal, onAbort: undefined, waiters };
    if (signal !== undefined) {
      p.onAbort = () => {
        if (!pending.delete(id)) return;
        const rc = native().waitv_cancel(id);
        if (rc !== CANCELLED) return settle(p, rc);
        if (p.waiters >= 0 && wordsOf(array) > 0) Atomics.sub(array, p.waiters, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', p.onAbort, { once: true });
    }
    pending.set(id, p);
  });
}

/** @internal Waiter threads alive or not yet joined, for tests and diagnostics. */
export function waiterThreads(): number {
  return native().waitv_threads();
}
