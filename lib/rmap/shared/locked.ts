/*
 * The locked operation (map.ts's essay, 1 and 3): every operation of a shared map runs through
 * Region.run(), which takes the robust Mutex, rolls back a dead holder's unfinished operation, runs the
 * operation with every write journaled, commits or rolls back, unlocks, and wakes the processes asleep on
 * the generation word when the operation made room.
 *
 * It is also where the region is treated as untrusted input (map.ts's essay, 8). Before each operation it
 * checks the header words this process indexes with (counts within their capacities, the layout unchanged,
 * an empty journal); before this process's first operation, and after every recovery, the whole store
 * (check.ts). An operation that meets a broken structure — a check that fails, a bounded walk that stops
 * (store.ts brokenLinks), any exception without a code, which only a corrupt store can cause — is rolled
 * back as far as its journal allows, the region is marked corrupt for every process (W.CORRUPT, then the
 * sleepers woken so that they see it), the lock is released, and ERR_DEVMAP_CORRUPT is thrown. Exceptions
 * with a code (argument errors, panics, a freed map) and whatever the caller's onWarning throws pass
 * through unchanged.
 */
import { DevmapError } from '../../errors';
import { checkStore } from '../check';
import type { Mapping } from '../../memory/mapping';
import { notify } from '../../sync/futex';
import { Mutex } from '../../sync/mutex';
import { ResourceMapPanic } from '../panic';
import { H32, type RmapStore } from '../store';
import { Journal } from './journal';
import { W, corrupt, type Layout } from './layout';

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
  /** The whole store was checked since this process attached or last recovered it. */
  #checked = false;
  /** Exceptions that pass through unchanged: the caller's own (onWarning's), and the "already marked" verdict. */
  readonly #passThrough = new WeakSet<object>();

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
    this.journal = new Journal(i32, f64, base, layout.journalCap, store, layout);
    this.ownersAt = layout.ownersAt / 8;
  }

  /** From now on every write of the store is journaled (after the map has formatted or adopted it). */
  journalStore(): void {
    this.store.hook = this.journal;
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
      this.#verify();
      const result = fn();
      commit = true;
      return result;
    } catch (err) {
      if (err instanceof ResourceMapPanic) commit = true;
      else if (this.#isCorruption(err)) throw this.#markCorrupt(err);
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
    const undone = this.journal.rollback();
    this.i32[W.RECOVERIES]++;
    this.mutex.consistent(); // even for a journal refused: the lock stays usable, and others learn of the mark
    this.bump = true; // wake every sleeper: the dead process may have been about to
    this.#checked = false;
    if (!undone) throw corrupt('the undo journal names words no operation writes (it was not replayed)');
  }

  /** Under the lock: the header words this process indexes with, and (once, or after a recovery) the store. */
  #verify(): void {
    const i32 = this.i32;
    const l = this.layout;
    const s = this.store;
    if (i32[W.CORRUPT] !== 0) throw this.#marked(); // read under the lock: a marking process held it
    if (
      i32[W.JCOUNT] !== 0 || !(i32[W.OWNERS_USED] >= 0 && i32[W.OWNERS_USED] <= l.owners) || i32[W.OWNERS_CAP] !== l.owners ||
      i32[W.JCAP] !== l.journalCap || i32[W.OWNERS_OFF] !== l.ownersAt || i32[W.STORE_OFF] !== l.storeAt || i32[W.TOTAL] !== l.total ||
      s.h32[H32.CAPACITY] !== s.lo.length || !(s.h32[H32.OVERFLOW] >= 0 && s.h32[H32.OVERFLOW] <= 2)
    ) {
      throw corrupt('the header changed under the map (counts past their capacities, or another layout)');
    }
    if (!this.#checked) {
      const problem = checkStore(s);
      if (problem !== null) throw corrupt(`the store is broken: ${problem}`);
      this.#checked = true;
    }
  }

  /** Marks err as the caller's own (thrown by its onWarning), so that it passes through unchanged. */
  theirs(err: unknown): void {
    if (typeof err === 'object' && err !== null) this.#passThrough.add(err);
  }

  #isCorruption(err: unknown): boolean {
    if (typeof err !== 'object' || err === null || this.#passThrough.has(err)) return false;
    const code = (err as { code?: unknown }).code;
    return code === 'ERR_DEVMAP_CORRUPT' || typeof code !== 'string';
  }

  /** Marks the region corrupt for every process and returns the error to throw. */
  #markCorrupt(cause: unknown): DevmapError {
    Atomics.store(this.i32, W.CORRUPT, 1);
    this.bump = true; // sleepers wake, retry, and see the mark
    const why = cause instanceof Error ? cause.message.replace(/^shared resource map: /, '') : String(cause);
    return corrupt(`${this.name} is corrupt (${why}); it is marked so for every process`, cause);
  }

  #marked(): DevmapError {
    const err = corrupt(`${this.name} is marked corrupt: a process found its structure broken`);
    this.#passThrough.add(err);
    return err;
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
