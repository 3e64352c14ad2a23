/*
 * Resource maps — rmallocmap, rmalloc, rmalloc_wait, rmfree, rmfreemap (rmalloc(9F); SPEC Part C).
 *
 * 1. Objects
 * ----------
 * A resource map hands out runs of integer units (bytes, pages, blocks, slots — the map does not care) and
 * takes them back. A map starts empty: the driver rmfree()s the whole resource into it, then rmalloc()s
 * pieces and rmfree()s them again. Index 0 is never a unit: rmalloc returns 0 to mean "no space".
 *
 *   ResourceMap   the public object. Holds the process-local parts only: the engine, the wait queue, the
 *                 warning hook, the name. Everything else is persistent state in an RmapStore.
 *   RmapStore     one ArrayBuffer: a header (configuration, counters, roots) and a pool of nodes stored as
 *                 parallel typed arrays (store.ts). Growable in process; fixed-capacity inside a buffer the
 *                 caller supplies, so that a later layer can place a map in a shared segment. All writes go
 *                 through two primitives, w64() and w32(), where an undo journal can hook in.
 *   engine        ClassicEngine (classic.ts) or VmemEngine (vmem.ts): the allocation policy.
 *
 * 2. Policies (SPEC decision 3)
 * -----------------------------
 *   classic  Solaris ≤ 7 / SVR4: first fit by lowest index, allocation from the low end of the range, free
 *            ranges coalesce with both neighbours, at most `mapsize` free ranges (slots). When a free needs a
 *            new range and no slot is left, the map's overflow rule loses some space and logs it (C.3):
 *              solaris  drop the smaller of the two highest ranges (tie: the highest), retry the free
 *              bsd      insert, then drop the second-highest range (possibly the one just freed)
 *              svr4     drop the range being freed
 *   illumos  vmem instant fit (C.7): power-of-two free lists, newest first; a free inside a span must match
 *            an allocation exactly; a free outside every span adds a span; spans never coalesce; no slots.
 *
 * 3. Invariants (checked by test/rmap against a plain reference of the historical algorithms)
 * ------------------------------------------------------------------------------------------------
 *   classic  the tree's in-order walk is the historical array: sorted by index, pairwise disjoint, never
 *            adjacent, sizes ≥ 1; ranges + free slots = mapsize; free units = Σ sizes; mx[n] ≥ the largest
 *            size in n's subtree, with equality unless n is dirty, and every dirty node's parent dirty
 *            (tree.ts, classic.ts alloc()).
 *   illumos  segments of a span tile it exactly, in address order; no two free segments are neighbours;
 *            every free segment is on list highbit(size) − 1 and that list's bitmap bit is set iff the list
 *            is non-empty; every allocated segment is in the hash, exactly once.
 *   both     no unit is ever handed out twice; a call that panics or throws an argument error leaves the map
 *            unchanged (only the `panics` counter moves).
 *
 * 4. The table of cases
 * ---------------------
 *   call                     classic (Solaris ≤ 7 column of C.4)          illumos (vmem column of C.4)
 *   rmallocmap(0)            panic "mapinit: map too small"               a map (mapsize is ignored)
 *   rmalloc(0)               RangeError — devmap's choice, see below      panic "vmem_xalloc(): size == 0"
 *   rmalloc(n), no fit       0                                            0
 *   rmfree(0, i)             panic "bad rmfree"                           panic bad free / wrong size / bad arguments
 *   rmfree(n, 0)             panic "bad rmfree"                           panic "vmem_add(...): bad arguments"
 *   overlap with free space  panic "bad rmfree"                           inside a span: panic bad free/wrong size
 *   partial return           accepted                                     panic wrong size (or bad free)
 *   outside all space        becomes free space (may overflow, C.3)       a new span; overlapping a span: panic
 *   rmfree, no slot          overflow rule, warning with historical text  impossible (fixed store: "cannot add
 *                                                                         segment" warning, the range is lost)
 * rmalloc(0) on a classic map: Solaris asserted on DEBUG kernels and otherwise returned the first range's base
 * without consuming it — a unit still free, handed out. devmap treats it as the argument error it is.
 *
 * 5. Waiting (C.5)
 * ----------------
 * rmalloc_wait tries at once; on failure it queues a waiter and returns a pending Promise. Every successful
 * rmfree retries every waiter, in queue (arrival) order, inside that rmfree: a waiter whose request
 * now fits takes its space there and then, and its Promise resolves in a later microtask; the others wait on,
 * in place. No fairness is promised, as in every historical kernel: a large request can starve behind small
 * ones. With `fifo: true` a wait never overtakes an earlier one: new requests queue behind existing waiters
 * and a wake stops at the first waiter that still does not fit. An AbortSignal cancels a wait; rmfreemap
 * rejects every waiter. A request larger than anything the map could ever satisfy from the space given so
 * far (classic: the distance from the lowest to the highest unit ever freed in; illumos: the largest span)
 * would sleep forever in a kernel; devmap warns the first time such a waiter sleeps. A sleeping waiter keeps
 * the event loop alive, as a pending timer or waitAsync does (a ref'd timer while any waiter sleeps): a
 * program that awaits rmalloc_wait waits for it, instead of exiting silently with the Promise pending.
 *
 * 6. Cost
 * -------
 *   classic  rmfree O(log n) in the number of free ranges n (AVL descent; the historical array walk is O(n));
 *            rmalloc O(log n) amortized: a shrink only marks maxima dirty, and a search pays once for the
 *            dirty bounds it finds wrong (classic.ts). The overflow rules O(log n).
 *   illumos  rmalloc O(1) (bitmap + list head), except a non-power-of-two request when no larger list has a
 *            member: vmem then searches the request's own list (O(length), as vmem does); rmfree of an
 *            allocation O(1) (hash); adding a span O(log spans).
 *   memory   36 bytes per classic free range; 56 bytes per illumos segment or span plus ~4 of hash bucket.
 */
import { DevmapError, boolean, func, integer, options, rangeError, string, typeError } from '../errors';
import { ClassicEngine, type Lost, OVERFLOW_RULES, type OverflowRule } from './classic';
import { ResourceMapPanic, type ResourceMapWarning, type ResourceMapWarningCode } from './panic';
import { H32, H64, type Policy, RmapStore, State } from './store';
import { VmemEngine } from './vmem';

export type { OverflowRule, Policy };

export interface ResourceMapOptions {
  /** 'classic' (default): first fit, slots, coalescing. 'illumos': vmem instant fit, spans, exact frees. */
  policy?: Policy;
  /** classic only: what a free does when it needs a slot and none is left. Default 'solaris'. */
  overflow?: OverflowRule;
  /** Used in warnings and panic messages. Default 'rmallocmap' (classic) or 'rmap' (illumos). */
  name?: string;
  /** Receives overflow and wait warnings. Default: process.emitWarning(message, { type, code }). */
  onWarning?: (message: string, warning: ResourceMapWarning) => void;
  /** Serve rmalloc_wait strictly in arrival order (no overtaking). Default false: broadcast, every waiter retries. */
  fifo?: boolean;
  /** Storage to format the map into (RmapStore.fixed(...)); default a growable in-process store. */
  store?: RmapStore;
}

export interface WaitOptions {
  signal?: AbortSignal;
}

export interface FreeRange {
  index: number;
  size: number;
}

export interface ResourceMapStats {
  /** Successful allocations, including those made for waiters. */
  allocs: number;
  /** Successful rmfree calls (including ones that lost space to an overflow). */
  frees: number;
  /** rmalloc calls that returned 0. */
  failures: number;
  /** rmfree calls that hit the overflow rule (or, illumos, could not add a span). */
  overflows: number;
  /** Units lost to overflows. */
  lostUnits: number;
  /** rmalloc_wait calls that had to sleep. */
  waits: number;
  /** Retries of sleeping waiters after an rmfree. */
  wakeups: number;
  /** Waits cancelled through their AbortSignal. */
  aborts: number;
  /** Calls that threw a ResourceMapPanic. */
  panics: number;
  /** illumos: own-list segments examined by vmem's slow path. */
  searches: number;
  /** illumos: units in allocated segments (classic maps do not know their allocations: 0). */
  allocatedUnits: number;
}

interface Waiter {
  size: number;
  resolve: (index: number) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const OPTION_KEYS = ['policy', 'overflow', 'name', 'onWarning', 'fifo', 'store'] as const;

/**
 * @internal An options key (a symbol: invisible to options()' key check and to users) that makes the
 * constructor adopt a LIVE `store` as it is — the map another process made — instead of formatting a new
 * one. Used by SharedResourceMap.attach (shared/map.ts).
 */
export const ADOPT_STORE: unique symbol = Symbol('devmap.rmap.adoptStore');
const MAX = Number.MAX_SAFE_INTEGER;
/** The keep-alive timer's period: the longest a timer may have; it never does anything. */
const KEEP_ALIVE_MS = 0x7fffffff;
const noop = () => undefined;

/** A resource map. The DDI functions (rmalloc(mp, size), ...) call these methods. */
export class ResourceMap {
  readonly policy: Policy;
  /** classic: the overflow rule; illumos: undefined. */
  readonly overflow: OverflowRule | undefined;
  readonly name: string;
  readonly fifo: boolean;
  readonly #store: RmapStore;
  readonly #engine: ClassicEngine | VmemEngine;
  readonly #onWarning: (message: string, warning: ResourceMapWarning) => void;
  readonly #waiters: Waiter[] = [];
  /** While a waiter sleeps: a ref'd timer, so that the event loop stays alive as for a pending waitAsync. */
  #keepAlive: ReturnType<typeof setInterval> | undefined;

  /** Same as rmallocmap(mapsize, options). */
  constructor(mapsize: number, opts?: ResourceMapOptions) {
    const o = options<ResourceMapOptions>(opts, 'options', OPTION_KEYS);
    const policy = o.policy === undefined ? 'classic' : oneOf(o.policy, 'options.policy', ['classic', 'illumos'] as const);
    let overflow: OverflowRule | undefined;
    if (policy === 'classic') overflow = o.overflow === undefined ? 'solaris' : oneOf(o.overflow, 'options.overflow', OVERFLOW_RULES);
    else if (o.overflow !== undefined) throw rangeError("undefined (overflow rules apply to the classic policy only)", 'options.overflow', o.overflow);
    const name = o.name === undefined ? (policy === 'classic' ? 'rmallocmap' : 'rmap') : string(o.name, 'options.name');
    this.#onWarning = o.onWarning === undefined ? emitWarning : func(o.onWarning, 'options.onWarning');
    this.fifo = boolean(o.fifo, 'options.fifo', false);
    integer(mapsize, 'mapsize');
    const adopt = (opts as { [ADOPT_STORE]?: boolean } | undefined)?.[ADOPT_STORE] === true;
    let store: RmapStore;
    if (o.store === undefined) store = RmapStore.growable(policy, policy === 'classic' ? Math.max(1, Math.min(mapsize, 16)) : 16);
    else {
      if (!(o.store instanceof RmapStore)) throw typeError('an RmapStore', 'options.store', o.store);
      store = o.store;
      if (store.policy !== policy) throw rangeError(`a store made for the ${policy} policy`, 'options.store', `a ${store.policy} store`);
      if (adopt) {
        if (store.h32[H32.STATE] !== State.LIVE) throw rangeError('a live store to adopt', 'options.store', 'a store that is not live');
      } else if (store.h32[H32.STATE] !== State.NEW) throw rangeError('a store no map has used yet', 'options.store', 'a used store');
      if (policy === 'classic' && store.capacity < mapsize) {
        throw rangeError(`a store with room for ${mapsize} ranges`, 'options.store', `a store of ${store.capacity} nodes`);
      }
    }
    // SPEC C.2: Solaris' mapinit panics when the map has no room for one range.
    if (policy === 'classic' && mapsize === 0) {
      throw new ResourceMapPanic('ERR_DEVMAP_RMAP_MAP_TOO_SMALL', 'mapinit: map too small', 'rmallocmap', 0, 0);
    }
    this.policy = policy;
    this.overflow = overflow;
    this.name = name;
    this.#store = store;
    if (!adopt) {
      store.w64(store.h64, H64.MAPSIZE, mapsize);
      store.w64(store.h64, H64.FREE_SLOTS, policy === 'classic' ? mapsize : 0);
      store.w32(store.h32, H32.OVERFLOW, overflow === undefined ? 0 : OVERFLOW_RULES.indexOf(overflow));
      store.w32(store.h32, H32.STATE, State.LIVE);
    } else if (store.h64[H64.MAPSIZE] !== mapsize || store.h32[H32.OVERFLOW] !== (overflow === undefined ? 0 : OVERFLOW_RULES.indexOf(overflow))) {
      throw rangeError('the mapsize and overflow rule the store was made with', 'options.store', 'a store made otherwise');
    }
    this.#engine = policy === 'classic' ? new ClassicEngine(store, name) : new VmemEngine(store, name);
  }

  /**
   * rmalloc(9F): allocates `size` units and returns the index of the first, or 0 when no space fits. Never
   * waits. classic: the lowest-index range that fits; illumos: vmem instant fit.
   */
  alloc(size: number): number {
    this.#live();
    if (!isCount(size) || size === 0) this.#checkSize(size);
    const index = this.#engine.alloc(size);
    this.#count(index === 0 ? H64.FAILURES : H64.ALLOCS);
    return index;
  }

  /**
   * rmalloc_wait(9F): like alloc, but when nothing fits the Promise stays pending until an rmfree makes room
   * (it then resolves with the index), the signal aborts (AbortError, code ABORT_ERR) or the map is freed
   * (DevmapError ERR_DEVMAP_RMAP_FREED). Argument errors and panics reject.
   */
  allocWait(size: number, opts?: WaitOptions): Promise<number> {
    try {
      this.#live();
      const o = options<WaitOptions>(opts, 'options', ['signal']);
      const signal = o.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('an AbortSignal', 'options.signal', signal);
      this.#checkSize(size);
      if (signal?.aborted) return Promise.reject(abortError(signal));
      if (!(this.fifo && this.#waiters.length > 0)) {
        const index = this.#engine.alloc(size);
        if (index !== 0) {
          this.#count(H64.ALLOCS);
          return Promise.resolve(index);
        }
      }
      this.#count(H64.WAITS);
      warnIfTooLarge(this.#engine, this.name, size, (code, message) => this.#warn(code, message, 0, size));
      return new Promise<number>((resolve, reject) => {
        const w: Waiter = { size, resolve, reject, signal, onAbort: undefined };
        if (signal !== undefined) {
          w.onAbort = () => {
            this.#dequeue(w);
            this.#count(H64.ABORTS);
            reject(abortError(signal));
            if (this.fifo) this.#wake(); // the head may have been what held the others back
          };
          signal.addEventListener('abort', w.onAbort, { once: true });
        }
        this.#waiters.push(w);
        this.#keepAlive ??= setInterval(noop, KEEP_ALIVE_MS);
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * rmfree(9F): returns [index, index + size) to the map (or adds it, the first time), then retries every
   * waiter. Panics (ResourceMapPanic) on the inputs of SPEC C.4 without changing the map; space an overflow
   * loses is reported through the warning hook with the historical message.
   */
  free(size: number, index: number): void {
    this.#live();
    if (!isCount(size)) integer(size, 'size');
    if (!isCount(index)) integer(index, 'index');
    if (size > MAX - index) throw rangeError(`an integer from 0 to ${MAX - size} (index + size must stay ≤ 2^53 − 1)`, 'index', index);
    let lost: Lost | null;
    try {
      lost = this.#engine.free(size, index);
    } catch (err) {
      if (err instanceof ResourceMapPanic) this.#count(H64.PANICS);
      throw err;
    }
    this.#count(H64.FREES);
    if (lost !== null) this.#report(lost);
    else if (this.#waiters.length > 0) this.#wake();
  }

  /** An rmfree lost space (C.3): count it, warn with the historical message, then wake the waiters anyway. */
  #report(lost: Lost): void {
    try {
      this.#count(H64.OVERFLOWS);
      const s = this.#store;
      s.w64(s.h64, H64.LOST, s.h64[H64.LOST] + lost.size);
      this.#warn(this.policy === 'classic' ? 'DEVMAP_RMAP_OVERFLOW' : 'DEVMAP_RMAP_NO_SEGMENT', lost.message, lost.index, lost.size);
    } finally {
      this.#wake();
    }
  }

  /**
   * rmfreemap(9F): frees the map. Waiters are rejected with ERR_DEVMAP_RMAP_FREED; an illumos map with units
   * still allocated warns as vmem_destroy does. Every later call on the map throws ERR_DEVMAP_RMAP_FREED.
   */
  destroy(): void {
    this.#live();
    const s = this.#store;
    s.w32(s.h32, H32.STATE, State.FREED);
    const rejected = this.#waiters.splice(0);
    this.#settled();
    for (const w of rejected) {
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      w.reject(new DevmapError('ERR_DEVMAP_RMAP_FREED', `rmfreemap(${this.name}) freed the map while rmalloc_wait(${w.size}) was waiting`));
    }
    const leaked = s.h64[H64.ALLOCATED];
    if (leaked > 0) this.#warn('DEVMAP_RMAP_LEAKED', `vmem_destroy('${this.name}'): leaked ${leaked} bytes`, 0, leaked);
  }

  // ---- introspection ----

  /** True once rmfreemap has run. */
  get freed(): boolean {
    return this.#store.h32[H32.STATE] === State.FREED;
  }

  /** The free ranges in index order. */
  freeRanges(): FreeRange[] {
    this.#live();
    const out: FreeRange[] = [];
    this.#engine.walk((index, size) => out.push({ index, size }));
    return out;
  }

  /** Units currently free. */
  get freeUnits(): number {
    this.#live();
    return this.#store.h64[H64.FREE_UNITS];
  }

  /** The largest free range (0 when none). */
  get largestFree(): number {
    this.#live();
    return this.#engine.largest();
  }

  /** The number of free ranges (classic: slots in use; illumos: free segments). */
  get ranges(): number {
    this.#live();
    return this.#store.h64[H64.RANGES];
  }

  /** classic: mapsize; illumos: Infinity (no slot limit). */
  get slots(): number {
    this.#live();
    return this.policy === 'classic' ? this.#store.h64[H64.MAPSIZE] : Infinity;
  }

  /** Slots a free can still use for a new range (illumos: Infinity). */
  get slotsFree(): number {
    this.#live();
    return this.policy === 'classic' ? this.#store.h64[H64.FREE_SLOTS] : Infinity;
  }

  /** rmalloc_wait calls currently sleeping. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** The storage (for sizing and for tests; do not write to it). */
  get store(): RmapStore {
    return this.#store;
  }

  stats(): ResourceMapStats {
    this.#live();
    return countersOf(this.#store.h64);
  }

  /**
   * A one-line picture of the space given to the map, `width` cells at most: '.' all free, '#' none free,
   * ':' partly free, ' ' (illumos) outside every span. E.g. [####....##.#]. Each cell covers
   * ceil(extent / width) units, from the lowest unit ever given to the map.
   */
  picture(width = 64): string {
    this.#live();
    integer(width, 'width', 1, 10_000);
    const known: FreeRange[] = [];
    if (this.#engine instanceof VmemEngine) this.#engine.spans((index, size) => known.push({ index, size }));
    else {
      const [low, high] = this.#engine.extent();
      if (high > low) known.push({ index: low, size: high - low });
    }
    if (known.length === 0) return '[]';
    const low = known[0].index;
    const last = known[known.length - 1];
    const extent = last.index + last.size - low;
    // Only a store written by something else (a corrupt shared segment) has no positive, safe extent.
    if (!(extent >= 1 && Number.isSafeInteger(extent) && Number.isSafeInteger(low))) {
      throw new DevmapError('ERR_DEVMAP_CORRUPT', `resource map ${this.name}: its extent [${low}, +${extent}) is not a range of units`);
    }
    const per = Math.ceil(extent / width);
    const cells = Math.ceil(extent / per);
    const inside = coverage(known, low, per, cells);
    const free = coverage(this.freeRanges(), low, per, cells);
    let out = '[';
    for (let c = 0; c < cells; c++) {
      out += inside[c] === 0 ? ' ' : free[c] === inside[c] ? '.' : free[c] === 0 ? '#' : ':';
    }
    return out + ']';
  }

  toString(): string {
    const kind = this.policy === 'classic' ? `classic/${this.overflow}` : 'illumos';
    if (this.freed) return `ResourceMap ${this.name} (${kind}, freed)`;
    const slots = this.policy === 'classic' ? `, ${this.slotsFree}/${this.slots} slots free` : '';
    return (
      `ResourceMap ${this.name} (${kind}): ${this.ranges} free ranges, ${this.freeUnits} free units, ` +
      `largest ${this.largestFree}${slots}, ${this.waiting} waiting ${this.picture()}`
    );
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  // ---- private ----

  #live(): void {
    assertLive(this.#store, this.name);
  }

  #checkSize(size: number): void {
    checkRequestSize(size, this.policy, () => this.#count(H64.PANICS));
  }

  #count(field: number): void {
    const h = this.#store.h64;
    this.#store.w64(h, field, h[field] + 1);
  }

  #warn(code: ResourceMapWarningCode, message: string, index: number, size: number): void {
    this.#onWarning(message, { code, map: this.name, index, size });
  }

  #dequeue(w: Waiter): void {
    const i = this.#waiters.indexOf(w);
    if (i >= 0) this.#waiters.splice(i, 1);
    this.#settled();
  }

  /** No waiter left: the event loop may end. */
  #settled(): void {
    if (this.#waiters.length === 0 && this.#keepAlive !== undefined) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
    }
  }

  /** C.5: broadcast — every waiter retries, in queue order (fifo: stop at the first that does not fit). */
  #wake(): void {
    if (this.#waiters.length === 0 || this.#store.h32[H32.STATE] !== State.LIVE) return;
    for (const w of this.#waiters.slice()) {
      if (!this.#waiters.includes(w)) continue;
      this.#count(H64.WAKEUPS);
      const index = this.#engine.alloc(w.size);
      if (index === 0) {
        if (this.fifo) return;
        continue;
      }
      this.#count(H64.ALLOCS);
      this.#dequeue(w);
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      w.resolve(index);
    }
  }
}

/** The hot-path form of integer(): a safe integer ≥ 0. The slow path (integer()) builds the error. */
function isCount(v: unknown): v is number {
  return typeof v === 'number' && v >= 0 && v <= MAX && Math.floor(v) === v;
}

function extentOf(engine: ClassicEngine): number {
  const [low, high] = engine.extent();
  return high - low;
}

/**
 * @internal A waiter about to sleep for more than the whole resource (C.5: it would sleep for ever in a kernel):
 * warn. classic: the span from the lowest to the highest unit ever freed in; illumos: the largest span.
 */
export function warnIfTooLarge(
  engine: ClassicEngine | VmemEngine, name: string, size: number, warn: (code: ResourceMapWarningCode, message: string) => void,
): void {
  const limit = engine instanceof ClassicEngine ? extentOf(engine) : engine.limit();
  if (size > limit) {
    warn(
      'DEVMAP_RMAP_WAIT_TOO_LARGE',
      `rmalloc_wait(${name}, ${size}): the request is larger than the whole resource (${limit} units); ` +
        'it can only succeed after more space is added with rmfree',
    );
  }
}

/** Units of `ranges` (sorted, disjoint) falling in each of `cells` cells of `per` units from `low`. */
function coverage(ranges: FreeRange[], low: number, per: number, cells: number): Float64Array {
  const out = new Float64Array(cells);
  const limit = cells * per; // ranges reaching outside the extent (only in a corrupt store) are cut to it
  for (const { index, size } of ranges) {
    let a = Math.max(0, index - low);
    const b = Math.min(index - low + size, limit);
    while (a < b) {
      const c = Math.floor(a / per);
      const cellEnd = Math.min((c + 1) * per, b);
      out[c] += cellEnd - a;
      a = cellEnd;
    }
  }
  return out;
}

function oneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string') throw typeError('a string', name, value);
  if (!(allowed as readonly string[]).includes(value)) throw rangeError(`one of ${allowed.map((a) => `'${a}'`).join(', ')}`, name, value);
  return value as T;
}

/** @internal The default warning hook of both map kinds. */
export function emitWarning(message: string, warning: ResourceMapWarning): void {
  process.emitWarning(message, { type: 'ResourceMapWarning', code: warning.code });
}

/** @internal The AbortError both map kinds reject a cancelled rmalloc_wait with. */
export function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  err.name = 'AbortError';
  err.code = 'ABORT_ERR';
  return err;
}

/** @internal The counters a store's header holds (shared by ResourceMap and SharedResourceMap). */
export function countersOf(h: Float64Array): ResourceMapStats {
  return {
    allocs: h[H64.ALLOCS],
    frees: h[H64.FREES],
    failures: h[H64.FAILURES],
    overflows: h[H64.OVERFLOWS],
    lostUnits: h[H64.LOST],
    waits: h[H64.WAITS],
    wakeups: h[H64.WAKEUPS],
    aborts: h[H64.ABORTS],
    panics: h[H64.PANICS],
    searches: h[H64.SEARCHES],
    allocatedUnits: h[H64.ALLOCATED],
  };
}

/** @internal Throws ERR_DEVMAP_RMAP_FREED once the map in `store` has been freed (shared by both map kinds). */
export function assertLive(store: RmapStore, name: string): void {
  if (store.h32[H32.STATE] !== State.LIVE) {
    throw new DevmapError('ERR_DEVMAP_RMAP_FREED', `resource map ${name} has been freed (rmfreemap)`);
  }
}

/**
 * @internal A request size: a safe integer ≥ 1. Zero follows the table in the essay (4): a RangeError for a
 * classic map, a counted panic for an illumos one.
 */
export function checkRequestSize(size: number, policy: Policy, countPanic: () => void): void {
  integer(size, 'size');
  if (size === 0) {
    if (policy === 'classic') throw rangeError(`an integer from 1 to ${MAX}`, 'size', size);
    countPanic();
    throw new ResourceMapPanic('ERR_DEVMAP_RMAP_ZERO_SIZE', 'vmem_xalloc(): size == 0', 'rmalloc', 0, 0);
  }
}
