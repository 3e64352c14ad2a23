/*
 * Open-or-create for a shared resource map: peers started in any order agree, without a start-up race, on
 * which one of them formats the region; the others wait until it is ready, then attach.
 *
 * 1. The words. Fresh shared memory is zero. Two header words decide (layout.ts):
 *
 *      word 2 (READY)      0 while unformatted, 1 once formatted — the last word a format writes
 *      words 22..23        the claim, one 64-bit value written by one compare-and-swap: the kernel thread id
 *                          of the claimant (low half) and the low 32 bits of its start time (high half);
 *                          0: nobody claimed
 *
 *    The claimant and its start time are one value, so no peer ever sees a new claimant beside an old start
 *    time (which would make a live claimant look dead). A thread id rather than a pid: a Worker terminated
 *    while it formats is gone although its process lives.
 *
 * 2. Claiming. A peer that finds READY 0 and no live claimant compare-and-swaps its own claim in. Exactly one
 *    wins; it formats the whole region (everything but the claim), writes READY last, wakes the peers asleep
 *    on READY, and is told `created: true`.
 *
 * 3. Waiting, and a claimant that dies. A peer that finds a claim and READY 0 sleeps on READY in short
 *    slices; between slices it asks whether the claimant still runs, by lib/identity.ts's rule (dead only on
 *    the kernel's word: no such thread, a zombie, another start time). A dead claim is taken over by a
 *    compare-and-swap from the dead claim to the peer's own — again exactly one wins — and the winner formats
 *    the region from the start, over whatever half a format the dead one left.
 *
 * 4. What is refused. A magic word that is neither 0 nor "SRMP" means the bytes are neither fresh memory
 *    nor a map: ERR_DEVMAP_SRMAP_BAD_MAGIC, never a format over somebody's data. A live claimant that does not
 *    finish within the caller's timeout (a stopped process) gives ERR_DEVMAP_SRMAP_TIMEOUT. Peers must all
 *    use openOrCreate(): create() formats unconditionally and takes no claim.
 */
import { DevmapError } from '../../errors';
import { isAlive, startTimeOf } from '../../identity';
import { notify, wait } from '../../sync/futex';
import { READY, SRMAP_MAGIC, W } from './layout';

/** How long a peer sleeps on READY before it looks at the claimant again. */
const SLICE_MS = 20;
const LOW32 = 0xffffffffn;

function claimOf(tid: number): bigint {
  return ((BigInt(startTimeOf(tid) ?? 0) & LOW32) << 32n) | BigInt(tid);
}

/** The claimant may still run (lib/identity.ts): its thread exists, not a zombie, with the recorded start time. */
function claimantRuns(claim: bigint): boolean {
  const tid = Number(claim & LOW32);
  if (!isAlive(tid, null)) return false;
  const start = startTimeOf(tid);
  return start === null || (BigInt(start) & LOW32) === claim >> 32n;
}

/**
 * Runs the protocol over a region's header (`header`: its first 32 words; `claim`: words 22..23) and
 * returns whether this thread formatted it (`format` writes the whole region, READY last).
 */
export function claimOrWait(header: Int32Array, claim: BigInt64Array, tid: number, timeoutMs: number, format: () => void): boolean {
  if (Atomics.load(header, W.READY) === READY) return false; // the common case: attach
  const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
  const mine = claimOf(tid);
  for (;;) {
    if (Atomics.load(header, W.READY) === READY) return false;
    const magic = Atomics.load(header, W.MAGIC);
    if (magic !== 0 && magic !== SRMAP_MAGIC) {
      throw new DevmapError('ERR_DEVMAP_SRMAP_BAD_MAGIC', 'openOrCreate: the region holds neither a shared resource map nor zeroed memory: refusing to format over it');
    }
    const current = Atomics.load(claim, 0);
    if (current === 0n || current === mine || !claimantRuns(current)) {
      // Free, dead, or this thread's own claim left by a format that threw: (re)claim it.
      if (Atomics.compareExchange(claim, 0, current, mine) !== current) continue; // another peer was first
      try {
        format();
      } catch (err) {
        Atomics.compareExchange(claim, 0, mine, 0n);
        throw err;
      }
      notify(header, W.READY);
      return true;
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) {
      throw new DevmapError(
        'ERR_DEVMAP_SRMAP_TIMEOUT',
        `openOrCreate: thread ${current & LOW32} claimed the region and has not finished formatting it within ${timeoutMs} ms`,
      );
    }
    wait(header, W.READY, 0, Math.min(SLICE_MS, remaining));
  }
}
