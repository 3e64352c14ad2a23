/*
 * Open-or-create for a Mutex: peers started in any order agree, without a start-up race, on which one of
 * them initializes the words, and the others attach once it has finished.
 *
 * 1. The words. A Mutex occupies 16 words: the C library's mutex at the start (40 bytes on x86-64, 48 on
 *    arm64, so at most words 0..11), then a claim in words 12..13 and the marker in word 15, which an
 *    initializer writes last ('MUTX'). Fresh shared memory is zero: no claim, no marker.
 *
 *      words 12..13  the claim, one 64-bit value written by one compare-and-swap: the kernel thread id of the
 *                    claimant (word 12) and the low 32 bits of its start time (word 13); 0: nobody claimed
 *      word 15       the marker: 0 while uninitialized, 'MUTX' once the mutex is ready
 *
 *    The claimant and its start time are one value so that no peer ever sees a new claimant beside an old
 *    start time (which would make a live claimant look dead).
 *
 * 2. Claiming. A peer that sees no marker and no claimant compare-and-swaps its thread id into word 12. Exactly
 *    one wins; it records its start time, zeroes the mutex words (a dead claimant may have left half of an
 *    initialization there), initializes the mutex, stores the marker and wakes the peers waiting on it. It is
 *    the one that is told `created: true`.
 *
 * 3. Waiting, and a claimant that dies. A peer that sees a claim but no marker waits on the marker word in
 *    short slices; between slices it asks whether the claimant still runs, by the rule of lib/identity.ts:
 *    dead only when the kernel says so (no such thread, a zombie, or a thread id reused by a thread with
 *    another start time). A thread id, not a process id, is recorded, so a Worker terminated mid-claim is
 *    seen as gone although its process lives. A dead claim is taken over with a compare-and-swap of the
 *    claimant word from the dead id to the peer's own: again exactly one peer wins, and it starts over at
 *    step 2. Comparing the low 32 bits of start times is exact enough: a reused id whose start time agrees
 *    in 32 bits of clock ticks is as unlikely as a pid reused within one tick.
 *
 * 4. What is refused. A marker word that holds neither 0 nor 'MUTX' means the words are neither fresh nor a
 *    Mutex: ERR_DEVMAP_MUTEX_CORRUPT, never an initialization over somebody's data. A live claimant that does
 *    not finish within the caller's timeout (a stopped process) gives ERR_DEVMAP_MUTEX_TIMEOUT.
 */
import { DevmapError } from '../errors';
import { isAlive, startTimeOf } from '../identity';
import { wait, notify } from './futex';

export const CLAIM_WORD = 12;
export const MARKER_WORD = 15;
/** 'MUTX': written last by an initializer. */
export const MARKER = 0x4d555458;
/** How long a peer sleeps on the marker before it looks at the claimant again. */
const SLICE_MS = 20;
const LOW32 = 0xffffffffn;

function corrupt(index: number, value: number): DevmapError {
  return new DevmapError(
    'ERR_DEVMAP_MUTEX_CORRUPT',
    `array[${index}] holds neither a Mutex nor zeroed memory (marker word 0x${(value >>> 0).toString(16)}): refusing to initialize over it`,
  );
}

/** The claim a thread makes: its id and the low 32 bits of its start time, as one 64-bit value. */
function claimOf(tid: number): bigint {
  const start = startTimeOf(tid);
  return (BigInt(start ?? 0) & LOW32) << 32n | BigInt(tid);
}

/** Whether the thread a claim names may still run (dead only on the kernel's word, lib/identity.ts). */
function claimantAlive(claim: bigint): boolean {
  const tid = Number(claim & LOW32);
  if (!isAlive(tid, null)) return false;
  const start = startTimeOf(tid);
  return start === null || (BigInt(start) & LOW32) === claim >> 32n;
}

/**
 * Runs the protocol above over the 16 words at array[index] (already validated as a Mutex location: `claim`
 * is a one-element view of its words 12..13) and returns whether this thread initialized them (`initialize`
 * writes the mutex; the marker is written here).
 */
export function claimOrAttach(
  array: Int32Array, index: number, claim: BigInt64Array, self: number, timeoutMs: number, initialize: () => void,
): boolean {
  if (Atomics.load(array, index + MARKER_WORD) === MARKER) return false; // the common case: attach
  const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
  const mine = claimOf(self);
  for (;;) {
    const marker = Atomics.load(array, index + MARKER_WORD);
    if (marker === MARKER) return false;
    if (marker !== 0) throw corrupt(index, marker);
    const current = Atomics.load(claim, 0);
    if (current === 0n || !claimantAlive(current)) {
      if (Atomics.compareExchange(claim, 0, current, mine) === current) {
        initializeClaimed(array, index, claim, mine, initialize);
        return true;
      }
      continue; // another peer claimed (or took over) first: look again
    }
    if (current === mine) {
      // This thread claimed and did not finish: only possible if its initialization threw. Start again.
      Atomics.compareExchange(claim, 0, mine, 0n);
      continue;
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) {
      throw new DevmapError(
        'ERR_DEVMAP_MUTEX_TIMEOUT',
        `Mutex.openOrCreate: thread ${current & LOW32} claimed array[${index}] and has not finished initializing it within ${timeoutMs} ms`,
      );
    }
    wait(array, index + MARKER_WORD, 0, Math.min(SLICE_MS, remaining));
  }
}

function initializeClaimed(array: Int32Array, index: number, claim: BigInt64Array, mine: bigint, initialize: () => void): void {
  try {
    for (let i = 0; i < CLAIM_WORD; i++) Atomics.store(array, index + i, 0);
    initialize();
  } catch (err) {
    Atomics.compareExchange(claim, 0, mine, 0n);
    throw err;
  }
  Atomics.store(array, index + MARKER_WORD, MARKER);
  notify(array, index + MARKER_WORD);
}
