/*
 * The trash-page rule: memory JavaScript could reach is never unmapped under it.
 *
 * Detaching a view is not enough to make its pages unreachable. Node's thread pool (crypto.randomFill(view, cb),
 * zlib.deflate(view, cb), fs.read(fd, view, …)) takes the raw pointer when the request starts and holds the
 * view object until it ends; ArrayBuffer.prototype.transfer (from any realm) and BYOB stream reads move the
 * backing store into a new ArrayBuffer devmap never sees. So whatever takes pages away from a Mapping — unmap,
 * a partial unmap, a shrinking resize of an object this process maps — first makes them harmless without
 * unmapping them: it replaces them (mmap MAP_FIXED) with private zero pages, read+write (the "trash page" of
 * illumos seg_dev), or, for a plain shared anonymous mapping (below), punches its object empty in place. An
 * escaped pointer then reads zeros and writes into memory no other mapping sees, and never faults. The virtual
 * range itself is given back (munmap, or re-reserved inside a simulated address space) only when two things
 * are known:
 *
 *  1. no Mapping of the lineage that is still mapped can make a new view of the range: every Mapping object
 *     the FinalizationRegistry watches (those still mapped at the end of the task that made them) has been
 *     collected. An unmapped Mapping makes no views, so it is not waited for;
 *  2. every backing store of the lineage's views has been freed: Node calls an external ArrayBuffer's finalizer
 *     only once no ArrayBuffer holds the store any more (after detach, collection, or the death of the buffer a
 *     transfer moved it into). The addon counts them per lineage (`storeCounts()`), see native/regions.cc. A
 *     view still attached (unmap leaves them attached) holds its store, so this also waits for every view.
 *     The addon also logs each counter that falls to zero, so a range is released at the next mapping after
 *     its last store went, not at the next poll.
 *
 * A lineage is one mmap and every piece a partial unmap cut from it: pieces inherit views, so they share the
 * wait. Ranges that wait are "quarantined": they keep a row in the addon's range table (so a Worker's teardown
 * gives them back) and are never handed to a new mapping. Once released, a range of a common size is kept for
 * the next mapping of that size; the pool is bounded (sizes, ranges, address space).
 *
 * Plain shared anonymous mappings (mapAnonymous, shared, read+write, at most PUNCH_LIMIT, no populate, no huge
 * pages, never protected, advised, locked or cut) cost more to make and destroy than anything else here: the kernel
 * builds a shmem object for each and tears it down at munmap. Their unmap punches the object empty instead (madvise
 * MADV_REMOVE: its pages are freed and read as zeros; the mapping stays, so nothing can fault), and the pool keeps
 * the range with its object, punched once more at the release (a store that escaped may have written into it until
 * then; after the release nothing can). The next plain mapping of that length takes it as it is, with no system
 * call at all. That object is shared with no one: devmap made it and mapped it once, the views that reached it are
 * gone (the release waited for them), and a child could only hold it by fork — so the addon counts forks
 * (pthread_atfork; libuv's spawn forks before it execs) and a range whose object was made before the latest fork
 * began is mapped over with a new object instead. Whatever else a mapping carries that would pass to the next user
 * (advice such as MADV_DONTFORK, a lock, another protection, a truncation) makes it not plain, and its pages get
 * trash.
 *
 * A lineage that never made a view has nothing JavaScript could reach: its pages are given back at once (a
 * plain one is punched and pooled, anything else unmapped).
 */
import { native } from '../native';
import { MADV_DONTNEED } from './constants';
import { MAP_COUNT_LIMIT, spareMapSlots, spendMapSlots } from './map-count';
import { storeCounts } from './tables';

export { forkCount, rowFlags, storeCounts } from './tables';

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
  /** Quarantined ranges, flat: row, addr, len, born (see `quarantine`), … */
  trash: number[];
  /** Rows are ROW_NESTED (inside a reservation) and released through `give`. */
  nested: boolean;
  give: Giver | undefined;
  hold: HoldWatcher | undefined;
}

export function newLineage(nested = false, give?: Giver, hold?: HoldWatcher): Lineage {
  return { objects: 0, counter: 0, trash: [], nested, give, hold };
}

const ZERO_RING = 1 << 16;
/** Counters are words 2 .. COUNTER_END of storeCounts(); past that, lineages share the last one (and wait for each other). */
const COUNTER_END = (1 << 20) - ZERO_RING;
const freeCounters: number[] = [];
let nextCounter = 2;
/** The lineage of each store counter in use (the last one, shared, keeps the latest). */
const lineageOf: (Lineage | undefined)[] = [];

/** The lineage's store counter, made on its first view. */
export function counterOf(l: Lineage): number {
  if (l.counter === 0) {
    l.counter = freeCounters.pop() ?? (nextCounter < COUNTER_END ? nextCounter++ : COUNTER_END - 1);
    lineageOf[l.counter] = l;
  }
  return l.counter;
}

/** True when the lineage ever made a view (so its pages may be reachable after they are taken away). */
export function viewed(l: Lineage): boolean {
  return l.counter !== 0;
}

/** Replaces [addr, addr + len) with trash pages; a negative errno when the kernel refused. */
export function takeAway(addr: number, len: number): number {
  spendMapSlots(2); // (over the middle of a mapping, trash splits it in three)
  return native().trash(addr, len);
}

/**
 * Records [addr, addr + len), already taken away, with its row, as waiting for release. `born` is -1 for trash
 * pages, or the fork count at which the shared anonymous object still mapped there (punched) was made.
 */
export function quarantine(l: Lineage, row: number, addr: number, len: number, born = -1): void {
  l.trash.push(row, addr, len, born);
  if (born >= 0) {
    waitingObjects++;
    waitingBytes += len;
  }
  l.hold?.(addr, len, true, l);
}

/**
 * Punched objects waiting in quarantine. Each is a mapping of its own (the kernel never merges two shmem
 * mappings), where trash pages merge with the trash beside them: a loop that maps, views and unmaps without
 * ever yielding (so no store is freed) would otherwise fill the process's mapping table (vm.max_map_count) with
 * them. And each keeps the commit charge of its mmap while it waits (trash is MAP_NORESERVE), which counts where
 * the kernel does not overcommit. Past WAITING_OBJECTS or WAITING_BYTES, unmap trash-maps plain mappings like any
 * other (mayPunch()).
 */
let waitingObjects = 0;
let waitingBytes = 0;
const WAITING_OBJECTS = Math.min(4096, Math.max(64, Math.floor(MAP_COUNT_LIMIT / 16)));
const WAITING_BYTES = 256 * 1024 * 1024;

/** True while one more punched object of `len` bytes may wait in quarantine. */
export function mayPunch(len: number): boolean {
  return waitingObjects < WAITING_OBJECTS && waitingBytes + len <= WAITING_BYTES;
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
    // A view (or a store moved out of one: transfer, BYOB) still holds the pages: wait for its finalizer.
    waiting.add(l);
    poll ??= setInterval(pollWaiting, 50).unref();
    return;
  }
  waiting.delete(l);
  if (stranded.length > 0) retryStranded();
  const t = l.trash;
  l.trash = [];
  for (let i = 0; i < t.length; i += 4) {
    if (t[i + 3] >= 0) {
      waitingObjects--;
      waitingBytes -= t[i + 2];
    }
    give(l, t[i], t[i + 1], t[i + 2], t[i + 3]);
  }
  if (l.counter !== 0) {
    if (lineageOf[l.counter] === l) lineageOf[l.counter] = undefined;
    freeCounters.push(l.counter);
    l.counter = 0;
  }
}

/** How many zeroings of storeCounts()[1] releaseFreed() has looked at. */
let zeroSeen = 0;

/**
 * Releases the waiting lineages whose last store was freed since the last look (the addon logs each counter
 * that falls to zero), so a range is pooled as soon as it can be, not at the next poll.
 */
function releaseFreed(): void {
  const counts = storeCounts();
  const now = counts[1];
  const n = (now - zeroSeen) | 0;
  if (n === 0) return;
  const from = zeroSeen;
  zeroSeen = now;
  if (n > ZERO_RING) return pollWaiting(); // the log wrapped: look at every one
  const ring = counts.length - ZERO_RING;
  for (let i = 0; i < n; i++) {
    const l = lineageOf[counts[ring + ((from + i) & (ZERO_RING - 1))]];
    if (l !== undefined && waiting.has(l)) tryRelease(l);
  }
}

function pollWaiting(): void {
  for (const l of waiting) tryRelease(l);
  if (waiting.size === 0 && poll !== undefined) {
    clearInterval(poll);
    poll = undefined;
  }
}

/**
 * The largest plain mapping unmap punches instead of trash-mapping: a punched object keeps the commit charge of
 * its mmap while it waits (trash is MAP_NORESERVE), and one this large is unlikely to be mapped again soon.
 */
export const PUNCH_LIMIT = 16 * 1024 * 1024;

/*
 * The pool is bounded by lengths, ranges, objects and address space, not by memory: a pooled range is trash pages
 * or a punched object, untouched since the last JavaScript that could reach it was gone (MAP_NORESERVE trash, or a
 * shmem object with no page). Punched objects are bounded on their own: each is a mapping the kernel never merges
 * with its neighbours (it counts against vm.max_map_count, 65530 by default) and a small kernel object, where
 * adjacent trash ranges merge into one mapping. Reusing trash costs one mmap(MAP_FIXED) where a fresh range costs
 * an mmap now and an munmap at its release; reusing a punched object costs nothing. So a map/view/unmap loop that
 * yields now and then (releases happen between tasks: Node frees stores from an immediate) runs on pooled ranges
 * with two madvise calls per cycle (one at unmap, one at release; one alone when no view was made), where C makes
 * an mmap and an munmap.
 */
const POOL_SIZES = 8;
const POOL_RANGES = 4096;
const POOL_OBJECTS = 2048;
const POOL_BYTES = 256 * 1024 * 1024;
/** Released ranges kept for reuse, by length: flat row, addr, born triples. */
const pool = new Map<number, number[]>();
let pooledRanges = 0;
let pooledObjects = 0;
let pooledBytes = 0;

/** Gives back a released range: pooled, or unmapped. `empty`: a punched object nothing could write since. */
function give(l: Lineage, row: number, addr: number, len: number, born: number, empty = false): void {
  if (l.give !== undefined) {
    l.hold?.(addr, len, false, l);
    return l.give(row, addr, len);
  }
  const list = pool.get(len);
  const fits = (list !== undefined || pool.size < POOL_SIZES) && pooledRanges < POOL_RANGES && pooledBytes + len <= POOL_BYTES;
  if (fits && (born < 0 || pooledObjects < POOL_OBJECTS)) {
    // A store that escaped may have written into a punched object until its release (nothing can after it):
    // punch it once more, so the pool holds no page and the next Mapping starts from zeros.
    if (born >= 0 && !empty && native().punch(row, addr, len, ROW_TRASH) < 0) {
      native().row_release(row, addr, len);
      return;
    }
    if (list === undefined) pool.set(len, [row, addr, born]);
    else list.push(row, addr, born);
    pooledRanges++;
    if (born >= 0) pooledObjects++;
    pooledBytes += len;
    return;
  }
  if (born < 0) return releaseTrash(row, addr, len);
  native().row_release(row, addr, len); // (an object's own mapping: unmapping it splits nothing)
}

/**
 * Trash pages given back while the mapping table is more than half full (map-count.ts, spareMapSlots), still
 * mapped, with their rows: adjacent trash merges into one mapping, so unmapping a range out of the middle of it
 * would split it — a loop that keeps every other view and drops the rest would fill the table at the release.
 * They stay trash, their pages dropped (address space only), until the table has room again. Flat row, addr,
 * len triples.
 */
const stranded: number[] = [];

function releaseTrash(row: number, addr: number, len: number): void {
  // Address space is bounded too: past STRANDED_BYTES, unmapped whatever the table (the kernel may refuse).
  if (spareMapSlots(1) || strandedBytes + len > STRANDED_BYTES) {
    if (native().row_release(row, addr, len) === 0) {
      if (stranded.length > 0) retryStranded();
      return;
    }
    row = native().row_add(addr, len, ROW_TRASH); // the kernel refused (its table is full): still trash, with a row
  }
  native().madvise(addr, len, MADV_DONTNEED); // (what stale views wrote there: no page is kept)
  stranded.push(row, addr, len);
  strandedBytes += len;
}

/** The address space stranded trash may hold (a fraction of the 128 TiB a process has). */
const STRANDED_BYTES = 2 ** 40;
let strandedBytes = 0;

/** Unmaps stranded trash while the budget has room (a few at a time: this runs at every release). */
function retryStranded(): void {
  for (let k = 0; k < 64 && stranded.length > 0; k++) {
    if (!spareMapSlots(1)) return;
    const len = stranded.pop()!;
    const addr = stranded.pop()!;
    native().row_release(stranded.pop()!, addr, len);
    strandedBytes -= len;
  }
}

/**
 * A released range of exactly `len` bytes, as [row, addr, born]; undefined when none is kept. `born` ≥ 0: a
 * shared anonymous object is still mapped there (read+write, punched empty since nothing could reach it), made
 * at that fork count; -1: trash pages, to map over (MAP_FIXED). The row stays the caller's: set it live once the
 * new mapping is in place, or give it back.
 */
export function reuse(len: number): [row: number, addr: number, born: number] | undefined {
  if (!pool.get(len)?.length) releaseFreed();
  const list = pool.get(len);
  if (list === undefined || list.length === 0) return undefined;
  const born = list.pop()!;
  const addr = list.pop()!;
  const row = list.pop()!;
  pooledRanges--;
  if (born >= 0) pooledObjects--;
  pooledBytes -= len;
  return [row, addr, born];
}

/** The lineage of ranges given back directly (no views to wait for): they go to the pool or are unmapped. */
const DIRECT = newLineage();

/**
 * @internal Releases what can be released now and gives every pooled range back to the kernel (munmap): for
 * leak checks, which count the shared anonymous objects the pool keeps mapped on purpose.
 */
export function emptyPool(): void {
  pollWaiting();
  for (const [len, list] of pool) {
    for (let i = 0; i < list.length; i += 3) native().row_release(list[i], list[i + 1], len);
  }
  pool.clear();
  for (let i = 0; i < stranded.length; i += 3) native().row_release(stranded[i], stranded[i + 1], stranded[i + 2]);
  stranded.length = 0;
  strandedBytes = 0;
  pooledRanges = 0;
  pooledObjects = 0;
  pooledBytes = 0;
}

/** Puts a range reuse() handed out back into the pool, as trash-to-map-over (its mapping failed). */
export function unreuse(len: number, row: number, addr: number): void {
  give(DIRECT, row, addr, len, -1);
}

/**
 * Gives back a range nothing could ever reach, already punched empty (a shared anonymous object made at fork
 * count `born`): pooled like a released one, else unmapped.
 */
export function givePunched(row: number, addr: number, len: number, born: number): void {
  give(DIRECT, row, addr, len, born, true);
}
