/*
 * Mapping: one real mmap(2) region, and the views JavaScript reads and writes it through.
 *
 * The rule this module exists to keep: JavaScript never touches an address that is not mapped readable and
 * writable. Three mechanisms keep it.
 *
 *  1. Views are external ArrayBuffers the Mapping remembers (weakly). unmap() — of the whole or of a part —
 *     replaces the pages with trash pages (below) and leaves the views attached: Node APIs hold views across
 *     asynchronous work and some check them as they go (zlib aborts the process when a buffer it holds turns
 *     out detached), so detaching is not safe, and with trash pages it is not needed — a stale view reads
 *     zeros and writes into private memory. `Mapping.of(view).mapped` says a view is stale; devmap's own calls
 *     refuse one with ERR_DEVMAP_UNMAPPED. (devmap's own layers read through internalBuffer(), which unmap
 *     does detach: those views never reach a Node API.) A view wholly inside surviving pages is handed to the
 *     surviving piece and keeps working; a view across the hole stays with the unmapped Mapping, still
 *     reaching the surviving pages, and every piece it overlaps tracks it.
 *  2. Views are only created over pages that are readable and writable. A typed array cannot be made
 *     read-only, and a write to a read-only page kills the process, so read-only pages are reached through
 *     read() (a copy) or mapped copy-on-write (shared: false) instead.
 *  3. Lifetime: each view carries its Mapping in a private field (a live view keeps its Mapping alive
 *     without a visible property), and a FinalizationRegistry unmaps a Mapping only once neither it nor any
 *     of its views is reachable. The held value is a small Cell that does not reference the Mapping.
 *
 * Lowering a protection (protect() below read+write) keeps the pages where they are, so trash pages are no
 * answer there, and detaching is no answer either (zlib aborts). What could fault is whatever was made before
 * the call: a view, a thread-pool request running on one, a store a transfer or a BYOB read moved out. So the
 * lower protection holds at once for devmap — no new view of those pages, read() and devmap's own calls go by
 * the record — and reaches the kernel only once none of those can reach the pages any more: no view object
 * over them is alive and every store of the lineage is accounted for (the store counters, quarantine.ts).
 * Until then the views made before keep the access they had, as an I/O already under way keeps the pages it
 * pinned when Linux changes a protection. Raising a protection is applied at once.
 *
 * Views of a simulated process. Inside a simulated address space (lib/kernel) a view stands for a process's
 * translation: once its driver unloads the pages (devmap_unload is a protect()), or they are protected or
 * unmapped, the view must reach them no more, and detaching is still not safe. So the views of a shared
 * mapping there are made over aliases of its pages (alias.ts), and taking the pages away from the views turns
 * that part of the alias into trash while the pages themselves change at once. A view over other pages of the
 * same alias keeps reaching them. Private mappings there cannot be aliased; their views follow the rules above.
 *
 * What takes pages away never unmaps them under JavaScript: quarantine.ts replaces them with trash pages first
 * (or punches a plain shared anonymous object empty) and gives the range back once nothing can reach it (the
 * trash-page rule). A peer that truncates the object costs the Mapping, not the process: the addon's SIGBUS
 * handler puts a trash page in place and flags the row, and the next call throws ERR_DEVMAP_TRUNCATED (so does
 * a shrink of the object by this process, which takes the lost pages away first). Everything an argument or
 * option says is read once, before any address is computed.
 *
 * A partial unmap is page-granular: the unmapped range is [offset, roundUp(offset + length)), the old
 * Mapping becomes unmapped and the 0, 1 or 2 surviving pieces come back as new Mappings, each with its own
 * Cell. Addresses travel as numbers internally (user-space addresses are below 2^53) and are shown as bigint.
 */
import { inspect } from 'node:util';
import { DevmapError, check, integer, optionalInteger, options, rangeError, systemError, typeError } from '../errors';
import { native } from '../native';
import { PAGE_ADVICE, PROT_READ, PROT_WRITE, SAFE_ADVICE, MS_ASYNC, MS_INVALIDATE, MS_SYNC } from './constants';
import { aliasView, covers, makeAlias, pinAlias, trash as trashAlias, viewsInside, type Alias } from './alias';
import { makeBuffer } from './buffer';
import { assertMapSlots, roomMade, spendMapSlots } from './map-count';
import { pageSize } from './page';
import {
  FLAG_PINNED, FLAG_TRUNCATED, ROW_LIVE, ROW_NESTED, ROW_TRASH, counterOf, givePunched, mayPunch, newLineage, objectGone, quarantine, rowFlags, settle,
  storeCounts, takeAway, viewed, type HoldWatcher, type Lineage,
} from './quarantine';

/** How a Mapping gives its pages back: munmap, or (inside a simulated address space) re-reserve them. */
export type Releaser = (addr: number, length: number, lineage: Lineage) => number;
export type { HoldWatcher } from './quarantine';

interface Cell {
  addr: number;
  /** Bytes really mapped: the requested length rounded up to the granule. */
  mapped: number;
  live: boolean;
  /** The row of the addon's range table for these pages (-1: none). */
  row: number;
  lineage: Lineage;
  /** Registered with the FinalizationRegistry (counted in lineage.objects). */
  registered: boolean;
  /** The memory object and the offset in it, for shrinkMappings (files and shm only). */
  object: ObjectRef | undefined;
  /**
   * The fork count at which the shared anonymous object under these pages was made, while unmap may punch it
   * instead of trash-mapping it (quarantine.ts); -1 otherwise (any other mapping, a piece, advise() or lock()).
   */
  born: number;
}

/** Which memory object a Mapping maps, and from where. */
export interface ObjectRef {
  key: string;
  offset: number;
}

interface View {
  ref: WeakRef<ArrayBuffer>;
  offset: number;
  length: number;
  /** Made by devmap's own layers (internalBuffer): never handed to a Node API, so unmap may detach it. */
  internal: boolean;
}

const RW = PROT_READ | PROT_WRITE;
const NO_ALIASES: Alias[] = [];
/**
 * Protection runs are replaced, never written in place, so a Mapping with one protection shares these arrays
 * (one less allocation on the map/unmap hot path).
 */
const FIRST_RUN: number[] = [0];
const SINGLE_RUN: number[][] = Array.from({ length: 8 }, (_, p) => [p]);
/** Shared by every Mapping that never made a view; replaced on the first one, never written. */
const NO_VIEWS: View[] = [];
/** Shared by every Mapping with no deferred protection; replaced, never written. */
const NO_RANGES: readonly number[] = Object.freeze([]);

/** The flat [start, end) pairs of `ranges` with [start, end) cut out of them. */
function subtractRange(ranges: readonly number[], start: number, end: number): readonly number[] {
  if (ranges.length === 0) return ranges;
  const out: number[] = [];
  for (let i = 0; i < ranges.length; i += 2) {
    const [s, e] = [ranges[i], ranges[i + 1]];
    if (e <= start || s >= end) out.push(s, e);
    else {
      if (s < start) out.push(s, start);
      if (e > end) out.push(end, e);
    }
  }
  return out.length === 0 ? NO_RANGES : out;
}

/*
 * Mappings with a lowered protection the kernel does not have yet, tried again every 50 ms (the timer does not
 * keep the process alive) until nothing made before the protect() can reach those pages.
 */
let applyDeferredOf: (m: Mapping) => boolean;
const deferring = new Set<Mapping>();
let deferTimer: NodeJS.Timeout | undefined;

function deferProtection(m: Mapping): void {
  deferring.add(m);
  deferTimer ??= setInterval(applyDeferredProtections, 50).unref();
}

function applyDeferredProtections(): void {
  for (const m of deferring) if (applyDeferredOf(m)) deferring.delete(m);
  if (deferring.size === 0 && deferTimer !== undefined) {
    clearInterval(deferTimer);
    deferTimer = undefined;
  }
}
/*
 * A Mapping collected while still mapped: nothing in JavaScript holds it or a view of it (each view holds its
 * Mapping). Its pages are taken away like unmap's (a store a transfer moved elsewhere may still read them: it
 * reads zeros from then on) and join the lineage's quarantine. A retired Mapping's pages are there already.
 */
const finalizer = new FinalizationRegistry<Cell>((cell) => {
  if (cell.live) {
    cell.live = false;
    forget(cell);
    const nested = cell.lineage.nested ? ROW_NESTED : 0;
    if (native().retire(cell.row, cell.addr, cell.mapped, ROW_TRASH | nested) === 0) quarantine(cell.lineage, cell.row, cell.addr, cell.mapped);
  }
  objectGone(cell.lineage);
});

/*
 * Every view handed out carries the Mapping that owns its pages now in a private field: a strong edge from
 * the view to its Mapping (a live view keeps the Mapping, and so its quarantine, alive), that no caller can see
 * or forge, and cheaper than a WeakMap entry. The base class returns the buffer itself, so `new Owned(ab)`
 * stamps `ab`.
 */
const Stamp = function (this: unknown, target: object) {
  return target;
} as unknown as new (target: object) => object;
class Owned extends Stamp {
  #owner: Mapping | undefined;
  static set(ab: ArrayBuffer, m: Mapping): void {
    if (#owner in ab) (ab as unknown as Owned).#owner = m;
    else new Owned(ab).#owner = m;
  }
  static get(ab: object): Mapping | undefined {
    return #owner in ab ? (ab as unknown as Owned).#owner : undefined;
  }
  private constructor(ab: object) {
    super(ab);
  }
}

/** Live mappings of files and shm objects, by object: what a shrink by this process must take pages from. */
const byObject = new Map<string, Set<Cell>>();

function remember(cell: Cell): void {
  const ref = cell.object;
  if (ref === undefined) return;
  let set = byObject.get(ref.key);
  if (set === undefined) byObject.set(ref.key, (set = new Set()));
  set.add(cell);
}

function forget(cell: Cell): void {
  const ref = cell.object;
  if (ref === undefined) return;
  const set = byObject.get(ref.key);
  if (set !== undefined && set.delete(cell) && set.size === 0) byObject.delete(ref.key);
}

/**
 * Before the object `key` is cut to `size` bytes: every live mapping of it in this thread loses the pages past
 * the new end first (trash pages in their place, the Mapping flagged truncated), so the cut cannot SIGBUS us.
 */
export function shrinkMappings(key: string, size: number): void {
  const set = byObject.get(key);
  if (set === undefined) return;
  const end = Math.ceil(size / pageSize) * pageSize;
  for (const cell of set) {
    const from = Math.max(0, end - cell.object!.offset);
    if (!cell.live || from >= cell.mapped) continue;
    check(takeAway(cell.addr + from, cell.mapped - from), 'mmap');
    if (cell.row >= 0) Atomics.or(rowFlags(), cell.row, FLAG_TRUNCATED);
  }
}

function truncated(): DevmapError {
  return new DevmapError(
    'ERR_DEVMAP_TRUNCATED',
    'The object under this Mapping was truncated (a fault occurred in a recent access to its pages, or this process shrank it): ' +
      'the lost pages now read as zeros. unmap() it and map the object again.',
  );
}

/*
 * ArrayBuffer.prototype.transfer() and transferToFixedLength() (Node 21+; not in Node 20) MOVE an external
 * backing store into a new ArrayBuffer devmap does not know. That is no longer a crash (the store counter keeps
 * the pages quarantined until the new buffer dies, quarantine.ts), but the new buffer escapes unmap's detach —
 * it keeps reading the trash pages — and unlike devmap's own views it can be posted to another thread, past
 * the teardown of the Worker that mapped it. So this realm refuses them for devmap's views, as a courtesy
 * that names the mistake; slice() copies. A transfer taken from another realm still works and is safe
 * within this thread.
 */
for (const name of ['transfer', 'transferToFixedLength'] as const) {
  const proto = ArrayBuffer.prototype as unknown as Record<string, (this: ArrayBuffer, ...args: unknown[]) => ArrayBuffer>;
  const original = proto[name];
  if (typeof original !== 'function') continue;
  const guarded = {
    [name](this: ArrayBuffer, ...args: unknown[]): ArrayBuffer {
      if (Owned.get(this) !== undefined) {
        throw new DevmapError(
          'ERR_DEVMAP_TRANSFER',
          `A view of mapped memory cannot be transferred: ArrayBuffer.prototype.${name} would move it out of its ` +
            'Mapping, past unmap. Copy it with slice(), or map a new view.',
        );
      }
      return original.apply(this, args);
    },
  }[name];
  Object.defineProperty(proto, name, { ...Object.getOwnPropertyDescriptor(proto, name), value: guarded });
}

/*
 * Registration with the FinalizationRegistry is deferred to the end of the current task (or to every 1024 new
 * Mappings, whichever comes first): a Mapping unmapped before then — the map-use-unmap pattern — never pays for
 * it. Until it is registered, the pending list holds the Mapping strongly, so it cannot be collected unregistered.
 */
let registerNow: (m: Mapping) => void;
const pendingRegistration: Mapping[] = [];
let flushQueued = false;

function flushRegistrations(): void {
  flushQueued = false;
  for (const m of pendingRegistration) registerNow(m);
  pendingRegistration.length = 0;
}

function registerSoon(m: Mapping): void {
  pendingRegistration.push(m);
  if (pendingRegistration.length >= 1024) flushRegistrations();
  else if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flushRegistrations);
  }
}

/** Set by Mapping's static block: changes a Mapping's pin count (private to this module and pin/unpin). */
let addPins: (m: Mapping, delta: number) => void;

/** @internal Pins a Mapping (a held Mutex lives in it) until unpin(); unmap() refuses meanwhile. */
export function pin(m: Mapping): void {
  addPins(m, 1);
}

/** @internal */
export function unpin(m: Mapping): void {
  addPins(m, -1);
}

let pinsOf: (m: Mapping) => number;

/** @internal True while a Mutex in the Mapping is held by this thread (unmap() and a lower protect() refuse). */
export function pinned(m: Mapping): boolean {
  return pinsOf(m) > 0;
}

let internalBufferOf: (m: Mapping) => ArrayBuffer;
let internalViewOf: (m: Mapping, offset: number, length: number) => ArrayBuffer;

/** The owner of views taken away while their Mapping lives on (alias.ts): an unmapped Mapping of no pages. */
let staleOwner: Mapping | undefined;
let makeStaleOwner: () => Mapping;

function markStale(ab: ArrayBuffer): void {
  Owned.set(ab, (staleOwner ??= makeStaleOwner()));
}

/**
 * @internal The whole-mapping view for devmap's own layers (a channel's or a shared map's words), which never
 * hand it to a Node API: unlike Mapping#buffer, unmap() detaches it, so their `length === 0` checks keep
 * saying "unmapped".
 */
export function internalBuffer(m: Mapping): ArrayBuffer {
  return internalBufferOf(m);
}

/**
 * @internal A view of [offset, offset + length) for devmap's own layers, over the pages themselves (never an
 * alias): a copy the kernel layer makes and drops at once. Detached by unmap and protect, never counted.
 */
export function internalView(m: Mapping, offset: number, length: number): ArrayBuffer {
  return internalViewOf(m, offset, length);
}

/** The Mapping whose pages `buffer` views, if it is one of devmap's views. */
export function ownerOf(buffer: ArrayBuffer): Mapping | undefined {
  return buffer !== null && typeof buffer === 'object' ? Owned.get(buffer) : undefined;
}

/** The lineage the next Mapping constructed joins (set by #piece just before it constructs one). */
let lineageInit: Lineage | undefined;

export interface MappingInit {
  addr: number;
  length: number;
  prot: number;
  shared: boolean;
  granule?: number;
  /** How the pages are given back once released (default munmap); implies they lie inside a reservation. */
  release?: Releaser;
  /** With release: told when pages start and stop waiting in quarantine (reservation.ts). */
  hold?: HoldWatcher;
  /** The row of the range table the caller made for these pages (default: none yet, one is added). */
  row?: number;
  /** The memory object mapped, for shrinkMappings. */
  object?: ObjectRef;
  /** A plain shared anonymous mapping: the fork count at which its object was made (map.ts). Default -1. */
  born?: number;
  /**
   * Unmap by finalizer when nothing references the Mapping (default true). A mapping placed inside a
   * reservation turns this off: the reservation's own finalizer releases the whole range, and a late
   * MAP_FIXED re-reserve after that could land on someone else's pages.
   */
  finalize?: boolean;
  /** An object kept alive as long as this Mapping (or any of its views) is: e.g. the reservation around it. */
  anchor?: object;
  /** Views are made over aliases of the pages (a shared mapping in a simulated process's address space). */
  aliasViews?: boolean;
  /**
   * Whether something else still reaches part of [addr, addr + len) (absolute): stale views of a range held
   * where this mapping was placed (reservation.ts). A lower protection waits for it too.
   */
  reachedElsewhere?: (addr: number, len: number) => boolean;
}

export class Mapping {
  #cell: Cell;
  #length: number;
  #shared: boolean;
  #granule: number;
  /** Protection runs: byte offset where each run starts (ascending, first is 0) and its prot. */
  #runStarts: number[];
  #runProts: number[];
  #buffer: ArrayBuffer | undefined;
  /** The whole-mapping view devmap's own layers read through (internalBuffer): detached by unmap. */
  #internal: ArrayBuffer | undefined;
  #views: View[] = NO_VIEWS;
  #compactAt = 16;
  #finalize: boolean;
  #anchor: object | undefined;
  #aliasViews: boolean;
  #reachedElsewhere: ((addr: number, len: number) => boolean) | undefined;
  /** Held Mutexes in this mapping (a count, not a WeakMap entry: lock/unlock is a hot path). */
  #pins = 0;
  /** The aliases this Mapping's views are made over (shared mappings inside a simulated address space). */
  #aliases: Alias[] = NO_ALIASES;
  /** Ranges (flat start, end pairs) whose recorded protection below read+write the kernel does not have yet. */
  #deferred: readonly number[] = NO_RANGES;

  static {
    addPins = (m, delta) => {
      const was = m.#pins;
      m.#pins = Math.max(0, was + delta);
      // The row's PINNED flag keeps a Worker's teardown from unmapping a held Mutex's pages before the kernel
      // walks the dying thread's robust list (native/regions.cc).
      const row = m.#cell.row;
      // A held Mutex's words may lie in an alias: it stays while they are on the thread's robust list.
      if ((was === 0) !== (m.#pins === 0)) for (const a of m.#aliases) pinAlias(a, m.#pins > 0);
      if (row >= 0 && (was === 0) !== (m.#pins === 0)) {
        if (m.#pins > 0) Atomics.or(rowFlags(), row, FLAG_PINNED);
        else Atomics.and(rowFlags(), row, ~FLAG_PINNED);
      }
    };
    pinsOf = (m) => m.#pins;
    makeStaleOwner = () => {
      const m = new Mapping({ addr: 0, length: 1, prot: 0, shared: false, row: -1, finalize: false }, internal);
      m.#cell.live = false;
      return m;
    };
    internalViewOf = (m, offset, length) => {
      m.#assertMapped();
      offset = integer(offset, 'offset');
      length = integer(length, 'length', 1);
      m.#range(offset, length, false);
      return m.#newView(offset, length, false, true);
    };
    internalBufferOf = (m) => {
      m.#assertMapped();
      if (m.#internal === undefined || m.#internal.byteLength === 0) m.#internal = m.#newView(0, m.#length, true, true);
      return m.#internal;
    };
    applyDeferredOf = (m) => m.#applyDeferred();
    registerNow = (m) => {
      const cell = m.#cell;
      // An unmapped Mapping needs no finalizer: it can make no new view, so its lineage's store counter alone
      // says when nothing reaches its pages (settle() polls it).
      if (cell.registered || !cell.live) return;
      cell.registered = true;
      cell.lineage.objects++;
      finalizer.register(m, cell);
    };
  }

  /** @internal Use mapAnonymous(), mapFile() or SharedMemory#map(). */
  constructor(init: MappingInit, token?: symbol) {
    if (token !== internal) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'Mapping is not constructible; use mapAnonymous(), mapFile() or SharedMemory#map()');
    const granule = init.granule ?? pageSize;
    const mapped = Math.ceil(init.length / granule) * granule;
    const release = init.release;
    const lineage: Lineage = lineageInit ?? (release === undefined ? newLineage() : newLineage(true, (row, addr, len) => {
      native().row_remove(row);
      release(addr, len, lineage);
    }, init.hold));
    lineageInit = undefined;
    const row = init.row ?? native().row_add(init.addr, mapped, ROW_LIVE | (lineage.nested ? ROW_NESTED : 0));
    this.#cell = { addr: init.addr, mapped, live: true, row, lineage, registered: false, object: init.object, born: init.born ?? -1 };
    remember(this.#cell);
    this.#length = init.length;
    this.#shared = init.shared;
    this.#granule = granule;
    this.#runStarts = FIRST_RUN;
    this.#runProts = SINGLE_RUN[init.prot] ?? [init.prot];
    this.#finalize = init.finalize ?? true;
    this.#anchor = init.anchor;
    this.#aliasViews = init.aliasViews ?? false;
    this.#reachedElsewhere = init.reachedElsewhere;
    if (this.#finalize) registerSoon(this);
  }

  /** The real virtual address of the first byte. */
  get address(): bigint {
    return BigInt(this.#cell.addr);
  }
  /** Length in bytes, as asked for (the pages mapped extend it to a page multiple). */
  get length(): number {
    return this.#length;
  }
  get mapped(): boolean {
    return this.#cell.live;
  }
  get shared(): boolean {
    return this.#shared;
  }
  /** The unit of unmap/protect offsets: the page size, or the huge page size for hugePages: true. */
  get granule(): number {
    return this.#granule;
  }
  /** The protection of the byte at `offset` (default 0). */
  protection(offset = 0): number {
    offset = integer(offset, 'offset');
    this.#range(offset, 1, false);
    let i = this.#runStarts.length - 1;
    while (this.#runStarts[i] > offset) i--;
    return this.#runProts[i];
  }

  /**
   * An ArrayBuffer over the whole mapping (the same one on every call until a page is protected below
   * read+write: then it is no longer handed out, and it keeps working, see protect()). unmap() does not detach it: its pages become trash pages (reads give zeros,
   * writes stay private), so a Node API still holding it across the unmap finishes normally;
   * `Mapping.of(view).mapped` is false from then on.
   */
  get buffer(): ArrayBuffer {
    this.#assertMapped();
    if (this.#buffer === undefined || this.#buffer.byteLength === 0) {
      this.#buffer = this.#newView(0, this.#length, true);
    }
    return this.#buffer;
  }

  /**
   * The Mapping whose pages a view of devmap's (an ArrayBuffer from buffer or view(), or a typed array or
   * DataView over one) belongs to now, or undefined. After unmap() its `mapped` is false: the view reads the
   * trash pages that replaced the Mapping's.
   */
  static of(view: ArrayBuffer | ArrayBufferView): Mapping | undefined {
    if (view === null || typeof view !== 'object') return undefined;
    const buffer = ArrayBuffer.isView(view) ? view.buffer : view;
    return ownerOf(buffer as ArrayBuffer);
  }

  /** A new ArrayBuffer over [offset, offset + length): the way to window a mapping larger than one ArrayBuffer. */
  view(offset = 0, length?: number): ArrayBuffer {
    this.#assertMapped();
    offset = integer(offset, 'offset');
    const len = length === undefined ? this.#length - offset : integer(length, 'length', 1);
    this.#range(offset, len, false);
    return this.#newView(offset, len);
  }

  /** Copies [offset, offset + length) out; works on read-only pages, where views are refused. */
  read(offset = 0, length?: number): Buffer {
    this.#assertMapped();
    offset = integer(offset, 'offset');
    const len = length === undefined ? this.#length - offset : integer(length, 'length', 1);
    this.#range(offset, len, false);
    this.#assertProt(offset, offset + len, PROT_READ, 'readable');
    const out = Buffer.allocUnsafe(len);
    native().read(this.#cell.addr + offset, out);
    return out;
  }

  /**
   * Unmaps the whole mapping (no arguments) or the pages covering [offset, offset + length) and returns the
   * surviving pieces (0, 1 or 2) as new Mappings; this Mapping is unmapped either way.
   */
  unmap(offset?: number, length?: number): Mapping[] {
    this.#assertMapped(true);
    this.#assertUnpinned('unmap');
    const cell = this.#cell;
    const lineage = cell.lineage;
    const n = native();
    const nested = lineage.nested ? ROW_NESTED : 0;
    if (offset === undefined && length === undefined) {
      roomMade();
      this.#detachInternal(0, cell.mapped);
      this.#trashAliases(0, cell.mapped);
      // A plain shared anonymous object, never re-protected, is punched empty instead of unmapped or trash-mapped
      // (its views read zeros, nothing can fault, and no other mapping has the object), and kept with its range
      // for the next Mapping of that kind (quarantine.ts).
      const punchable = cell.born >= 0 && this.#runStarts === FIRST_RUN && this.#runProts[0] === RW && (rowFlags()[cell.row] & FLAG_TRUNCATED) === 0;
      if (!viewed(lineage) && !cell.registered) {
        // Nothing JavaScript could reach was ever made over these pages: give them back now.
        if (punchable && n.punch(cell.row, cell.addr, cell.mapped, ROW_TRASH | nested) === 0) givePunched(cell.row, cell.addr, cell.mapped, cell.born);
        else check(lineage.give === undefined ? n.row_release(cell.row, cell.addr, cell.mapped) : (lineage.give(cell.row, cell.addr, cell.mapped), 0), 'munmap');
      } else {
        const born = punchable && mayPunch(cell.mapped) && n.punch(cell.row, cell.addr, cell.mapped, ROW_TRASH | nested, this.#internal) === 0 ? cell.born : -1;
        if (born < 0) check(n.retire(cell.row, cell.addr, cell.mapped, ROW_TRASH | nested, this.#internal), 'mmap');
        this.#buffer = this.#internal = undefined;
        quarantine(lineage, cell.row, cell.addr, cell.mapped, born);
        settle(lineage);
      }
      this.#retire();
      return [];
    }
    offset = integer(offset, 'offset');
    const len = length === undefined ? this.#length - offset : integer(length, 'length', 1);
    this.#range(offset, len, true);
    const end = Math.min(Math.ceil((offset + len) / this.#granule) * this.#granule, cell.mapped);
    // A cut splits the mapping (and the aliases its views are over) in up to three; a range that is the whole
    // mapping splits nothing and is never refused (a process's exit unmaps that way).
    const cuts = (offset > 0 ? 1 : 0) + (end < cell.mapped ? 1 : 0);
    if (cuts > 0) assertMapSlots(cuts + 2 * this.#aliases.length, 'A partial unmap()');
    else roomMade();
    // The pieces' rows first, before anything changes: a full range table refuses here (a piece without a row
    // would take a truncation's SIGBUS as not devmap's), and a Worker's teardown at any later point finds every
    // range in some row (overlapping rows are harmless: each is unmapped once, the rest are no-ops).
    const kind = ROW_LIVE | nested;
    const rowBefore = offset > 0 ? n.row_add(cell.addr, offset, kind) : -1;
    const rowAfter = end < cell.mapped && (offset === 0 || rowBefore >= 0) ? n.row_add(cell.addr + end, cell.mapped - end, kind) : -1;
    if ((offset > 0 && rowBefore < 0) || (end < cell.mapped && rowAfter < 0)) {
      if (rowBefore >= 0) n.row_remove(rowBefore);
      throw systemError(offset > 0 && rowBefore < 0 ? rowBefore : rowAfter, 'munmap');
    }
    this.#detachInternal(offset, end);
    this.#trashAliases(offset, end);
    if (!viewed(lineage)) {
      if (lineage.give === undefined) check(n.munmap(cell.addr + offset, end - offset), 'munmap');
      // Inside a reservation the pages are given back its way (re-reserved), never munmapped: a hole there
      // would let another mapping land inside the address space.
      else lineage.give(n.row_add(cell.addr + offset, end - offset, ROW_TRASH | nested), cell.addr + offset, end - offset);
    } else {
      check(takeAway(cell.addr + offset, end - offset), 'mmap');
      const row = n.row_add(cell.addr + offset, end - offset, ROW_TRASH | nested);
      quarantine(lineage, row, cell.addr + offset, end - offset);
      settle(lineage);
    }
    n.row_remove(cell.row);
    this.#retire();
    // The whole-mapping buffer spans the hole: the pieces track it like any other view (one over an alias was
    // trashed with it).
    if (this.#buffer !== undefined && !this.#aliasViews) this.#track({ ref: new WeakRef(this.#buffer), offset: 0, length: this.#length, internal: false });
    this.#buffer = undefined;
    const pieces: Mapping[] = [];
    if (offset > 0) pieces.push(this.#piece(0, offset, offset, rowBefore));
    if (end < cell.mapped) pieces.push(this.#piece(end, cell.mapped, this.#length - end, rowAfter));
    this.#views = NO_VIEWS;
    return pieces;
  }

  /**
   * mprotect(2) over the pages covering [offset, offset + length). Below read+write, the new protection holds
   * at once for devmap (no new view of those pages, read() and devmap's own calls honour it) and reaches the
   * kernel once no view made before the call can reach the pages (see "Lowering a protection" above);
   * `protectionPending` says whether some of it still waits.
   */
  protect(prot: number, offset = 0, length?: number): void {
    this.#assertMapped();
    prot = integer(prot, 'prot', 0, 7);
    const [start, end] = this.#pages(offset, length);
    const lowers = (prot & RW) !== RW;
    if (lowers) this.#assertUnpinned('protect');
    // It may split the mapping in three (not when it covers all of a mapping of one protection), and each alias
    // its views are over where they lose the pages.
    const whole = start === 0 && end === this.#cell.mapped && this.#runStarts.length === 1;
    const need = (whole ? 0 : 2) + (lowers ? 2 * this.#aliases.length : 0);
    if (need > 0) assertMapSlots(need, 'protect()');
    if (lowers) this.#releaseViews(start, end);
    const deferred = this.#deferred;
    this.#deferred = subtractRange(deferred, start, end);
    if (lowers && this.#reachable(start, end)) {
      this.#setProt(start, end, prot);
      this.#deferred = this.#deferred.concat(start, end);
      deferProtection(this);
      return;
    }
    const rc = native().mprotect(this.#cell.addr + start, end - start, prot);
    if (rc < 0) {
      this.#deferred = deferred;
      this.#recoverProtect(start, end, prot);
    }
    check(rc, 'mprotect');
    this.#setProt(start, end, prot);
  }

  /** True while a protection below read+write waits for the views made before it (see protect()). */
  get protectionPending(): boolean {
    return this.#cell.live && this.#deferred.length > 0;
  }

  /**
   * After a failed mprotect the kernel may have applied it to some of [start, end): put every run back to what
   * the record says (that merges the split VMAs again, so it does not need more of them); where that fails too,
   * record each page with only the access both protections grant — a view is only made where the record says
   * read+write, so the record may understate what the kernel allows, never overstate it.
   */
  #recoverProtect(start: number, end: number, prot: number): void {
    const runs: [number, number, number][] = [];
    const n = this.#runStarts.length;
    for (let i = 0; i < n; i++) {
      const s = Math.max(this.#runStarts[i], start);
      const e = Math.min(i + 1 < n ? this.#runStarts[i + 1] : this.#cell.mapped, end);
      if (s < e) runs.push([s, e, this.#runProts[i]]);
    }
    let restored = true;
    const waiting: [number, number][] = [];
    for (let i = 0; i < this.#deferred.length; i += 2) waiting.push([this.#deferred[i], this.#deferred[i + 1]]);
    waiting.sort((x, y) => x[0] - y[0]);
    for (const [s, e, p] of runs) {
      // Pages whose lower protection still waits had read+write in the kernel (views over them may live).
      let cursor = s;
      for (const [ws, we] of waiting) {
        const ds = Math.max(ws, cursor);
        const de = Math.min(we, e);
        if (ds >= de) continue;
        if (ds > cursor && native().mprotect(this.#cell.addr + cursor, ds - cursor, p) < 0) restored = false;
        if (native().mprotect(this.#cell.addr + ds, de - ds, RW) < 0) restored = false;
        cursor = de;
      }
      if (cursor < e && native().mprotect(this.#cell.addr + cursor, e - cursor, p) < 0) restored = false;
    }
    if (!restored) for (const [s, e, p] of runs) this.#setProt(s, e, p & prot);
  }

  /** msync(2): write dirty pages back to the file (MS_SYNC, or MS_ASYNC with async: true). */
  sync(opts?: { offset?: number; length?: number; async?: boolean; invalidate?: boolean }): void {
    const o = options<{ offset: number; length: number; async: boolean; invalidate: boolean }>(opts, 'options', ['offset', 'length', 'async', 'invalidate']);
    this.#assertMapped();
    if (o.async !== undefined && typeof o.async !== 'boolean') throw typeError('a boolean', 'options.async', o.async);
    if (o.invalidate !== undefined && typeof o.invalidate !== 'boolean') throw typeError('a boolean', 'options.invalidate', o.invalidate);
    const [start, end] = this.#pages(o.offset ?? 0, o.length);
    const flags = (o.async ? MS_ASYNC : MS_SYNC) | (o.invalidate ? MS_INVALIDATE : 0);
    check(native().msync(this.#cell.addr + start, end - start, flags), 'msync');
  }

  /** madvise(2) with one of the MADV_* constants (the ones that poison pages are refused). */
  advise(advice: number, offset = 0, length?: number): void {
    this.#assertMapped();
    advice = integer(advice, 'advice', 0, 1000);
    if (!SAFE_ADVICE.has(advice)) throw rangeError('one of the MADV_* constants devmap exports', 'advice', advice);
    const [start, end] = this.#pages(offset, length);
    // Advice that sets a flag of the mapping (DONTFORK, HUGEPAGE, …) splits it where the range ends inside it;
    // advice that only acts on pages does not, and must work at the limit (MADV_DONTNEED frees memory).
    if (!PAGE_ADVICE.has(advice)) assertMapSlots(2, 'advise()');
    this.#cell.born = -1; // advice can stay on the pages' mapping: they must not be handed to another Mapping so
    check(native().madvise(this.#cell.addr + start, end - start, advice), 'madvise');
  }

  /** mlock(2): keep the pages resident. */
  lock(offset = 0, length?: number): void {
    this.#assertMapped();
    const [start, end] = this.#pages(offset, length);
    assertMapSlots(2, 'lock()');
    this.#cell.born = -1; // locked pages cannot be punched, and the lock must not pass to another Mapping
    check(native().mlock(this.#cell.addr + start, end - start), 'mlock');
  }

  /** munlock(2). */
  unlock(offset = 0, length?: number): void {
    this.#assertMapped();
    const [start, end] = this.#pages(offset, length);
    assertMapSlots(2, 'unlock()');
    check(native().munlock(this.#cell.addr + start, end - start), 'munlock');
  }

  /** mincore(2): one byte per page, 1 where the page is resident in memory. */
  residency(): Uint8Array {
    this.#assertMapped();
    const out = new Uint8Array(this.#cell.mapped / pageSize);
    check(native().mincore(this.#cell.addr, this.#cell.mapped, out), 'mincore');
    for (let i = 0; i < out.length; i++) out[i] &= 1;
    return out;
  }

  [Symbol.dispose](): void {
    if (this.#cell.live) this.unmap();
  }

  [inspect.custom](): string {
    const addr = '0x' + this.#cell.addr.toString(16);
    return `Mapping { address: ${addr}, length: ${this.#length}, shared: ${this.#shared}, mapped: ${this.#cell.live} }`;
  }

  toString(): string {
    return this[inspect.custom]();
  }

  /** @internal Views are made over aliases (a simulated process's shared memory): they may go stale while this is mapped. */
  get aliasedViews(): boolean {
    return this.#aliasViews;
  }

  /** @internal The address as a number (no BigInt): for the layers above. */
  get rawAddress(): number {
    return this.#cell.addr;
  }

  // --- internals -------------------------------------------------------------------------------------------

  /** Throws unless mapped and (unless `evenTruncated`: unmap works on a truncated Mapping) not truncated. */
  #assertMapped(evenTruncated = false): void {
    const cell = this.#cell;
    if (!cell.live) throw new DevmapError('ERR_DEVMAP_UNMAPPED', 'This Mapping has been unmapped');
    if (!evenTruncated && (rowFlags()[cell.row] & FLAG_TRUNCATED) !== 0) throw truncated();
  }

  /** True when the object under this Mapping was truncated (by a peer, or by this process's shrink). */
  get truncated(): boolean {
    const cell = this.#cell;
    return cell.live && cell.row >= 0 && (rowFlags()[cell.row] & FLAG_TRUNCATED) !== 0;
  }

  /** A held Mutex's words are on its thread's robust list: glibc and the kernel must always reach them. */
  #assertUnpinned(what: string): void {
    if (this.#pins > 0) {
      throw new DevmapError(
        'ERR_DEVMAP_BUSY',
        `${what}: a Mutex in this mapping is held by this thread; unlock it first (its words are on the thread's robust list, which the C library and the kernel read)`,
      );
    }
  }

  /** Validates [offset, offset + length) against the mapping; page-aligned offset when `aligned`. */
  #range(offset: number, length: number, aligned: boolean): void {
    if (offset >= this.#length) throw rangeError(`an offset below the length ${this.#length}`, 'offset', offset);
    if (aligned && offset % this.#granule !== 0) throw rangeError(`a multiple of ${this.#granule}`, 'offset', offset);
    if (offset + length > this.#length) {
      throw rangeError(`a length of at most ${this.#length - offset} (the mapping ends there)`, 'length', length);
    }
  }

  /** Validates offset/length and returns the page range [start, end) they cover. */
  #pages(offset: unknown, length: unknown): [number, number] {
    const start = integer(offset, 'offset');
    const len = length === undefined ? this.#length - start : integer(length, 'length', 1);
    this.#range(start, len, true);
    return [start, Math.min(Math.ceil((start + len) / this.#granule) * this.#granule, this.#cell.mapped)];
  }

  #assertProt(start: number, end: number, need: number, what: string): void {
    for (let i = 0; i < this.#runStarts.length; i++) {
      const runEnd = i + 1 < this.#runStarts.length ? this.#runStarts[i + 1] : this.#cell.mapped;
      if (runEnd > start && this.#runStarts[i] < end && (this.#runProts[i] & need) !== need) {
        throw new DevmapError(
          'ERR_DEVMAP_PROTECTION',
          `Bytes ${start}..${end} include pages that are not ${what}; a JavaScript view over them could fault and kill ` +
            'the process. Copy bytes out with mapping.read(), or map copy-on-write with { shared: false }.',
        );
      }
    }
  }

  /** A new view; `main` is the buffer getter's, which the Mapping holds itself (no WeakRef needed). */
  #newView(offset: number, length: number, main = false, internal = false): ArrayBuffer {
    this.#assertProt(offset, offset + length, RW, 'readable and writable');
    if (this.#aliasViews && !internal) return this.#aliasView(offset, length);
    // devmap's own views are detached before their pages change, and never reach a Node API: no store count.
    const ab = makeBuffer(this.#cell.addr + offset, length, internal ? -1 : counterOf(this.#cell.lineage));
    Owned.set(ab, this);
    if (!main) this.#track({ ref: new WeakRef(ab), offset, length, internal });
    return ab;
  }

  /**
   * A view of a simulated process's shared pages, over an alias (alias.ts): one that already mirrors them
   * untouched, or a new one of the protection run the view lies in (of its own granules when the kernel cannot
   * alias the whole run, split across VMAs).
   */
  #aliasView(offset: number, length: number): ArrayBuffer {
    const cell = this.#cell;
    const g = this.#granule;
    const from = cell.addr + Math.floor(offset / g) * g;
    const to = cell.addr + Math.min(Math.ceil((offset + length) / g) * g, cell.mapped);
    let alias = this.#aliases.find((a) => covers(a, from, to));
    if (alias === undefined) {
      let i = this.#runStarts.length - 1;
      while (this.#runStarts[i] > offset) i--;
      const runFrom = cell.addr + this.#runStarts[i];
      const runTo = cell.addr + (i + 1 < this.#runStarts.length ? this.#runStarts[i + 1] : cell.mapped);
      try {
        alias = makeAlias(runFrom, runTo - runFrom, this.#pins > 0);
      } catch {
        alias = makeAlias(from, to - from, this.#pins > 0);
      }
      if (this.#aliases === NO_ALIASES) this.#aliases = [];
      else if ((this.#aliases.length & 15) === 0) this.#aliases = this.#aliases.filter((a) => !a.gone);
      this.#aliases.push(alias);
    }
    const ab = aliasView(alias, cell.addr + offset, length);
    Owned.set(ab, this);
    return ab;
  }

  /** Takes [start, end) away from the views over aliases: those parts become trash, those views stale. */
  #trashAliases(start: number, end: number): void {
    for (const a of this.#aliases) trashAlias(a, this.#cell.addr + start, this.#cell.addr + end, markStale);
  }

  #track(view: View): void {
    if (this.#views === NO_VIEWS) this.#views = [];
    this.#views.push(view);
    if (this.#views.length >= this.#compactAt) {
      this.#views = this.#views.filter((v) => v.ref.deref() !== undefined);
      this.#compactAt = Math.max(16, this.#views.length * 2);
    }
  }

  /**
   * Before [start, end) loses read+write: the whole-mapping buffer is no longer handed out (it stays tracked,
   * attached), devmap's own views there are detached, and so — inside a simulated address space, where views
   * stand for a process's translations — are all the others.
   */
  #releaseViews(start: number, end: number): void {
    this.#trashAliases(start, end);
    if (this.#buffer !== undefined) {
      if (!this.#aliasViews) this.#track({ ref: new WeakRef(this.#buffer), offset: 0, length: this.#length, internal: false });
      this.#buffer = undefined;
    }
    this.#detachInternal(start, end);
  }

  /**
   * True when something made before now may still reach [start, end): a view object over it (attached or not:
   * a thread-pool request holds the object and a raw pointer while it runs), or a store of the lineage that no
   * attached view of this Mapping accounts for (moved out by a transfer or a BYOB read, a view of another
   * piece, a detached view whose finalizer has not run yet — counted conservatively).
   */
  #reachable(start: number, end: number): boolean {
    const lineage = this.#cell.lineage;
    if (this.#reachedElsewhere?.(this.#cell.addr + start, end - start)) return true;
    if (!viewed(lineage)) return false;
    let attached = (this.#internal !== undefined && this.#internal.byteLength > 0 ? 1 : 0) + (this.#buffer !== undefined && this.#buffer.byteLength > 0 ? 1 : 0);
    for (const v of this.#views) {
      const ab = v.ref.deref();
      if (ab === undefined) continue;
      if (v.offset < end && v.offset + v.length > start) return true;
      if (ab.byteLength > 0) attached++;
    }
    return storeCounts()[lineage.counter] > attached;
  }

  /** Gives the kernel the protection devmap records for the deferred ranges nothing can reach any more. */
  #applyDeferred(): boolean {
    if (!this.#cell.live) {
      this.#deferred = NO_RANGES;
      return true;
    }
    // A held Mutex's words must stay reachable for the C library and the kernel: wait for the unlock.
    if (this.#pins > 0) return false;
    const left: number[] = [];
    for (let i = 0; i < this.#deferred.length; i += 2) {
      const [s, e] = [this.#deferred[i], this.#deferred[i + 1]];
      if (this.#reachable(s, e) || !this.#protectAsRecorded(s, e)) left.push(s, e);
    }
    this.#deferred = left.length === 0 ? NO_RANGES : left;
    return left.length === 0;
  }

  /** mprotect of each recorded run inside [start, end); false when the kernel refused one (tried again later). */
  #protectAsRecorded(start: number, end: number): boolean {
    const n = this.#runStarts.length;
    for (let i = 0; i < n; i++) {
      const s = Math.max(this.#runStarts[i], start);
      const e = Math.min(i + 1 < n ? this.#runStarts[i + 1] : this.#cell.mapped, end);
      if (s >= e) continue;
      spendMapSlots(2);
      if (native().mprotect(this.#cell.addr + s, e - s, this.#runProts[i]) < 0) return false;
    }
    return true;
  }

  /**
   * Detaches devmap's own views that touch [start, end) (all views with `all`). unmap() leaves the caller's
   * views attached: they may be held by a Node API (zlib checks a held buffer's length on every chunk and
   * aborts the process on a detached one), and the trash pages make them harmless.
   */
  #detachInternal(start: number, end: number, all = false): void {
    const n = native();
    if (this.#internal !== undefined) {
      n.detach(this.#internal);
      this.#internal = undefined;
    }
    for (const v of this.#views) {
      if (!all && !v.internal) continue;
      const ab = v.ref.deref();
      if (ab !== undefined && v.offset < end && v.offset + v.length > start) n.detach(ab);
    }
  }

  /** Marks the pages as no longer this Mapping's. The registry entry stays until the Mapping is collected: its
   * views may still be in use (a thread-pool request), and the quarantine waits for exactly that. */
  #retire(): void {
    this.#cell.live = false;
    forget(this.#cell);
  }

  /** The surviving piece [start, end) of this (retired) mapping, inheriting the views wholly inside it. */
  #piece(start: number, end: number, length: number, row: number): Mapping {
    const cell = this.#cell;
    const object = cell.object === undefined ? undefined : { key: cell.object.key, offset: cell.object.offset + start };
    lineageInit = cell.lineage;
    const piece = new Mapping(
      {
        addr: cell.addr + start, length, prot: 0, shared: this.#shared, granule: this.#granule, finalize: this.#finalize, anchor: this.#anchor, object, row,
        aliasViews: this.#aliasViews, reachedElsewhere: this.#reachedElsewhere,
      },
      internal,
    );
    if ((rowFlags()[cell.row] & FLAG_TRUNCATED) !== 0) Atomics.or(rowFlags(), piece.#cell.row, FLAG_TRUNCATED);
    const starts: number[] = [];
    const prots: number[] = [];
    for (let i = 0; i < this.#runStarts.length; i++) {
      const s = Math.max(this.#runStarts[i], start);
      const e = i + 1 < this.#runStarts.length ? Math.min(this.#runStarts[i + 1], end) : end;
      if (s < e) {
        starts.push(s - start);
        prots.push(this.#runProts[i]);
      }
    }
    piece.#runStarts = starts;
    piece.#runProts = prots;
    const deferred: number[] = [];
    for (let i = 0; i < this.#deferred.length; i += 2) {
      const s = Math.max(this.#deferred[i], start);
      const e = Math.min(this.#deferred[i + 1], end);
      if (s < e) deferred.push(s - start, e - start);
    }
    if (deferred.length > 0) {
      piece.#deferred = deferred;
      deferProtection(piece);
    }
    // Aliases still mirroring pages of the piece are its too (the hole's part is trash already); the views wholly
    // inside the piece become its views.
    for (const a of this.#aliases) {
      if (a.gone || a.base >= cell.addr + end || a.base + a.len <= cell.addr + start) continue;
      if (piece.#aliases === NO_ALIASES) piece.#aliases = [];
      piece.#aliases.push(a);
      for (const ab of viewsInside(a, cell.addr + start, cell.addr + end)) Owned.set(ab, piece);
    }
    // A view wholly inside the piece becomes the piece's; one that also spans the hole stays the retired
    // Mapping's (stale), but the piece still tracks it: a lower protection of the piece must wait for it too.
    for (const v of this.#views) {
      const ab = v.ref.deref();
      if (ab === undefined || ab.byteLength === 0 || v.offset >= end || v.offset + v.length <= start) continue;
      if (v.offset >= start && v.offset + v.length <= end) Owned.set(ab, piece);
      piece.#track({ ref: v.ref, offset: v.offset - start, length: v.length, internal: v.internal });
    }
    return piece;
  }

  #setProt(start: number, end: number, prot: number): void {
    const starts: number[] = [];
    const prots: number[] = [];
    const add = (s: number, p: number) => {
      if (prots.length === 0 || prots[prots.length - 1] !== p) {
        starts.push(s);
        prots.push(p);
      }
    };
    const n = this.#runStarts.length;
    for (let i = 0; i < n && this.#runStarts[i] < start; i++) add(this.#runStarts[i], this.#runProts[i]);
    add(start, prot);
    for (let i = 0; i < n; i++) {
      const runEnd = i + 1 < n ? this.#runStarts[i + 1] : this.#cell.mapped;
      if (runEnd > end) add(Math.max(this.#runStarts[i], end), this.#runProts[i]);
    }
    this.#runStarts = starts;
    this.#runProts = prots;
  }
}

const internal = Symbol('devmap.internal');

/** @internal Wraps pages the caller has just mapped. */
export function adoptMapping(init: MappingInit): Mapping {
  return new Mapping(init, internal);
}
