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
 *                    something   20 name length (bytes)   21 corrupt (non-zero: marked corrupt, see 8)
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
 * recorded range whose owner the kernel says is gone (lib/identity.ts: kill(pid, 0) answers ESRCH, or /proc
 * shows a zombie or another start time) and returns the units reclaimed. A process this one may not signal
 * (EPERM) or cannot see in /proc (hidepid=2) is alive: units reclaimed from a live process would be handed
 * out twice, units kept for a dead one only wait for the next reclaim that can see it. Decisions:
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
 *
 * 7. Files. This one holds the class; beside it, one job each: layout.ts (the header words, the sections'
 * offsets, the header check), journal.ts (the undo journal), locked.ts (Region: the locked operation,
 * recovery and the corruption verdict), ../check.ts (the whole-store check), owners.ts (the owner table and
 * reclaim), wait.ts (rmalloc_wait across processes), inspect.ts (the lock-free read for `devmap inspect`),
 * options.ts (the arguments of create, attach and bytesFor).
 *
 * 8. The segment is untrusted input. Any process that can map the region can write any byte of it, and a
 * stray write or a flipped bit is as likely as a hostile peer. So nothing read from the region is used as an
 * index before it is checked: attach() checks the header and the layout it describes; each locked operation
 * re-checks the header words it indexes with; the first operation of each process, and every recovery,
 * checks the whole store (check.ts: every link in the pool, no cycle, keys in order, counts that match);
 * every walk the engines make is bounded and checks each node it reaches (store.ts brokenLinks); a recovery
 * replays only journal entries that name words an operation writes (never the mutex, the journal or the
 * layout). Whatever still goes wrong inside an operation — a bounded walk that stops, an exception without a
 * code — rolls the operation back, marks the region corrupt (header word 21: every process's next
 * operation and attach() refuse), releases the lock and throws ERR_DEVMAP_CORRUPT. A corrupt segment
 * therefore costs an error in every process that uses it, never a crash, a runaway recursion or a hang with
 * the lock held. What no check can tell from a real state — a lock word naming a live thread, counters
 * that are consistent but false — gives wrong answers or a held lock, as it would in C.
 */

import { DevmapError, func, integer, options, rangeError, string, typeError } from '../../errors';
import { internalBuffer, type Mapping } from '../../memory/mapping';
import { Mutex } from '../../sync/mutex';
import { timeoutMs } from '../../sync/word';
import { ClassicEngine, OVERFLOW_RULES, type OverflowRule } from '../classic';
import {
  ADOPT_STORE, ResourceMap, abortError, assertLive, checkRequestSize, emitWarning, warnIfTooLarge, type FreeRange, type WaitOptions,
} from '../map';
import { ResourceMapPanic, type ResourceMapWarningCode } from '../panic';
import { H32, H64, RmapStore, State } from '../store';
import { VmemEngine } from '../vmem';
import { inspectRegion, type SharedResourceMapInfo } from './inspect';
import {
  JOURNAL_AT, MUTEX_AT, NAME_AT, NAME_MAX, READY, SRMAP_MAGIC, SRMAP_VERSION, W, corrupt, layoutOf, nameOf, readHeader, statsOf,
  type Layout, type SharedResourceMapStats,
} from './layout';
import { stopHere } from './journal';
import { Region } from './locked';
import { claimOrWait } from './open-or-create';
import {
  ATTACH_KEYS, CREATE_KEYS, OPEN_KEYS, checkMapping, checkOffset, sizing, type SharedResourceMapAttachOptions,
  type SharedResourceMapCreateOptions, type SharedResourceMapOpenOptions, type SharedResourceMapSizing, type Sizing, type WarnFn,
} from './options';
import { reclaimDead, records, release, take } from './owners';
import { waitForRoom, type WaitingMap } from './wait';

/** Region parts handed from create/attach to the constructor. */
interface Parts {
  mapping: Mapping;
  base: number;
  i32: Int32Array;
  f64: Float64Array;
  mutex: Mutex;
  store: RmapStore;
  layout: Layout;
}
const TOKEN = Symbol('SharedResourceMap');
/** Test hook: a formatter stops (and waits to be killed) after writing the magic. */
const STOP_IN_FORMAT = process.env.DEVMAP_SRMAP_STOP_IN_FORMAT === '1';

/** create()'s and openOrCreate()'s options, checked, with the layout and offset they give. */
interface Plan extends Sizing {
  overflow: OverflowRule | undefined;
  name: string;
  nameBytes: Buffer;
  onWarning: WarnFn;
  layout: Layout;
  base: number;
}

function planOf(mapping: Mapping, o: SharedResourceMapCreateOptions): Plan {
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
  const base = checkOffset(o.offset, mapping.buffer.byteLength, layout.total);
  return { ...s, overflow, name, nameBytes, onWarning, layout, base };
}

/**
 * A resource map in a shared mapping, used by several processes at once (see the essay above). rmalloc,
 * rmfree, rmalloc_wait and rmfreemap accept it as they accept a ResourceMap.
 */
export class SharedResourceMap extends ResourceMap {
  /** The Mapping the map lives in, and the region's byte offset in it. */
  readonly mapping: Mapping;
  readonly offset: number;
  readonly #r: Region;
  readonly #engine: ClassicEngine | VmemEngine;
  readonly #onWarn: WarnFn;
  #waiting = 0;
  #warnedFull = false;

  /**
   * Bytes the region of a map needs (a multiple of 8). Takes the options of create()/openOrCreate() as
   * they are (only the sizing counts), so one options object serves both calls.
   */
  static bytesFor(opts?: SharedResourceMapSizing | SharedResourceMapOpenOptions): number {
    const s = sizing(options<SharedResourceMapSizing>(opts, 'options', OPEN_KEYS));
    return layoutOf(s.policy, s.capacity, s.owners).total;
  }

  /**
   * Formats a new map at `options.offset` of a shared mapping (nobody may be using that region) and returns
   * it. The map starts empty: rmfree the resource into it. The ready flag is written last, so attach()
   * never sees half a map.
   */
  static create(mapping: Mapping, opts?: SharedResourceMapCreateOptions): SharedResourceMap {
    checkMapping(mapping);
    const plan = planOf(mapping, options<SharedResourceMapCreateOptions>(opts, 'options', CREATE_KEYS));
    return SharedResourceMap.#format(mapping, plan, false);
  }

  /**
   * The way for peers started in any order (cluster workers, processes that share a segment): attaches to
   * the map at `options.offset` if there is one, otherwise formats it there — exactly once, however many
   * threads and processes call this at the same moment — and tells the caller which happened (`created`).
   * The region must be zeroed memory (a fresh segment) or a map; a peer that waits for another's format
   * takes over when that one died midway (open-or-create.ts). Every peer passes the same sizing: a map
   * already there with another layout is ERR_DEVMAP_SRMAP_MISMATCH. `timeout` (ms, default none) bounds the
   * wait for a live formatter that does not finish (ERR_DEVMAP_SRMAP_TIMEOUT).
   */
  static openOrCreate(mapping: Mapping, opts?: SharedResourceMapOpenOptions): { map: SharedResourceMap; created: boolean } {
    checkMapping(mapping);
    const o = options<SharedResourceMapOpenOptions>(opts, 'options', OPEN_KEYS);
    const ms = timeoutMs(o.timeout, 'options.timeout');
    const plan = planOf(mapping, o);
    const buffer = internalBuffer(mapping); // devmap's own words: detached by unmap
    const header = new Int32Array(buffer, plan.base, JOURNAL_AT / 4);
    const claim = new BigInt64Array(buffer, plan.base + 4 * W.CLAIM, 1);
    let made: SharedResourceMap | undefined;
    const created = claimOrWait(header, claim, Mutex.threadId, ms, () => (made = SharedResourceMap.#format(mapping, plan, true)));
    if (made !== undefined) return { map: made, created };
    const map = SharedResourceMap.attach(mapping, { offset: plan.base, name: o.name, onWarning: plan.onWarning });
    const h = readHeader(header, buffer.byteLength - plan.base, true);
    const overflow = plan.policy === 'classic' ? OVERFLOW_RULES.indexOf(plan.overflow!) : 0;
    if (h.policy !== plan.policy || h.capacity !== plan.capacity || h.owners !== plan.owners || map.slots !== (plan.policy === 'classic' ? plan.mapsize : Infinity) || header[W.OVERFLOW] !== overflow) {
      throw new DevmapError(
        'ERR_DEVMAP_SRMAP_MISMATCH',
        `openOrCreate: the map at offset ${plan.base} was made with other options (${h.policy}, capacity ${h.capacity}, ${h.owners} owner records)`,
      );
    }
    return { map, created: false };
  }

  /**
   * Reads the header and counters of the map at `offset` WITHOUT the lock and without writing (for
   * `devmap inspect`). `target` is the Mapping, its buffer, or a snapshot of its bytes. The numbers may be
   * mid-update; a journal count above 0 means an operation in progress or a crash not yet recovered.
   */
  static inspect(target: Mapping | ArrayBuffer | ArrayBufferView, offset = 0): SharedResourceMapInfo {
    return inspectRegion(target, offset);
  }

  /**
   * Attaches to the map create() made at `options.offset` of (another mapping of) the same memory. Validates
   * the magic, version, ready flag and layout, and uses the live store as it is.
   */
  static attach(mapping: Mapping, opts?: SharedResourceMapAttachOptions): SharedResourceMap {
    checkMapping(mapping);
    const o = options<SharedResourceMapAttachOptions>(opts, 'options', ATTACH_KEYS);
    const onWarning = o.onWarning === undefined ? emitWarning : func<WarnFn>(o.onWarning, 'options.onWarning');
    if (o.name !== undefined) string(o.name, 'options.name');
    const buffer = internalBuffer(mapping); // devmap's own words: detached by unmap
    const base = checkOffset(o.offset, buffer.byteLength, JOURNAL_AT);
    const room = buffer.byteLength - base;
    const header = new Int32Array(buffer, base, JOURNAL_AT / 4);
    const h = readHeader(header, room, true);
    if (Atomics.load(header, W.CORRUPT) !== 0) throw corrupt('the map here is marked corrupt: a process found its structure broken');
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

  /** Formats the region `plan` describes (keepClaim: all but the open-or-create claim) and returns the map. */
  static #format(mapping: Mapping, plan: Plan, keepClaim: boolean): SharedResourceMap {
    const { policy, mapsize, capacity, owners, overflow, name, nameBytes, onWarning, layout, base } = plan;
    const buffer = internalBuffer(mapping); // devmap's own words: detached by unmap
    const i32 = new Int32Array(buffer, base, layout.total / 4);
    const f64 = new Float64Array(buffer, base, layout.total / 8);

    Atomics.store(i32, W.READY, 0);
    if (keepClaim) {
      i32.fill(0, 0, W.CLAIM);
      i32.fill(0, W.CLAIM + 2, JOURNAL_AT / 4);
    } else i32.fill(0, 0, JOURNAL_AT / 4);
    i32[W.MAGIC] = SRMAP_MAGIC;
    i32[W.VERSION] = SRMAP_VERSION;
    if (STOP_IN_FORMAT) stopHere(); // test hook: an initializer killed midway
    i32[W.POLICY] = policy === 'classic' ? 1 : 2;
    i32[W.OVERFLOW] = overflow === undefined ? 0 : OVERFLOW_RULES.indexOf(overflow);
    i32[W.JCAP] = layout.journalCap;
    i32[W.OWNERS_CAP] = owners;
    i32[W.CAPACITY] = capacity;
    i32[W.MUTEX_OFF] = MUTEX_AT;
    i32[W.JOURNAL_OFF] = JOURNAL_AT;
    i32[W.OWNERS_OFF] = layout.ownersAt;
    i32[W.STORE_OFF] = layout.storeAt;
    i32[W.TOTAL] = layout.total;
    i32[W.NAME_LEN] = nameBytes.length;
    new Uint8Array(buffer, base + NAME_AT, NAME_MAX).set(nameBytes);
    f64.fill(0, layout.ownersAt / 8, layout.storeAt / 8);
    const mutex = Mutex.init(i32, MUTEX_AT / 4);
    const store = RmapStore.fixed(policy, buffer, base + layout.storeAt, layout.storeBytes);
    if (store.capacity !== capacity) throw new Error(`internal: store capacity ${store.capacity} != ${capacity}`);
    const map = new SharedResourceMap(TOKEN, { mapping, base, i32, f64, mutex, store, layout }, mapsize, overflow, name, onWarning, false);
    Atomics.store(i32, W.READY, READY);
    return map;
  }

  /** @internal Use create(), openOrCreate() or attach(). */
  private constructor(
    token: symbol,
    p: Parts,
    mapsize: number,
    overflow: OverflowRule | undefined,
    name: string,
    onWarning: WarnFn,
    adopt: boolean,
  ) {
    if (token !== TOKEN) {
      throw Object.assign(new TypeError('SharedResourceMap is not constructible: use SharedResourceMap.create(), openOrCreate() or attach()'), {
        code: 'ERR_DEVMAP_NOT_CONSTRUCTIBLE',
      });
    }
    const region = new Region(p.mapping, p.base, p.i32, p.f64, p.mutex, p.store, p.layout, name);
    // The caller's hook runs inside the locked region: what it throws is its own, never a sign of corruption.
    const hook: WarnFn = (message, warning) => {
      try {
        onWarning(message, warning);
      } catch (err) {
        region.theirs(err);
        throw err;
      }
    };
    super(mapsize, { policy: p.store.policy, overflow, name, onWarning: hook, store: p.store, [ADOPT_STORE]: adopt } as ConstructorParameters<typeof ResourceMap>[1]);
    this.mapping = p.mapping;
    this.offset = p.base;
    this.#r = region;
    region.journalStore();
    this.#engine = p.store.policy === 'classic' ? new ClassicEngine(p.store, name) : new VmemEngine(p.store, name);
    this.#onWarn = hook;
  }

  // ---- helpers of the locked operations ----

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
    return take(this.#r, this.#engine, size, (cap) => {
      if (this.#warnedFull) return;
      this.#warnedFull = true;
      this.#warn('DEVMAP_RMAP_OWNERS_FULL', `rmalloc(${this.name}, ${size}): the owner table is full (${cap} records); the allocation fails`, 0, size);
    });
  }

  // ---- the DDI operations ----

  /** rmalloc(9F) under the lock; the allocation is recorded with this process as its owner. */
  override alloc(size: number): number {
    return this.#r.run(() => {
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
      if (size === 0) this.#r.run(() => this.#checkSize(size));
      if (signal?.aborted) return Promise.reject(abortError(signal));
      return this.#wait(size, signal);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #wait(size: number, signal: AbortSignal | undefined): Promise<number> {
    this.#waiting++;
    try {
      return await waitForRoom(this.#waitingMap(), this.#r.i32, size, signal);
    } finally {
      this.#waiting--;
    }
  }

  #waitingMap(): WaitingMap {
    const side = {
      seen: 0,
      attempt: (size: number, slept: boolean) =>
        this.#r.run(() => {
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
          side.seen = this.#r.i32[W.GENERATION]; // read under the lock: a later free changes it
          return 0;
        }),
      countAbort: () => void this.#r.run(() => this.store.h32[H32.STATE] === State.LIVE && this.#count(H64.ABORTS)),
    };
    return side;
  }

  /** rmfree(9F) under the lock; drops the owner records the range covers; wakes every waiting process. */
  override free(size: number, index: number): void {
    this.#r.run(() => {
      super.free(size, index);
      release(this.#r, index, size);
      this.#r.bump = true;
    });
  }

  /** rmfreemap(9F): frees the map for every process; their waiters are rejected. */
  override destroy(): void {
    this.#r.run(() => {
      super.destroy();
      this.#r.bump = true;
    });
  }

  /**
   * Frees every recorded allocation whose owner process no longer exists (or whose pid now belongs to a
   * process with another start time) and returns the number of units reclaimed.
   */
  reclaim(): number {
    return this.#r.run(() => {
      this.#live();
      return reclaimDead(this.#r, (size, index) => super.free(size, index));
    });
  }

  // ---- introspection (under the lock) ----

  override freeRanges(): FreeRange[] {
    return this.#r.run(() => super.freeRanges());
  }

  override get freeUnits(): number {
    return this.#r.run(() => super.freeUnits);
  }

  override get largestFree(): number {
    return this.#r.run(() => super.largestFree);
  }

  override get ranges(): number {
    return this.#r.run(() => super.ranges);
  }

  override get slots(): number {
    return this.#r.run(() => super.slots);
  }

  override get slotsFree(): number {
    return this.#r.run(() => super.slotsFree);
  }

  /** This process's rmalloc_wait calls still pending. */
  override get waiting(): number {
    return this.#waiting;
  }

  override stats(): SharedResourceMapStats {
    return this.#r.run(() => {
      this.#live();
      return statsOf(this.store.h64, this.#r.i32, this.#r.f64);
    });
  }

  override picture(width = 64): string {
    return this.#r.run(() => super.picture(width));
  }

  override toString(): string {
    if (this.freed) return `Shared${super.toString()}`;
    return this.#r.run(() => `Shared${super.toString()}, ${this.ownersInUse} owner records, ${this.recoveries} recoveries`);
  }

  /** Crashed operations rolled back so far (by any process). */
  get recoveries(): number {
    return this.#r.i32[W.RECOVERIES];
  }

  /** Owner records in use (allocations reclaim() knows the owner of). */
  get ownersInUse(): number {
    return this.#r.i32[W.OWNERS_USED];
  }

  /** @internal For tests: the journal entries of the operation in progress (0 between operations). */
  get journalEntries(): number {
    return this.#r.i32[W.JCOUNT];
  }

  /** @internal For tests: the owner records, in table order. */
  owners(): { index: number; size: number; pid: number; start: number }[] {
    return this.#r.run(() => records(this.#r));
  }
}
