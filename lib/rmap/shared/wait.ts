/*
 * rmalloc_wait across processes (map.ts's essay, 5): try under the lock; on failure sleep on the
 * generation word read under that same lock, so that any free in between makes the sleep return at once;
 * retry. Every sleeper retries after every free (broadcast, SPEC C.5).
 */
import { waitAsync } from '../../sync/futex';
import { abortError } from '../map';
import { W } from './layout';

/** What the wait loop needs of the map. */
export interface WaitingMap {
  /**
   * One attempt under the lock: the index allocated, or 0 (then `seen` holds the generation read under the
   * lock). `slept` is true for every attempt after the first.
   */
  attempt(size: number, slept: boolean): number;
  readonly seen: number;
  /** Counts an abort under the lock (when the map is still live). */
  countAbort(): void;
}

export async function waitForRoom(map: WaitingMap, i32: Int32Array, size: number, signal: AbortSignal | undefined): Promise<number> {
  let slept = false;
  for (;;) {
    const got = map.attempt(size, slept);
    if (got !== 0) return got;
    slept = true;
    try {
      await waitAsync(i32, W.GENERATION, map.seen, { signal, waiters: W.SLEEPERS });
    } catch (err) {
      if (signal?.aborted) {
        map.countAbort();
        throw abortError(signal);
      }
      throw err;
    }
  }
}
