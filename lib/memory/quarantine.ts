/*
 * The trash-page rule: memory JavaScript could reach is never unmapped under it.
 *
 * Detaching a view is not enough to make its pages unreachable. Node's thread pool (crypto.randomFill(view, cb),
 * zlib.deflate(view, cb), fs.read(fd, view, …)) takes the raw pointer when the request starts and holds the
 * view object until it ends; ArrayBuffer.prototype.transfer (from any realm) and BYOB stream reads move the
 * backing store into a new ArrayBuffer devmap never sees. So whatever takes pages away from a Mapping — unmap,
 * a partial unmap, a shrinking resize of an object this process maps — first replaces them (mmap MAP_FIXED)
 * with private zero pages, read+write (the "trash page" of illumos seg_dev). An escaped pointer then reads
 * zeros and writes into memory nobody else sees, and never faults. The virtual range itself is given back
 * (munmap, or re-reserved inside a simulated address space) only when two things are known:
 *
 *  1. no Mapping of the lineage that is still mapped can make a new view of the range: every Mapping object
 *     the FinalizationRegistry watches (those still mapped at the end of the task that made them) has been
 *     collected. An unmapped Mapping makes no views, so it is not waited for;
 *  2. every backing store of the lineage's views has been freed: Node calls an external ArrayBuffer's finalizer
 *     only once no ArrayBuffer holds the store any more (after detach, collection, or the death of the buffer a
 *     transfer moved it into). The addon counts them per lineage (`storeCounts()`), see native/regions.cc. A
 *     view still attached (unmap leaves them attached) holds its store, so this also waits for every view.
 *
 * A lineage is one mmap and every piece a partial unmap cut from it: pieces inherit views, so they share the
 * wait. Ranges that wait are "quarantined": they keep a row in the addon's range table (so a Worker's teardown
 * gives them back) and are never handed to a new mapping. Once released, a range of a common size is kept,
 * still trash-mapped, for the next mapping of that size (MAP_FIXED over it costs less than munmap + mmap);
 * the pool is bounded (sizes, ranges, address space).
 *
 * A lineage that never made a view has nothing JavaScript could reach: its pages are unmapped at once.
 */
import { native } from '../native';

/** Row kinds of the addon's range table (native/regions.h). */
export const ROW_LIVE = 1;
export const ROW_TRASH = 2;
export const ROW_RESERVE = 4;
export const ROW_NESTED = 8;
/** Flag bit of a row: a SIGBUS (or our own shrink) took pages of it away. */
export const FLAG_TRUNCATED = 1;
/** Flag bit of a row: a held Mutex lives in it; a teardown leaves it mapped for the kernel's robust-list walk. */
export const FLAG_PINNED = 2;

/** Gives back a released range; the default munmaps it (and removes its row). */
export type Giver = (row: number, addr: number, len: number) => void;

/** Told when a range of a nested lineage starts waiting (held) and when it is given back (reservation.ts). */
export type HoldWatcher = (addr: number, len: number, held: boolean, lineage: Lineage) => void;

export interface Lineage {
  /** Mapping objects of this lineage that the FinalizationRegistry still waits for. */
  objects: number;
  /** The store counter its views count on (0: no view made yet). */
  counter: number;
  /** Quarantined ranges, flat: row, addr, len, … */
  trash: number[];
  /** Rows are ROW_NESTED (inside a reservation) and released through `give`. */
  nested: boolean;
  give: Giver | undefined;
  hold: HoldWatcher | undefined;
  /**
   * Views made in a nested lineage, by address (nested lineages only: a mapping placed over a held range
   * detaches the stale views there, reservation.ts).
   */
  views: { ref: WeakRef<ArrayBuffer>; addr: number; len: number }[] | undefined;
}

let tables: { flags: Int32Array; counts: Int32Array } | undefined;

function load(): { flags: Int32Array; counts: Int32Array } {
  const [flags, counts] = native().tables();
  return (tables = { flags: new Int32Array(flags), counts: new Int32Array(counts) });
}

/** The range table's flags words (process-wide): FLAG_TRUNCATED per row. */
export function rowFlags(): Int32Array {
  return (tables ?? load()).flags;
}

/** This environment's store counters; word 0 is the scratch word mmap_row leaves a row index in. */
export function storeCounts(): Int32Array {
  return (tables ?? load()).counts;
}

export function newLineage(nested = false, give?: Giver, hold?: HoldWatcher): Lineage {
  return { objects: 0, counter: 0, trash: [], nested, give, hold, views: nested ? [] : undefined };
}

const freeCounters: number[] = [];
let nextCounter = 1;

/** The lineage's store counter, made on its first view. */
export function counterOf(l: Lineage): number {
  if (l.counter === 0) l.counter = freeCounters.pop() ?? nextCounter++;
  return l.counter;
}

/** True when the lineage ever made a view (so its pages may be reachable after they are taken away). */
export function viewed(l: Lineage): boolean {
  return l.counter !== 0;
}

/** Replaces [addr, addr + len) with trash pages; a negative errno when the kernel refused. */
export function takeAway(addr: number, len: number): number {
  return native().trash(addr, len);
}

/** Detaches the views of a nested lineage that reach into [addr, addr + len) (pages a placement took over). */
export function detachViewsIn(l: Lineage, addr: number, len: number): void {
  for (const v of l.views ?? []) {
    const ab = v.ref.deref();
    if (ab !== undefined && v.addr < addr + len && v.addr + v.len > addr) native().detach(ab);
  }
}

/** Records [addr, addr + len), already trash, with its row, as waiting for release. */
export function quarantine(l: Lineage, row: number, addr: number, len: number): void {
  l.trash.push(row, addr, len);
  l.hold?.(addr, len, true, l);
}

/** Called by the FinalizationRegistry: one more Mapping object of the lineage is gone. */
export function objectGone(l: Lineage): void {
  l.objects--;
  tryRelease(l);
}

/**
 * Called after an unmap quarantined pages: releases them now if nothing can reach them, else waits (for the
 * lineage's registered Mapping objects, then by polling its store counter).
 */
export function settle(l: Lineage): void {
  tryRelease(l);
}

const waiting = new Set<Lineage>();
let poll: NodeJS.Timeout | undefined;

function tryRelease(l: Lineage): void {
  if (l.objects > 0 || l.trash.length === 0) return;
  if (l.counter !== 0 && storeCounts()[l.counter] > 0) {
    // A store moved out of devmap's views (transfer, BYOB) still holds the pages: wait for its finalizer.
    waiting.add(l);
    poll ??= setInterval(pollWaiting, 50).unref();
    return;
  }
  waiting.delete(l);
  const t = l.trash;
  l.trash = [];
  for (let i = 0; i < t.length; i += 3) give(l, t[i], t[i + 1], t[i + 2]);
  if (l.counter !== 0) {
    freeCounters.push(l.counter);
    l.counter = 0;
  }
}

function pollWaiting(): void {
  for (const l of waiting) tryRelease(l);
  if (waiting.size === 0 && poll !== undefined) {
    clearInterval(poll);
    poll = undefined;
  }
}

/*
 * The pool is bounded by lengths, ranges and address space, not by memory: a pooled range is trash pages that
 * were never touched since (MAP_NORESERVE, no page behind them). Reusing one costs one mmap(MAP_FIXED) where a
 * fresh range costs an mmap now and an munmap at its release, so a map/view/unmap loop that yields now and
 * then runs on pooled ranges: two system calls per cycle, as in C.
 */
const POOL_SIZES = 8;
const POOL_RANGES = 4096;
const POOL_BYTES = 256 * 1024 * 1024;
/** Released ranges kept trash-mapped for reuse, by length: flat row, addr pairs. */
const pool = new Map<number, number[]>();
let pooledRanges = 0;
let pooledBytes = 0;

function give(l: Lineage, row: number, addr: number, len: number): void {
  if (l.give !== undefined) {
    l.hold?.(addr, len, false, l);
    return l.give(row, addr, len);
  }
  const list = pool.get(len);
  if ((list !== undefined || pool.size < POOL_SIZES) && pooledRanges < POOL_RANGES && pooledBytes + len <= POOL_BYTES) {
    if (list === undefined) pool.set(len, [row, addr]);
    else list.push(row, addr);
    pooledRanges++;
    pooledBytes += len;
    return;
  }
  native().row_release(row, addr, len);
}

/**
 * A released range of exactly `len` bytes to map over (MAP_FIXED), as [row, addr]; undefined when none is
 * kept. The row stays the caller's: set it live once the new mapping is in place, or give it back.
 */
export function reuse(len: number): [row: number, addr: number] | undefined {
  const list = pool.get(len);
  if (list === undefined || list.length === 0) return undefined;
  const addr = list.pop()!;
  const row = list.pop()!;
  pooledRanges--;
  pooledBytes -= len;
  return [row, addr];
}

/** Puts a range reuse() handed out back into the pool (its mapping failed). */
export function unreuse(len: number, row: number, addr: number): void {
  give(newLineage(), row, addr, len);
}
