/*
 * SharedResourceMap — a resource map that lives inside a shared mapping and that several processes use at
 * once, crash-safe (issue 4). Same engines, same semantics and same answers as the in-process ResourceMap
 * (map.ts): only the storage, the locking and the waiting differ.
 *
 * 1. Objects
 * ----------
 *   region     `SharedResourceMap.bytesFor(...)` bytes at an 8-byte aligned `offset` of a MAP_SHARED Mapping
 *              (SharedMemory, memfd, shared anonymous memory inherited or passed on). Everything the map
 *              remembers is in the region; each process holds only views of it, its name, its warning hook and
 *              the count of its own pending rmalloc_waits.
 *   the lock   a robust process-shared Mutex (lib/sync/mutex.ts) in the region. EVERY operation — rmalloc,
 *              rmfree, each retry of rmalloc_wait, reclaim, rmfreemap and the introspection reads (a read can
 *              write: largestFree cleans dirty tree bounds) — runs under it. The lock is taken synchronously
 *              (lock()): the locked regions are microseconds long and never wait.
 *   journal    an undo journal in the region: (word, old value) pairs, one per persistent write of the
 *              operation in progress, and a count.
 *   owners     a table of (index, size, pid, start time) records: who holds which allocated units.
 *   the store  a fixed RmapStore (store.ts): the engine's header, tree and node pool, unchanged.
 *
 * 2. Region layout (offsets from the region's start; all numbers little-endian, as the CPU stores them)
 * ----------------------------------------------------------------------------------------------------
 *   0     Int32[32]  control header, word:  0 magic 0x504d5253 (the bytes "SRMP")   1 version (1)
 *                    2 ready (1; written LAST by create)   3 policy (1 classic, 2 illumos)   4 overflow rule
 *                    (0 solaris, 1 bsd, 2 svr4)   5 generation (futex word: +1 on every free, reclaim, recovery,
 *                    rmfreemap)   6 sleepers (processes asleep on generation; lets a free skip the wake
 *                    system call)   7 journal count   8 journal capacity (entries)   9 owner capacity
 *                    10 owners in use   11 store capacity (nodes)   12 mutex offset   13 journal offset
 *                    14 owner-table offset   15 store offset   16 region bytes   17 recoveries
 *                    18 allocations refused because the owner table was full   19 reclaim calls that freed
 *                    something   20 name length (bytes)
 *   128   Float64[8] 0 units reclaimed   1 units freed without an owner record (a split that found the owner
 *                    table full)
 *   192   UTF-8[64]  the map's name
 *   256   Mutex      Mutex.WORDS Int32 words (a glibc pthread_mutex_t, then the marker "MUTX")
 *   320   journal    capacity × 16 bytes: Float64 (2·offset + 1 for a Float64 word, 2·offset for an Int32 word),
 *                    Float64 old value
 *   …     owners     capacity × 32 bytes: Float64 index, size, pid, start time (0 index: unused)
 *   …     store      RmapStore.bytesFor(policy, capacity) bytes (store.ts documents its layout)
 * `SharedResourceMap.inspect()` reads the header and the store's counters without the lock (a snapshot that
 * may be mid-update), for `devmap inspect`.
 *
 * 3. Crash safety: the undo journal
 * ---------------------------------
 * Inside a locked operation, every persistent write — the store's w64/w32 (through its write hook), the owner
 * table, the header counters — first appends (word, old value) to the journal and raises the count, then
 * writes the word. When the operation is complete, the count goes back to 0: that store is the commit. A
 * process killed at any instant leaves either a count of 0 (the map is consistent, before or after its last
 * operation) or a journal that names every word its unfinished operation changed. The kernel marks the robust
 * mutex FUTEX_OWNER_DIED; the next locker is told { ownerDied: true }, restores the journal in reverse (the
 * oldest value of a word wins), clears it, calls consistent(), counts a recovery and bumps the generation.
 * Rolling back is idempotent: a recoverer killed while rolling back leaves the same journal, and the mutex
 * inconsistent again, for the next one.
 *   Why plain stores are enough. Recovery only starts after the dead thread's death is final (the kernel
 * walks its robust list, then the next locker acquires the mutex: system calls and atomic operations in
 * between are full barriers). A killed thread stops between two instructions: the stores before that point
 * are in coherent memory, the ones after never happen. So only the program order of the dying thread's own
 * stores matters, never their visibility order to another CPU (x86's TSO would keep it anyway; arm64's
 * weaker order does not matter for the same reason). V8 keeps that order: the journal entry, the count and
 * the data word are stores into the same ArrayBuffer through typed arrays that may alias, which the compiler
 * does not reorder. A write the dedup below skips needs no entry: the word's older value is already journaled.
 *   Journal capacity. A classic rmalloc may clean every dirty tree bound (two words per node) on top of its
 * O(log n) path writes; a free rebalances O(log n) nodes; illumos never cleans, and its per-operation writes
 * are O(log spans) (under 400 for any capacity an Int32 can count). One rmfree may also drop, trim or split
 * every owner record it covers (at most 6 writes each). The journal holds 512 + 8·owners entries, plus
 * 2·capacity for classic maps: more than any single operation writes. (test/rmap/shared.test.ts measures the
 * largest operation of its property runs against this bound: at most 41 store writes so far.) Consecutive
 * writes to the same word take one entry. Should an operation still outgrow the journal it is rolled back,
 * the map left as it was, and ERR_DEVMAP_SRMAP_JOURNAL_FULL thrown.
 *   reclaim() commits after each record it frees (the map is consistent there), so however many units it
 * returns its journal holds one record's worth.
 *   Errors inside an operation: a ResourceMapPanic commits (the map is unchanged but its panics counter
 * moved, as in process); any other exception rolls the operation back.
 *
 * 4. Owners and reclaim()
 * -----------------------
 * Each allocation records (index, size, pid, start time): the start time is field 22 of /proc/<pid>/stat, so
 * a pid reused by a later process is not mistaken for the owner. rmfree(size, index) trims, splits or removes
 * every record it covers, whoever made them (a process may free what another allocated). reclaim() frees every
 * recorded range whose owner no longer runs (no /proc entry, a zombie, or another start time) and returns the
 * units reclaimed. Decisions:
 *   - a full owner table fails the rmalloc like a lack of space: it returns 0 (rmalloc_wait waits), counts a
 *     failure and `ownersFull`, and warns once per process (DEVMAP_RMAP_OWNERS_FULL). Size it with `owners`.
 *   - a free that splits a record when the table is full keeps the low piece recorded and leaves the high one
 *     unrecorded (counted in `untrackedUnits`; reclaim cannot return it).
 *   - `owners: 0` turns the table off (no limit, reclaim() returns 0).
 * Cost: rmfree scans the records in use (O(outstanding allocations)); rmalloc appends one.
 *
 * 5. Waiting across processes
 * ---------------------------
 * rmalloc_wait tries under the lock; on failure it reads the generation (still under the lock), unlocks and
 * waits asynchronously (waitAsync) for the generation to move; every successful free, reclaim, recovery and
 * rmfreemap bumps it and notifies every sleeper after unlocking. A free between the unlock and the wait
 * changes the word, so the wait returns at once: no wakeup is lost. Every sleeper retries (broadcast, C.5); no
 * fairness across processes, and no `fifo` option. Units are handed out only under the lock by the engine,
 * so no unit is ever handed out twice. rmfreemap rejects every waiter in every process.
 *
 * 6. Rules. onWarning runs while the lock is held: it may call this map (the lock is re-entrant within one
 * operation), but must not wait for another process. The Mapping must stay mapped while the map is used
 * (unmapping it makes every call throw ERR_DEVMAP_UNMAPPED). create() formats a region nobody uses; attach()
 * never writes until the first operation. Every process must use the same C library (the Mutex is glibc's).
 */
import { readFileSync, writeSync } from 'node:fs';
import { DevmapError, func, integer, options, rangeError, string, typeError } from '../errors';
import { Mapping } from '../memory/mapping';
import { notify, waitAsync } from '../sync/futex';
import { Mutex } from '../sync/mutex';
import { ClassicEngine, OVERFLOW_RULES, type OverflowRule } from './classic';
import { ADOPT_STORE, ResourceMap, assertLive, checkRequestSize, countersOf, warnIfTooLarge, type FreeRange, type ResourceMapStats, type WaitOptions } from './map';
import { ResourceMapPanic, type ResourceMapWarning, type ResourceMapWarningCode } from './panic';
import { H32, H64, H64_WORDS, type Policy, RmapStore, State, type WriteHook } from './store';
import { VmemEngine } from './vmem';

/** The control header's magic: the bytes "SRMP" at the region's offset. */
export const SRMAP_MAGIC = 0x504d5253;
export const SRMAP_VERSION = 1;

const enum W {
  MAGIC = 0,
  VERSION = 1,
  READY = 2,
  POLICY = 3,
  OVERFLOW = 4,
  GENERATION = 5,
  SLEEPERS = 6,
  JCOUNT = 7,
  JCAP = 8,
  OWNERS_CAP = 9,
  OWNERS_USED = 10,
  CAPACITY = 11,
  MUTEX_OFF = 12,
  JOURNAL_OFF = 13,
  OWNERS_OFF = 14,
  STORE_OFF = 15,
  TOTAL = 16,
  RECOVERIES = 17,
  OWNERS_FULL = 18,
  RECLAIMS = 19,
  NAME_LEN = 20,
}
/** Float64 header words (index in the region's Float64Array: byte 128 / 8 = 16). */
const enum F {
  RECLAIMED = 16,
  UNTRACKED = 17,
}
const READY = 1;
const NAME_AT = 192;
const NAME_MAX = 64;
const MUTEX_AT = 256;
const JOURNAL_AT = 320;
const ENTRY = 16;
const RECORD = 32;
const DEFAULT_OWNERS = 1024;
const DEFAULT_ILLUMOS_CAPACITY = 256;
const MAX_OWNERS = 1 << 24;

export interface SharedResourceMapSizing {
  /** classic: free-range slots (rmallocmap's mapsize). illumos: ignored (default 0). */
  mapsize?: number;
  policy?: Policy;
  /** Store nodes. classic: at least mapsize (default mapsize); illumos: segments + spans (default 256). */
  capacity?: number;
  /** Owner records: allocations outstanding at once that reclaim() can return (default 1024; 0: none). */
  owners?: number;
}

export interface SharedResourceMapCreateOptions extends SharedResourceMapSizing {
  /** Byte offset of the region in the mapping (a multiple of 8; default 0). */
  offset?: number;
  overflow?: OverflowRule;
  /** Stored in the region (at most 64 bytes of UTF-8); used in warnings and panics. */
  name?: string;
  onWarning?: (message: string, warning: ResourceMapWarning) => void;
}

export interface SharedResourceMapAttachOptions {
  offset?: number;
  /** This process's name for the map (default: the name stored by create). */
  name?: string;
  onWarning?: (message: string, warning: ResourceMapWarning) => void;
}

export interface SharedResourceMapStats extends ResourceMapStats {
  /** Crashed operations rolled back (by any process). */
  recoveries: number;
  /** Owner records in use. */
  ownersInUse: number;
  /** rmalloc calls refused because the owner table was full. */
  ownersFull: number;
  /** Units returned by reclaim(). */
  reclaimedUnits: number;
  /** Units of allocations left without an owner record (see the essay, 4). */
  untrackedUnits: number;
}

/** What SharedResourceMap.inspect() reads, without the lock. */
export interface SharedResourceMapInfo {
  version: number;
  ready: boolean;
  policy: Policy;
  overflow: OverflowRule | undefined;
  name: string;
  bytes: number;
  capacity: number;
  owners: number;
  ownersInUse: number;
  generation: number;
  /** Journal entries of an operation in progress, or of a crashed one not yet recovered. */
  journalEntries: number;
  journalCapacity: number;
  recoveries: number;
  state: 'new' | 'live' | 'freed';
  mapsize: number;
  freeUnits: number;
  ranges: number;
  stats: SharedResourceMapStats;
  /** Offsets of the sections from the region's start. */
  layout: { mutex: number; journal: number; owners: number; store: number };
}

interface Layout {
  journalCap: number;
  owners: number;
  ownersAt: number;
  storeAt: number;
  storeBytes: number;
  total: number;
}

function layoutOf(policy: Policy, capacity: number, owners: number): Layout {
  // classic: a search may clean every dirty bound (2 words a node) on top of its path; illumos never cleans.
  // An rmfree may also drop, trim or split every owner record (at most 6 writes each).
  const journalCap = (policy === 'classic' ? 2 * capacity : 0) + 8 * owners + 512;
  const ownersAt = JOURNAL_AT + ENTRY * journalCap;
  const storeAt = ownersAt + RECORD * owners;
  const storeBytes = RmapStore.bytesFor(policy, capacity);
  const total = storeAt + Math.ceil(storeBytes / 8) * 8;
  return { journalCap, owners, ownersAt, storeAt, storeBytes, total };
}

// ---- the test hook: stop inside the locked region after N journaled writes (before the N-th data write) ----

const STOP_AFTER = Number(process.env.DEVMAP_SRMAP_STOP_AFTER ?? 0) | 0;
let journaled = 0;
function stopHere(): void {
  writeSync(1, `{"srmapStopped":${process.pid}}\n`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // until killed
}

// ---- process identity ----

/** Field 22 (start time, clock ticks after boot) of /proc/<pid>/stat; null when the process is gone or a zombie. */
function startTime(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  if (fields[0] === 'Z' || fields[0] === 'X') return null;
  const t = Number(fields[19]);
  return Number.isFinite(t) ? t : null;
}
/** This process: its pid and start time (Node processes never fork, so both are read once). */
let selfPid = 0;
let selfStart = 0;
function self(): number {
  if (selfPid === 0) {
    selfPid = process.pid;
    selfStart = startTime(selfPid) ?? 0;
  }
  return selfStart;
}

// ---- the journal ----

class Journal implements WriteHook {
  // The fields the store and the map write, with their byte offsets from the region's start: a typed array's
  // byteOffset getter costs tens of nanoseconds in V8, an identity comparison one.
  readonly #f64s: Float64Array[];
  readonly #f64at: number[];
  readonly #i32s: Int32Array[];
  readonly #i32at: number[];

  constructor(
    readonly i32: Int32Array,
    readonly f64: Float64Array,
    /** Byte offset of the region in the buffer. */
    readonly base: number,
    readonly cap: number,
    s: RmapStore,
  ) {
    this.#f64s = [s.mx, s.lo, s.sz, s.h64, f64];
    this.#i32s = [s.ht, s.lt, s.rt, s.h32, s.an, s.ap, s.kn, s.kp, s.hn, s.buckets, i32];
    this.#f64at = this.#f64s.map((a) => a.byteOffset - base);
    this.#i32at = this.#i32s.map((a) => a.byteOffset - base);
  }

  before64(field: Float64Array, i: number): void {
    const fs = this.#f64s;
    let at = -1;
    for (let k = 0; k < fs.length; k++) {
      if (fs[k] === field) {
        at = this.#f64at[k];
        break;
      }
    }
    if (at < 0) at = field.byteOffset - this.base;
    this.log(2 * (at + 8 * i) + 1, field[i]);
  }

  before32(field: Int32Array, i: number): void {
    const fs = this.#i32s;
    let at = -1;
    for (let k = 0; k < fs.length; k++) {
      if (fs[k] === field) {
        at = this.#i32at[k];
        break;
      }
    }
    if (at < 0) at = field.byteOffset - this.base;
    this.log(2 * (at + 4 * i), field[i]);
  }

  log(tag: number, old: number): void {
    const i32 = this.i32;
    const n = i32[W.JCOUNT];
    const f = this.f64;
    const e = JOURNAL_AT / 8 + 2 * n;
    if (n > 0 && f[e - 2] === tag) return; // the same word again: its oldest value is already journaled
    if (n >= this.cap) {
      throw new DevmapError(
        'ERR_DEVMAP_SRMAP_JOURNAL_FULL',
        `shared resource map: one operation needed more than ${this.cap} journal entries; it was rolled back`,
      );
    }
    f[e] = tag;
    f[e + 1] = old;
    i32[W.JCOUNT] = n + 1; // program order: entry, count, then (the caller) the word itself
    if (STOP_AFTER > 0 && ++journaled === STOP_AFTER) stopHere();
  }

  /** Restores every journaled word, newest first, then clears the journal. Idempotent. */
  rollback(): number {
    const i32 = this.i32;
    const f = this.f64;
    const n = i32[W.JCOUNT];
    for (let k = n - 1; k >= 0; k--) {
      const e = JOURNAL_AT / 8 + 2 * k;
      const tag = f[e];
      const old = f[e + 1];
      if (tag % 2 === 1) f[(tag - 1) / 16] = old;
      else i32[tag / 8] = old;
    }
    i32[W.JCOUNT] = 0;
    return n;
  }
}

// ---- argument checks ----

function checkMapping(mapping: unknown): Mapping {
  if (!(mapping instanceof Mapping)) throw typeError('a Mapping', 'mapping', mapping);
  if (!mapping.mapped) throw new DevmapError('ERR_DEVMAP_UNMAPPED', 'The mapping has been unmapped');
  if (!mapping.shared) {
    throw new DevmapError(
      'ERR_DEVMAP_NOT_SHARED',
      'A shared resource map needs a shared mapping (MAP_SHARED); this one is copy-on-write ({ shared: false })',
    );
  }
  return mapping;
}

function checkOffset(value: unknown, room: number, need: number): number {
  const offset = value === undefined ? 0 : integer(value, 'options.offset');
  if (offset % 8 !== 0 || offset + need > room) {
    throw rangeError(`a multiple of 8 from 0 to ${Math.max(0, room - need)} (the region needs ${need} bytes; the mapping has ${room})`, 'options.offset', value);
  }
  return offset;
}

function policyOf(value: unknown): Policy {
  if (value === undefined) return 'classic';
  if (typeof value !== 'string') throw typeError('a string', 'options.policy', value);
  if (value !== 'classic' && value !== 'illumos') throw rangeError("'classic' or 'illumos'", 'options.policy', value);
  return value;
}

interface Sizing {
  policy: Policy;
  mapsize: number;
  capacity: number;
  owners: number;
}

function sizing(o: SharedResourceMapSizing): Sizing {
  const policy = policyOf(o.policy);
  const mapsize = o.mapsize === undefined ? 0 : integer(o.mapsize, 'options.mapsize', 0, 0x7fffffff);
  const capDefault = policy === 'classic' ? Math.max(1, mapsize) : DEFAULT_ILLUMOS_CAPACITY;
  const capacity = o.capacity === undefined ? capDefault : integer(o.capacity, 'options.capacity', 1, 0x3fffffff);
  if (policy === 'classic' && capacity < mapsize) throw rangeError(`at least mapsize (${mapsize})`, 'options.capacity', capacity);
  const owners = o.owners === undefined ? DEFAULT_OWNERS : integer(o.owners, 'options.owners', 0, MAX_OWNERS);
  return { policy, mapsize, capacity, owners };
}

function corrupt(what: string): DevmapError {
  return new DevmapError('ERR_DEVMAP_SRMAP_CORRUPT', `shared resource map: ${what}`);
}

/** Checks a header's magic, version and layout against `room` bytes; returns the layout it describes. */
function readHeader(i32: Int32Array, room: number, requireReady: boolean): Layout & { policy: Policy; capacity: number } {
  if (i32[W.MAGIC] !== SRMAP_MAGIC) {
    throw new DevmapError('ERR_DEVMAP_SRMAP_BAD_MAGIC', 'No shared resource map here: the magic "SRMP" is missing at this offset');
  }
  if (i32[W.VERSION] !== SRMAP_VERSION) {
    throw new DevmapError('ERR_DEVMAP_SRMAP_VERSION', `The shared resource map here has layout version ${i32[W.VERSION]}; this devmap reads version ${SRMAP_VERSION}`);
  }
  if (requireReady && Atomics.load(i32, W.READY) !== READY) {
    throw new DevmapError('ERR_DEVMAP_SRMAP_NOT_READY', 'The shared resource map here is not ready: create() has not finished formatting it');
  }
  const p = i32[W.POLICY];
  if (p !== 1 && p !== 2) throw corrupt(`bad policy ${p}`);
  const policy: Policy = p === 1 ? 'classic' : 'illumos';
  const capacity = i32[W.CAPACITY];
  const owners = i32[W.OWNERS_CAP];
  if (!(capacity >= 1 && capacity <= 0x3fffffff) || !(owners >= 0 && owners <= MAX_OWNERS)) throw corrupt('bad capacities');
  const l = layoutOf(policy, capacity, owners);
  if (
    i32[W.JCAP] !== l.journalCap || i32[W.MUTEX_OFF] !== MUTEX_AT || i32[W.JOURNAL_OFF] !== JOURNAL_AT ||
    i32[W.OWNERS_OFF] !== l.ownersAt || i32[W.STORE_OFF] !== l.storeAt || i32[W.TOTAL] !== l.total
  ) {
    throw corrupt('the section offsets do not match the capacities');
  }
  if (l.total > room) throw corrupt(`the region needs ${l.total} bytes, only ${room} are mapped`);
  const jc = i32[W.JCOUNT];
  const used = i32[W.OWNERS_USED];
  if (!(jc >= 0 && jc <= l.journalCap) || !(used >= 0 && used <= owners)) throw corrupt('bad journal or owner count');
  if (i32[W.OVERFLOW] < 0 || i32[W.OVERFLOW] > 2) throw corrupt('bad overflow rule');
  if (!(i32[W.NAME_LEN] >= 0 && i32[W.NAME_LEN] <= NAME_MAX)) throw corrupt('bad name length');
  return { ...l, policy, capacity };
}

function nameOf(buffer: ArrayBuffer, base: number, i32: Int32Array): string {
  return Buffer.from(buffer, base + NAME_AT, i32[W.NAME_LEN]).toString('utf8');
}

function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  err.name = 'AbortError';
  err.code = 'ABORT_ERR';
  return err;
}

function emitWarning(message: string, warning: ResourceMapWarning): void {
  process.emitWarning(message, { type: 'ResourceMapWarning', code: warning.code });
}

type WarnFn = (message: string, warning: ResourceMapWarning) => void;
const SLEEPERS_OPTS = { waiters: W.SLEEPERS };
const CREATE_KEYS = ['offset', 'mapsize', 'policy', 'overflow', 'name', 'capacity', 'owners', 'onWarning'] as const;

/** Region parts handed from create/attach to the constructor. */
interface Region {
  mapping: Mapping;
  base: number;
  i32: Int32Array;
  f64: Float64Array;
  mutex: Mutex;
  store: RmapStore;
  layout: Layout;
}
const TOKEN = Symbol('SharedResourceMap');

/**
 * A resource map in a shared mapping, used by several processes at once (see the essay above). rmalloc,
 * rmfree, rmalloc_wait and rmfreemap accept it as they accept a ResourceMap.
 */
export class SharedResourceMap extends ResourceMap {
  /** The Mapping the map lives in, and the region's byte offset in it. */
  readonly mapping: Mapping;
  readonly offset: number;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;
  readonly #mutex: Mutex;
  readonly #journal: Journal;
  readonly #engine: ClassicEngine | VmemEngine;
  readonly #ownersAt: number; // Float64 index of record 0
  readonly #onWarn: (message: string, warning: ResourceMapWarning) => void;
  #depth = 0;
  #bump = false;
  #waiting = 0;
  #warnedFull = false;

  /** Bytes the region of a map needs (a multiple of 8). */
  static bytesFor(opts?: SharedResourceMapSizing): number {
    const s = sizing(options<SharedResourceMapSizing>(opts, 'options', ['mapsize', 'policy', 'capacity', 'owners']));
    return layoutOf(s.policy, s.capacity, s.owners).total;
  }

  /**
   * Formats a new map at `options.offset` of a shared mapping (nobody may be using that region) and returns
   * it. The map starts empty: rmfree the resource into it. The ready flag is written last, so attach()
   * never sees half a map.
   */
  static create(mapping: Mapping, opts?: SharedResourceMapCreateOptions): SharedResourceMap {
    checkMapping(mapping);
    const o = options<SharedResourceMapCreateOptions>(opts, 'options', CREATE_KEYS);
    const s = sizing(o);
    let overflow: OverflowRule | undefined;
    if (s.policy === 'classic') {
      overflow = o.overflow === undefined ? 'solaris' : o.overflow;
      if (typeof overflow !== 'string') throw typeError('a string', 'options.overflow', overflow);
      if (!OVERFLOW_RULES.includes(overflow)) throw rangeError("one of 'solaris', 'bsd', 'svr4'", 'options.overflow', overflow);
    } else if (o.overflow !== undefined) throw rangeError('undefined (overflow rules apply to the classic policy only)', 'options.overflow', o.overflow);
    if (s.policy === 'classic' && s.mapsize === 0) {
      throw new ResourceMapPanic('ERR_DEVMAP_RMAP_MAP_TOO_SMALL', 'mapinit: map too small', 'rmallocmap', 0, 0);
    }
    const name = o.name === undefined ? (s.policy === 'classic' ? 'rmallocmap' : 'rmap') : string(o.name, 'options.name');
    const nameBytes = Buffer.from(name, 'utf8');
    if (nameBytes.length > NAME_MAX) throw rangeError(`a name of at most ${NAME_MAX} bytes of UTF-8`, 'options.name', name);
    const onWarning = o.onWarning === undefined ? emitWarning : func<WarnFn>(o.onWarning, 'options.onWarning');
    const layout = layoutOf(s.policy, s.capacity, s.owners);
    const buffer = mapping.buffer;
    const base = checkOffset(o.offset, buffer.byteLength, layout.total);
    const i32 = new Int32Array(buffer, base, layout.total / 4);
    const f64 = new Float64Array(buffer, base, layout.total / 8);

    Atomics.store(i32, W.READY, 0);
    i32.fill(0, 0, JOURNAL_AT / 4);
    i32[W.MAGIC] = SRMAP_MAGIC;
    i32[W.VERSION] = SRMAP_VERSION;
    i32[W.POLICY] = s.policy === 'classic' ? 1 : 2;
    i32[W.OVERFLOW] = overflow === undefined ? 0 : OVERFLOW_RULES.indexOf(overflow);
    i32[W.JCAP] = layout.journalCap;
    i32[W.OWNERS_CAP] = s.owners;
    i32[W.CAPACITY] = s.capacity;
    i32[W.MUTEX_OFF] = MUTEX_AT;
    i32[W.JOURNAL_OFF] = JOURNAL_AT;
    i32[W.OWNERS_OFF] = layout.ownersAt;
    i32[W.STORE_OFF] = layout.storeAt;
    i32[W.TOTAL] = layout.total;
    i32[W.NAME_LEN] = nameBytes.length;
    new Uint8Array(buffer, base + NAME_AT, NAME_MAX).set(nameBytes);
    f64.fill(0, layout.ownersAt / 8, layout.storeAt / 8);
    const mutex = Mutex.init(i32, MUTEX_AT / 4);
    const store = RmapStore.fixed(s.policy, buffer, base + layout.storeAt, layout.storeBytes);
    if (store.capacity !== s.capacity) throw new Error(`internal: store capacity ${store.capacity} != ${s.capacity}`);
    const map = new SharedResourceMap(TOKEN, { mapping, base, i32, f64, mutex, store, layout }, s.mapsize, overflow, name, onWarning, false);
    Atomics.store(i32, W.READY, READY);
    return map;
  }

  /**
   * Attaches to the map create() made at `options.offset` of (another mapping of) the same memory. Validates
   * the magic, version, ready flag and layout, and uses the live store as it is.
   */
  static attach(mapping: Mapping, opts?: SharedResourceMapAttachOptions): SharedResourceMap {
    checkMapping(mapping);
    const o = options<SharedResourceMapAttachOptions>(opts, 'options', ['offset', 'name', 'onWarning']);
    const onWarning = o.onWarning === undefined ? emitWarning : func<WarnFn>(o.onWarning, 'options.onWarning');
    if (o.name !== undefined) string(o.name, 'options.name');
    const buffer = mapping.buffer;
    const base = checkOffset(o.offset, buffer.byteLength, JOURNAL_AT);
    const room = buffer.byteLength - base;
    const header = new Int32Array(buffer, base, JOURNAL_AT / 4);
    const h = readHeader(header, room, true);
    const i32 = new Int32Array(buffer, base, h.total / 4);
    const f64 = new Float64Array(buffer, base, h.total / 8);
    let store: RmapStore;
    try {
      store = RmapStore.existing(h.policy, buffer, base + h.storeAt, h.capacity);
    } catch {
      throw corrupt('the store section does not hold a store of the recorded policy and capacity');
    }
    const state = store.h32[H32.STATE];
    if (state === State.FREED) throw new DevmapError('ERR_DEVMAP_RMAP_FREED', `resource map ${nameOf(buffer, base, i32)} has been freed (rmfreemap)`);
    if (state !== State.LIVE) throw corrupt('the store is not live');
    const mutex = new Mutex(i32, MUTEX_AT / 4);
    const overflow = h.policy === 'classic' ? OVERFLOW_RULES[i32[W.OVERFLOW]] : undefined;
    const name = o.name ?? nameOf(buffer, base, i32);
    return new SharedResourceMap(TOKEN, { mapping, base, i32, f64, mutex, store, layout: h }, store.h64[H64.MAPSIZE], overflow, name, onWarning, true);
  }

  /**
   * Reads the header and counters of the map at `offset` WITHOUT the lock and without writing (for
   * `devmap inspect`). `target` is the Mapping, its buffer, or a snapshot of its bytes. The numbers may be
   * mid-update; a journal count above 0 means an operation in progress or a crash not yet recovered.
   */
  static inspect(target: Mapping | ArrayBuffer | ArrayBufferView, offset = 0): SharedResourceMapInfo {
    let bytes: Uint8Array;
    if (target instanceof Mapping) {
      if (!target.mapped) throw new DevmapError('ERR_DEVMAP_UNMAPPED', 'The mapping has been unmapped');
      bytes = new Uint8Array(target.buffer);
    } else if (target instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && target instanceof SharedArrayBuffer)) {
      bytes = new Uint8Array(target);
    } else if (ArrayBuffer.isView(target)) bytes = new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
    else throw typeError('a Mapping, an ArrayBuffer or a Uint8Array', 'target', target);
    const at = integer(offset, 'offset');
    if (at + JOURNAL_AT > bytes.length) throw rangeError(`an offset with ${JOURNAL_AT} bytes after it`, 'offset', offset);
    // Copy: a snapshot, aligned for the typed arrays whatever the caller's alignment.
    const header = new Int32Array(bytes.slice(at, at + JOURNAL_AT).buffer);
    const h = readHeader(header, bytes.length - at, false);
    const region = bytes.slice(at, at + h.total).buffer;
    const i32 = new Int32Array(region);
    const f64 = new Float64Array(region);
    const sh64 = new Float64Array(region, h.storeAt, H64_WORDS);
    const sh32 = new Int32Array(region, h.storeAt + 8 * (H64_WORDS + 3 * h.capacity), H32.LIST);
    const st = sh32[H32.STATE];
    return {
      version: i32[W.VERSION],
      ready: i32[W.READY] === READY,
      policy: h.policy,
      overflow: h.policy === 'classic' ? OVERFLOW_RULES[i32[W.OVERFLOW]] : undefined,
      name: Buffer.from(region, NAME_AT, i32[W.NAME_LEN]).toString('utf8'),
      bytes: h.total,
      capacity: h.capacity,
      owners: h.owners,
      ownersInUse: i32[W.OWNERS_USED],
      generation: i32[W.GENERATION],
      journalEntries: i32[W.JCOUNT],
      journalCapacity: h.journalCap,
      recoveries: i32[W.RECOVERIES],
      state: st === State.LIVE ? 'live' : st === State.FREED ? 'freed' : 'new',
      mapsize: sh64[H64.MAPSIZE],
      freeUnits: sh64[H64.FREE_UNITS],
      ranges: sh64[H64.RANGES],
      stats: statsOf(sh64, i32, f64),
      layout: { mutex: MUTEX_AT, journal: JOURNAL_AT, owners: h.ownersAt, store: h.storeAt },
    };
  }

  /** @internal Use create() or attach(). */
  private constructor(
    token: symbol,
    r: Region,
    mapsize: number,
    overflow: OverflowRule | undefined,
    name: string,
    onWarning: (message: string, warning: ResourceMapWarning) => void,
    adopt: boolean,
  ) {
    if (token !== TOKEN) throw new TypeError('Use SharedResourceMap.create() or SharedResourceMap.attach()');
    super(mapsize, { policy: r.store.policy, overflow, name, onWarning, store: r.store, [ADOPT_STORE]: adopt } as ConstructorParameters<typeof ResourceMap>[1]);
    this.mapping = r.mapping;
    this.offset = r.base;
    this.#i32 = r.i32;
    this.#f64 = r.f64;
    this.#mutex = r.mutex;
    this.#journal = new Journal(r.i32, r.f64, r.base, r.layout.journalCap, r.store);
    this.#engine = r.store.policy === 'classic' ? new ClassicEngine(r.store, name) : new VmemEngine(r.store, name);
    this.#ownersAt = r.layout.ownersAt / 8;
    this.#onWarn = onWarning;
    r.store.hook = this.#journal;
  }

  // ---- the locked operation ----

  /** Runs fn under the lock, journaled; commits when it returns (or panics), rolls back when it throws. */
  #op<T>(fn: () => T): T {
    if (this.#depth > 0) return fn(); // re-entrant: picture() → freeRanges(), onWarning → the map
    if (this.#i32.length === 0 || !this.mapping.mapped) {
      throw new DevmapError('ERR_DEVMAP_UNMAPPED', `shared resource map ${this.name}: its mapping has been unmapped`);
    }
    const died = this.#mutex.lock().ownerDied;
    this.#depth = 1;
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
      if (commit) this.#i32[W.JCOUNT] = 0;
      else this.#journal.rollback();
      const bump = this.#bump;
      if (bump) {
        this.#bump = false;
        Atomics.add(this.#i32, W.GENERATION, 1);
      }
      this.#depth = 0;
      this.#mutex.unlock();
      // The add above is a full fence: either this load sees a sleeper's count, or its futex check sees the
      // new generation (futex.ts, 3). Skipping notify() when nobody sleeps saves its checks and system call.
      if (bump && Atomics.load(this.#i32, W.SLEEPERS) !== 0) notify(this.#i32, W.GENERATION, Infinity, SLEEPERS_OPTS);
    }
  }

  /** The previous holder died: undo its unfinished operation. */
  #recover(): void {
    this.#journal.rollback();
    this.#i32[W.RECOVERIES]++;
    this.#mutex.consistent();
    this.#bump = true; // wake every sleeper: the dead process may have been about to
  }

  #w64(i: number, v: number): void {
    this.#journal.before64(this.#f64, i);
    this.#f64[i] = v;
  }

  #w32(i: number, v: number): void {
    this.#journal.before32(this.#i32, i);
    this.#i32[i] = v;
  }

  #count(field: H64): void {
    const s = this.store;
    s.w64(s.h64, field, s.h64[field] + 1);
  }

  #live(): void {
    assertLive(this.store, this.name);
  }

  #checkSize(size: number): void {
    checkRequestSize(size, this.policy, () => this.#count(H64.PANICS));
  }

  #warn(code: ResourceMapWarningCode, message: string, index: number, size: number): void {
    this.#onWarn(message, { code, map: this.name, index, size });
  }

  /** Under the lock, size valid: the engine's allocation plus its owner record; 0 when nothing fits. */
  #take(size: number): number {
    const i32 = this.#i32;
    const cap = i32[W.OWNERS_CAP];
    if (cap > 0 && i32[W.OWNERS_USED] >= cap) {
      this.#w32(W.OWNERS_FULL, i32[W.OWNERS_FULL] + 1);
      if (!this.#warnedFull) {
        this.#warnedFull = true;
        this.#warn('DEVMAP_RMAP_OWNERS_FULL', `rmalloc(${this.name}, ${size}): the owner table is full (${cap} records); the allocation fails`, 0, size);
      }
      return 0;
    }
    const index = this.#engine.alloc(size);
    if (index !== 0 && cap > 0) {
      const n = i32[W.OWNERS_USED];
      const r = this.#ownersAt + 4 * n;
      this.#w64(r, index);
      this.#w64(r + 1, size);
      this.#w64(r + 3, self());
      this.#w64(r + 2, selfPid);
      this.#w32(W.OWNERS_USED, n + 1);
    }
    return index;
  }

  /** Removes record r by moving the last one into its place. */
  #dropRecord(r: number, n: number): void {
    const f = this.#f64;
    const at = this.#ownersAt + 4 * r;
    const last = this.#ownersAt + 4 * (n - 1);
    if (r !== n - 1) for (let k = 0; k < 4; k++) this.#w64(at + k, f[last + k]);
    this.#w64(last, 0);
    this.#w32(W.OWNERS_USED, n - 1);
  }

  /** [index, index + size) was freed: trim, split or drop every record it covers. */
  #release(index: number, size: number): void {
    const i32 = this.#i32;
    const cap = i32[W.OWNERS_CAP];
    if (cap === 0) return;
    const f = this.#f64;
    const end = index + size;
    for (let r = 0; r < i32[W.OWNERS_USED]; ) {
      const at = this.#ownersAt + 4 * r;
      const a = f[at];
      const b = a + f[at + 1];
      if (b <= index || a >= end) {
        r++;
        continue;
      }
      if (a >= index && b <= end) {
        this.#dropRecord(r, i32[W.OWNERS_USED]); // record r is now the former last: look at it again
        continue;
      }
      if (a < index && b > end) {
        // A hole in the middle: the low piece stays in place, the high piece needs a record of its own.
        this.#w64(at + 1, index - a);
        const n = i32[W.OWNERS_USED];
        if (n < cap) {
          const nr = this.#ownersAt + 4 * n;
          this.#w64(nr, end);
          this.#w64(nr + 1, b - end);
          this.#w64(nr + 2, f[at + 2]);
          this.#w64(nr + 3, f[at + 3]);
          this.#w32(W.OWNERS_USED, n + 1);
        } else {
          this.#w64(F.UNTRACKED, f[F.UNTRACKED] + (b - end));
        }
      } else if (a < index) {
        this.#w64(at + 1, index - a); // the tail was freed
      } else {
        this.#w64(at, end); // the head was freed
        this.#w64(at + 1, b - end);
      }
      r++;
    }
  }

  // ---- the DDI operations ----

  /** rmalloc(9F) under the lock; the allocation is recorded with this process as its owner. */
  override alloc(size: number): number {
    return this.#op(() => {
      this.#live();
      this.#checkSize(size);
      const index = this.#take(size);
      this.#count(index === 0 ? H64.FAILURES : H64.ALLOCS);
      return index;
    });
  }

  /**
   * rmalloc_wait(9F) across processes: resolves once `size` units were allocated for this process, after
   * any process's rmfree, reclaim or recovery made room; rejects on abort (AbortError) or rmfreemap
   * (ERR_DEVMAP_RMAP_FREED).
   */
  override allocWait(size: number, opts?: WaitOptions): Promise<number> {
    try {
      this.#live();
      const o = options<WaitOptions>(opts, 'options', ['signal']);
      const signal = o.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('an AbortSignal', 'options.signal', signal);
      integer(size, 'size');
      if (size === 0) this.#op(() => this.#checkSize(size));
      if (signal?.aborted) return Promise.reject(abortError(signal));
      return this.#waitLoop(size, signal);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #waitLoop(size: number, signal: AbortSignal | undefined): Promise<number> {
    let slept = false;
    let seen = 0;
    this.#waiting++;
    try {
      for (;;) {
        const got = this.#op(() => {
          if (this.store.h32[H32.STATE] !== State.LIVE) {
            throw new DevmapError('ERR_DEVMAP_RMAP_FREED', `rmfreemap(${this.name}) freed the map while rmalloc_wait(${size}) was waiting`);
          }
          if (slept) this.#count(H64.WAKEUPS);
          const index = this.#take(size);
          if (index !== 0) {
            this.#count(H64.ALLOCS);
            return index;
          }
          if (!slept) {
            this.#count(H64.WAITS);
            warnIfTooLarge(this.#engine, this.name, size, (code, message) => this.#warn(code, message, 0, size));
          }
          seen = this.#i32[W.GENERATION]; // read under the lock: a later free changes it
          return 0;
        });
        if (got !== 0) return got;
        slept = true;
        try {
          await waitAsync(this.#i32, W.GENERATION, seen, { signal, waiters: W.SLEEPERS });
        } catch (err) {
          if (signal?.aborted) {
            this.#op(() => this.store.h32[H32.STATE] === State.LIVE && this.#count(H64.ABORTS));
            throw abortError(signal);
          }
          throw err;
        }
      }
    } finally {
      this.#waiting--;
    }
  }

  /** rmfree(9F) under the lock; drops the owner records the range covers; wakes every waiting process. */
  override free(size: number, index: number): void {
    this.#op(() => {
      super.free(size, index);
      this.#release(index, size);
      this.#bump = true;
    });
  }

  /** rmfreemap(9F): frees the map for every process; their waiters are rejected. */
  override destroy(): void {
    this.#op(() => {
      super.destroy();
      this.#bump = true;
    });
  }

  /**
   * Frees every recorded allocation whose owner process no longer exists (or whose pid now belongs to a
   * process with another start time) and returns the number of units reclaimed.
   */
  reclaim(): number {
    return this.#op(() => {
      this.#live();
      const i32 = this.#i32;
      const f = this.#f64;
      const alive = new Map<number, number | null>();
      let units = 0;
      for (let r = 0; r < i32[W.OWNERS_USED]; ) {
        const at = this.#ownersAt + 4 * r;
        const pid = f[at + 2];
        let start = alive.get(pid);
        if (start === undefined) alive.set(pid, (start = pid === process.pid ? self() : startTime(pid)));
        if (start === f[at + 3]) {
          r++;
          continue;
        }
        const index = f[at];
        const size = f[at + 1];
        let freed = 0;
        try {
          super.free(size, index);
          freed = size;
        } catch (err) {
          if (!(err instanceof ResourceMapPanic)) throw err; // a record the map disagrees with: drop it
        }
        this.#dropRecord(r, i32[W.OWNERS_USED]);
        if (freed > 0) {
          this.#w64(F.RECLAIMED, f[F.RECLAIMED] + freed);
          if (units === 0) this.#w32(W.RECLAIMS, i32[W.RECLAIMS] + 1);
          units += freed;
          this.#bump = true;
        }
        // Each record is its own transaction: the map is consistent here, so commit (the journal then only
        // ever holds one record's worth, however many a reclaim returns).
        i32[W.JCOUNT] = 0;
      }
      return units;
    });
  }

  // ---- introspection (under the lock) ----

  override freeRanges(): FreeRange[] {
    return this.#op(() => super.freeRanges());
  }

  override get freeUnits(): number {
    return this.#op(() => super.freeUnits);
  }

  override get largestFree(): number {
    return this.#op(() => super.largestFree);
  }

  override get ranges(): number {
    return this.#op(() => super.ranges);
  }

  override get slots(): number {
    return this.#op(() => super.slots);
  }

  override get slotsFree(): number {
    return this.#op(() => super.slotsFree);
  }

  /** This process's rmalloc_wait calls still pending. */
  override get waiting(): number {
    return this.#waiting;
  }

  override stats(): SharedResourceMapStats {
    return this.#op(() => {
      this.#live();
      return statsOf(this.store.h64, this.#i32, this.#f64);
    });
  }

  override picture(width = 64): string {
    return this.#op(() => super.picture(width));
  }

  override toString(): string {
    if (this.freed) return `Shared${super.toString()}`;
    return this.#op(() => `Shared${super.toString()}, ${this.ownersInUse} owner records, ${this.recoveries} recoveries`);
  }

  /** Crashed operations rolled back so far (by any process). */
  get recoveries(): number {
    return this.#i32[W.RECOVERIES];
  }

  /** Owner records in use (allocations reclaim() knows the owner of). */
  get ownersInUse(): number {
    return this.#i32[W.OWNERS_USED];
  }

  /** @internal For tests: the journal entries of the operation in progress (0 between operations). */
  get journalEntries(): number {
    return this.#i32[W.JCOUNT];
  }

  /** @internal For tests: the owner records, in table order. */
  owners(): { index: number; size: number; pid: number; start: number }[] {
    return this.#op(() => {
      const out = [];
      for (let r = 0; r < this.#i32[W.OWNERS_USED]; r++) {
        const at = this.#ownersAt + 4 * r;
        out.push({ index: this.#f64[at], size: this.#f64[at + 1], pid: this.#f64[at + 2], start: this.#f64[at + 3] });
      }
      return out;
    });
  }
}

function statsOf(h: Float64Array, i32: Int32Array, f64: Float64Array): SharedResourceMapStats {
  return {
    ...countersOf(h),
    recoveries: i32[W.RECOVERIES],
    ownersInUse: i32[W.OWNERS_USED],
    ownersFull: i32[W.OWNERS_FULL],
    reclaimedUnits: f64[F.RECLAIMED],
    untrackedUnits: f64[F.UNTRACKED],
  };
}
