/*
 * The locked operation (map.ts's essay, 1 and 3): every operation of a shared map runs through
 * Region.run(), which takes the robust Mutex, rolls back a dead holder's unfinished operation, runs the
 * operation with every write journaled, commits or rolls back, unlocks, and wakes the processes asleep on
 * the generation word when the operation made room.
 */
import { DevmapError } from '../../errors';
import type { Mapping } from '../../memory/mapping';
import { notify } from '../../sync/futex';
import { Mutex } from '../../sync/mutex';
import { ResourceMapPanic } from '../panic';
import type { RmapStore } from '../store';
import { Journal } from './journal';
import { W, type Layout } from './layout';

const SLEEPERS_OPTS = { waiters: W.SLEEPERS };

/** One process's handle on a map's region: its views, its lock, its journal, and the operation in progress. */
export class Region {
  readonly journal: Journal;
  /** Float64 index of owner record 0. */
  readonly ownersAt: number;
  /** 1 while an operation of this process runs (operations nest: onWarning and picture() call the map). */
  depth = 0;
  /** The operation made room (or recovered): bump the generation and wake the sleepers when it ends. */
  bump = false;

  constructor(
    readonly mapping: Mapping,
    /** Byte offset of the region in the mapping. */
    readonly base: number,
    readonly i32: Int32Array,
    readonly f64: Float64Array,
    readonly mutex: Mutex,
    readonly store: RmapStore,
    readonly layout: Layout,
    readonly name: string,
  ) {
    this.journal = new Journal(i32, f64, base, layout.journalCap, store);
    this.ownersAt = layout.ownersAt / 8;
    store.hook = this.journal;
  }

  /** Runs fn under the lock, journaled; commits when it returns (or panics), rolls back when it throws. */
  run<T>(fn: () => T): T {
    if (this.depth > 0) return fn(); // re-entrant: picture() → freeRanges(), onWarning → the map
    if (this.i32.length === 0 || !this.mapping.mapped) {
      throw new DevmapError('ERR_DEVMAP_UNMAPPED', `shared resource map ${this.name}: its mapping has been unmapped`);
    }
    const died = this.mutex.lock().ownerDied;
    this.depth = 1;
    let commit = false;
    try {
      if (died) this.#recover();
      const result = fn();
      commit = true;
      return result;
    } catch (err) {
      if (err instanceof ResourceMapPanic) commit = true;
      throw err;
    } finally {
      if (commit) this.i32[W.JCOUNT] = 0;
      else this.journal.rollback();
      const bump = this.bump;
      if (bump) {
        this.bump = false;
        Atomics.add(this.i32, W.GENERATION, 1);
      }
      this.depth = 0;
      this.mutex.unlock();
      // The add above is a full fence: either this load sees a sleeper's count, or its futex check sees the
      // new generation (futex.ts, 3). Skipping notify() when nobody sleeps saves its checks and system call.
      if (bump && Atomics.load(this.i32, W.SLEEPERS) !== 0) notify(this.i32, W.GENERATION, Infinity, SLEEPERS_OPTS);
    }
  }

  /** The previous holder died: undo its unfinished operation. */
  #recover(): void {
    this.journal.rollback();
    this.i32[W.RECOVERIES]++;
    this.mutex.consistent();
    this.bump = true; // wake every sleeper: the dead process may have been about to
  }

  /** A journaled write of a Float64 word of the region (header counters, owner records). */
  w64(i: number, v: number): void {
    this.journal.before64(this.f64, i);
    this.f64[i] = v;
  }

  /** A journaled write of an Int32 word of the region. */
  w32(i: number, v: number): void {
    this.journal.before32(this.i32, i);
    this.i32[i] = v;
  }
}
