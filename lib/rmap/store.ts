/*
 * RmapStore — the storage of one resource map: a header and a pool of nodes, all inside ONE ArrayBuffer.
 *
 * Nothing the map remembers lives in a JS object: ranges, tree links, list heads, counters and the
 * configuration are numbers in typed arrays over a single buffer. That is what lets a later step place the
 * same engine in a fixed-size shared-memory segment used by several processes. Two kinds of store exist:
 *
 *   growable  the in-process map: the pool grows by half when it runs out (a new buffer, fields copied);
 *   fixed     a caller-supplied buffer (e.g. a shared segment): the pool never moves; when it is full,
 *             alloc() returns NIL and the engine reports the allocation failure as the kernel would.
 *
 * Layout of the buffer (capacity C nodes; every field is a parallel array indexed by node number):
 *
 *   Float64  header (H64.*)                      counters, units, mapsize
 *   Float64  lo[C]  sz[C]  mx[C]                 range start, range size, largest size below (tree.ts)
 *   Int32    header (H32.*)                      magic, policy, roots, node free list, 53 free-list heads
 *   Int32    lt[C]  rt[C]  ht[C]                 AVL left, right, height + dirty bit (segments: negative tag)
 *   Int32    an[C] ap[C] kn[C] kp[C] hn[C]       illumos only: address chain, free-list chain, hash chain
 *   Int32    buckets[B]                          illumos only: hash of allocated segments by start
 *
 * A classic node costs 3×8 + 3×4 = 36 bytes; an illumos node 3×8 + 8×4 = 56 bytes plus about 4 bytes of
 * hash bucket. Node numbers are stable for the life of the map (growth copies, it never renumbers).
 *
 * Every write to persistent state goes through w64() or w32() (and the node pool's own bookkeeping through
 * the same two); only formatting a new store and growing one, which build a whole buffer, write directly.
 * Reads are plain typed-array loads. A later undo journal for crash-safe shared maps hooks
 * those two methods: the field's byteOffset plus 8·i (or 4·i) names the word being changed.
 */
import { DevmapError, rangeError, typeError } from '../errors';

export const NIL = -1;
export type Policy = 'classic' | 'illumos';

/**
 * The store's links (tree children, chains, list heads) loop or point outside the pool. An engine never
 * writes such links; only a store written by something else can hold them — a shared segment another
 * process corrupted. Every walk that follows links is bounded by the pool's size and checks each node it
 * reaches, so that such a store ends in this error instead of a hang or a runaway recursion.
 */
export function brokenLinks(where: string): DevmapError {
  return new DevmapError('ERR_DEVMAP_CORRUPT', `resource map store: ${where}: its links loop or leave the node pool`);
}

/** Header words, Float64 (counters may pass 2^32). A const enum: the numbers are inlined into the hot paths. */
export const enum H64 {
  MAPSIZE = 0,
  FREE_SLOTS = 1,
  FREE_UNITS = 2,
  RANGES = 3, // free ranges (classic) / free segments (illumos)
  ALLOCATED = 4, // illumos: units in allocated segments
  LOW = 5, // classic: lowest unit ever freed into the map (0 = none yet)
  HIGH = 6, // classic: one past the highest unit ever freed into the map
  ALLOCS = 7,
  FREES = 8,
  FAILURES = 9,
  OVERFLOWS = 10,
  LOST = 11,
  WAITS = 12,
  WAKEUPS = 13,
  ABORTS = 14,
  PANICS = 15,
  SEARCHES = 16, // illumos: own-list members examined by the slow path (vmem's vk_search)
}
export const H64_WORDS = 17;

/** Header words, Int32. */
export const enum H32 {
  MAGIC = 0,
  POLICY = 1, // 1 classic, 2 illumos
  OVERFLOW = 2, // 0 solaris, 1 bsd, 2 svr4
  STATE = 3, // 0 new, 1 live, 2 freed
  CAPACITY = 4,
  ROOT = 5, // classic: free-range tree; illumos: span tree
  FREE_NODE = 6, // head of released nodes, chained through lt[]
  NEXT_NODE = 7, // nodes below this index have been handed out at least once
  NODES = 8, // nodes in use
  BUCKET_BITS = 9,
  FREEMAP0 = 10, // illumos: bit k set ⇔ free list k non-empty, k < 32
  FREEMAP1 = 11, // ... k − 32 for 32 ≤ k < 53
  LIST = 12, // illumos: 53 free-list heads, list k holds sizes in [2^k, 2^(k+1))
}
export const LISTS = 53;
const H32_WORDS = 12 + LISTS; // H32.LIST + LISTS

export const enum State {
  NEW = 0,
  LIVE = 1,
  FREED = 2,
}
const MAGIC = 0x524d4150; // "RMAP"

const CLASSIC_I32 = 3;
const ILLUMOS_I32 = 8;

function bucketBits(capacity: number): number {
  let bits = 4;
  while (1 << bits < capacity && bits < 30) bits++;
  return bits;
}

function byteSize(policy: Policy, capacity: number): number {
  const i32 = policy === 'classic' ? CLASSIC_I32 : ILLUMOS_I32;
  const buckets = policy === 'classic' ? 0 : 1 << bucketBits(capacity);
  return 8 * (H64_WORDS + 3 * capacity) + 4 * (H32_WORDS + i32 * capacity + buckets);
}

/**
 * Receives every persistent write before it happens (shared maps: the undo journal, lib/rmap/shared/journal.ts).
 * `field[i]` still holds the old value when it is called.
 */
export interface WriteHook {
  before64(field: Float64Array, i: number): void;
  before32(field: Int32Array, i: number): void;
}

export class RmapStore {
  readonly policy: Policy;
  readonly growable: boolean;
  /** The write hook (null: none, the in-process case). */
  hook: WriteHook | null = null;
  buffer!: ArrayBuffer | SharedArrayBuffer;
  h64!: Float64Array;
  h32!: Int32Array;
  lo!: Float64Array;
  sz!: Float64Array;
  mx!: Float64Array;
  lt!: Int32Array;
  rt!: Int32Array;
  ht!: Int32Array;
  an!: Int32Array;
  ap!: Int32Array;
  kn!: Int32Array;
  kp!: Int32Array;
  hn!: Int32Array;
  buckets!: Int32Array;

  /** Bytes a store of `capacity` nodes needs (for sizing a fixed store inside a segment). */
  static bytesFor(policy: Policy, capacity: number): number {
    return byteSize(checkPolicy(policy), checkCapacity(capacity));
  }

  /** An in-process store that grows on demand. */
  static growable(policy: Policy, capacity = 16): RmapStore {
    checkPolicy(policy);
    capacity = checkCapacity(capacity);
    return new RmapStore(policy, true, new ArrayBuffer(byteSize(policy, capacity)), 0, capacity);
  }

  /**
   * A fixed-capacity store formatted inside `buffer` at `byteOffset` (8-byte aligned), using as many nodes as
   * fit in `byteLength` bytes. The buffer may be a SharedArrayBuffer or an external buffer over a mapping.
   */
  static fixed(policy: Policy, buffer: ArrayBuffer | SharedArrayBuffer, byteOffset = 0, byteLength?: number): RmapStore {
    checkPolicy(policy);
    if (!(buffer instanceof ArrayBuffer) && !(typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer)) {
      throw typeError('an ArrayBuffer or SharedArrayBuffer', 'buffer', buffer);
    }
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % 8 !== 0 || byteOffset > buffer.byteLength) {
      throw rangeError(`a multiple of 8 from 0 to ${buffer.byteLength}`, 'byteOffset', byteOffset);
    }
    const room = buffer.byteLength - byteOffset;
    const length = byteLength ?? room;
    if (!Number.isInteger(length) || length < 0 || length > room) throw rangeError(`an integer from 0 to ${room}`, 'byteLength', byteLength);
    const capacity = largestCapacity(policy, length);
    if (capacity < 1) throw rangeError(`at least ${byteSize(policy, 1)} bytes`, 'byteLength', length);
    return new RmapStore(policy, false, buffer, byteOffset, capacity);
  }

  /**
   * A fixed store that already lives at `byteOffset` of `buffer` (formatted by fixed(), possibly in another
   * process): laid out over the existing words WITHOUT formatting them. Throws a RangeError when the words
   * there are not a store of `policy` with `capacity` nodes.
   */
  static existing(policy: Policy, buffer: ArrayBuffer | SharedArrayBuffer, byteOffset: number, capacity: number): RmapStore {
    checkPolicy(policy);
    capacity = checkCapacity(capacity);
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % 8 !== 0 || byteOffset + byteSize(policy, capacity) > buffer.byteLength) {
      throw rangeError(`a multiple of 8 with room for the store before ${buffer.byteLength}`, 'byteOffset', byteOffset);
    }
    const s = new RmapStore(policy, false, buffer, byteOffset, capacity, false);
    const h32 = s.h32;
    if (h32[H32.MAGIC] !== MAGIC || h32[H32.POLICY] !== (policy === 'classic' ? 1 : 2) || h32[H32.CAPACITY] !== capacity) {
      throw rangeError(`the words of a ${policy} store of ${capacity} nodes`, 'buffer', 'other bytes');
    }
    return s;
  }

  private constructor(
    policy: Policy,
    growable: boolean,
    buffer: ArrayBuffer | SharedArrayBuffer,
    byteOffset: number,
    capacity: number,
    format = true,
  ) {
    this.policy = policy;
    this.growable = growable;
    this.layout(buffer, byteOffset, capacity);
    if (!format) return;
    const h32 = this.h32;
    h32.fill(0);
    this.h64.fill(0);
    h32[H32.MAGIC] = MAGIC;
    h32[H32.POLICY] = policy === 'classic' ? 1 : 2;
    h32[H32.CAPACITY] = capacity;
    h32[H32.ROOT] = NIL;
    h32[H32.FREE_NODE] = NIL;
    h32[H32.BUCKET_BITS] = policy === 'classic' ? 0 : bucketBits(capacity);
    for (let k = 0; k < LISTS; k++) h32[H32.LIST + k] = NIL;
    this.buckets.fill(NIL);
  }

  get capacity(): number {
    return this.h32[H32.CAPACITY];
  }

  /** Bytes of the buffer this store occupies. */
  get byteLength(): number {
    return byteSize(this.policy, this.capacity);
  }

  /** The only write primitives for persistent state (see the header comment). */
  w64(field: Float64Array, i: number, v: number): void {
    if (this.hook !== null) this.hook.before64(field, i);
    field[i] = v;
  }

  w32(field: Int32Array, i: number, v: number): void {
    if (this.hook !== null) this.hook.before32(field, i);
    field[i] = v;
  }

  /** A fresh node, or NIL when a fixed store is full. Its fields are unspecified; the caller sets them. */
  alloc(): number {
    const h32 = this.h32;
    let x = h32[H32.FREE_NODE];
    if (x !== NIL) {
      if (!(x >= 0 && x < this.lo.length)) throw brokenLinks('the released-node list');
      this.w32(h32, H32.FREE_NODE, this.lt[x]);
    } else {
      x = h32[H32.NEXT_NODE];
      if (x === h32[H32.CAPACITY]) {
        if (!this.growable) return NIL;
        this.grow();
      } else if (!(x >= 0 && x < this.lo.length)) throw brokenLinks('the next-node counter');
      this.w32(this.h32, H32.NEXT_NODE, x + 1);
    }
    this.w32(this.h32, H32.NODES, this.h32[H32.NODES] + 1);
    return x;
  }

  release(x: number): void {
    this.w32(this.lt, x, this.h32[H32.FREE_NODE]);
    this.w32(this.h32, H32.FREE_NODE, x);
    this.w32(this.h32, H32.NODES, this.h32[H32.NODES] - 1);
  }

  // ---- hash of allocated segments (illumos), chained through hn[], keyed by lo[] ----

  private bucket(key: number): number {
    // Mix both 32-bit halves of the (up to 53-bit) key, keep the top bits.
    const lo = key >>> 0;
    const hi = (key / 4294967296) >>> 0;
    const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1);
    const bits = this.h32[H32.BUCKET_BITS];
    return h >>> (32 - bits);
  }

  hashInsert(x: number): void {
    const b = this.bucket(this.lo[x]);
    this.w32(this.hn, x, this.buckets[b]);
    this.w32(this.buckets, b, x);
  }

  hashFind(key: number): number {
    const n = this.lo.length;
    let steps = n;
    let x = this.buckets[this.bucket(key)];
    while (x !== NIL && this.lo[x] !== key) {
      if (--steps < 0 || !(x >= 0 && x < n)) throw brokenLinks('a hash chain');
      x = this.hn[x];
    }
    return x;
  }

  hashRemove(x: number): void {
    const b = this.bucket(this.lo[x]);
    let y = this.buckets[b];
    if (y === x) {
      this.w32(this.buckets, b, this.hn[x]);
      return;
    }
    const n = this.lo.length;
    let steps = n;
    while (this.hn[y] !== x) {
      if (--steps < 0 || !(y >= 0 && y < n)) throw brokenLinks('a hash chain');
      y = this.hn[y];
    }
    this.w32(this.hn, y, this.hn[x]);
  }

  // ---- layout ----

  private layout(buffer: ArrayBuffer | SharedArrayBuffer, off: number, cap: number): void {
    this.buffer = buffer;
    const f64 = (n: number) => {
      const a = new Float64Array(buffer, off, n);
      off += 8 * n;
      return a;
    };
    const i32 = (n: number) => {
      const a = new Int32Array(buffer, off, n);
      off += 4 * n;
      return a;
    };
    const illumos = this.policy === 'illumos';
    this.h64 = f64(H64_WORDS);
    this.lo = f64(cap);
    this.sz = f64(cap);
    this.mx = f64(cap);
    this.h32 = i32(H32_WORDS);
    this.lt = i32(cap);
    this.rt = i32(cap);
    this.ht = i32(cap);
    this.an = i32(illumos ? cap : 0);
    this.ap = i32(illumos ? cap : 0);
    this.kn = i32(illumos ? cap : 0);
    this.kp = i32(illumos ? cap : 0);
    this.hn = i32(illumos ? cap : 0);
    this.buckets = i32(illumos ? 1 << bucketBits(cap) : 0);
  }

  /** Growable stores only: a buffer with half as many nodes again; fields copied, the hash rebuilt. */
  private grow(): void {
    const old = { ...this } as RmapStore;
    const cap = this.h32[H32.CAPACITY];
    const next = Math.min(cap + Math.max(16, cap >> 1), 0x7fffffff);
    if (next === cap) throw new RangeError('resource map node pool exhausted (2^31 − 1 nodes)');
    this.layout(new ArrayBuffer(byteSize(this.policy, next)), 0, next);
    this.h64.set(old.h64);
    this.h32.set(old.h32);
    this.h32[H32.CAPACITY] = next;
    for (const f of ['lo', 'sz', 'mx', 'lt', 'rt', 'ht', 'an', 'ap', 'kn', 'kp', 'hn'] as const) {
      (this[f] as Float64Array | Int32Array).set(old[f] as Float64Array & Int32Array);
    }
    if (this.policy === 'illumos') {
      this.h32[H32.BUCKET_BITS] = bucketBits(next);
      this.buckets.fill(NIL);
      for (let b = 0; b < old.buckets.length; b++) {
        for (let x = old.buckets[b]; x !== NIL; x = old.hn[x]) this.hashInsert(x);
      }
    }
  }
}

function largestCapacity(policy: Policy, length: number): number {
  let lo = 0;
  let hi = Math.floor(length / 8) + 1;
  while (lo + 1 < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (byteSize(policy, mid) <= length) lo = mid;
    else hi = mid;
  }
  return lo;
}

function checkPolicy(policy: unknown): Policy {
  if (policy !== 'classic' && policy !== 'illumos') {
    if (typeof policy !== 'string') throw typeError('a string', 'policy', policy);
    throw rangeError("'classic' or 'illumos'", 'policy', policy);
  }
  return policy;
}

function checkCapacity(capacity: unknown): number {
  if (typeof capacity !== 'number') throw typeError('a number', 'capacity', capacity);
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 0x7fffffff) {
    throw rangeError('an integer from 1 to 2147483647', 'capacity', capacity);
  }
  return capacity;
}
