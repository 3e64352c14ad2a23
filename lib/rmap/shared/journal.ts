/*
 * The undo journal (map.ts's essay, 3): before each persistent write of a locked operation, the word's
 * position and old value are appended; committing is setting the count back to 0; rolling back restores the
 * entries newest first, so the oldest value of a word wins.
 *
 * An entry is a pair of Float64s: a tag naming the word (2·byte offset + 1 for a Float64 word, 2·byte offset
 * for an Int32 word, offsets from the region's start) and the old value.
 *
 * The journal is in shared memory, so a recovering process reads entries another process wrote — or
 * corrupted. Before restoring anything, rollback() checks every entry: a word the map's operations write
 * (a header counter, an owner record, a store word other than the store's identity), and an Int32 value
 * for an Int32 word. An entry aimed anywhere else — the mutex, the journal itself, the layout words — makes
 * it refuse the whole journal and restore nothing.
 */
import { writeSync } from 'node:fs';
import { DevmapError } from '../../errors';
import { H32, type RmapStore, type WriteHook } from '../store';
import { F, JOURNAL_AT, W, type Layout } from './layout';

// ---- the test hook: stop inside the locked region after N journaled writes (before the N-th data write) ----

const STOP_AFTER = Number(process.env.DEVMAP_SRMAP_STOP_AFTER ?? 0) | 0;
let journaled = 0;
/** Test hook: report this process's pid on stdout and block until killed. */
export function stopHere(): void {
  writeSync(1, `{"srmapStopped":${process.pid}}\n`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // until killed
}

export class Journal implements WriteHook {
  // The fields the store and the map write, with their byte offsets from the region's start: a typed array's
  // byteOffset getter costs tens of nanoseconds in V8, an identity comparison one.
  readonly #f64s: Float64Array[];
  readonly #f64at: number[];
  readonly #i32s: Int32Array[];
  readonly #i32at: number[];
  readonly #ownersAt: number;
  readonly #storeAt: number;
  readonly #total: number;
  /** Byte offsets of the store's identity words, which no operation writes. */
  readonly #fixed: number[];

  constructor(
    readonly i32: Int32Array,
    readonly f64: Float64Array,
    /** Byte offset of the region in the buffer. */
    readonly base: number,
    readonly cap: number,
    s: RmapStore,
    layout: Layout,
  ) {
    this.#ownersAt = layout.ownersAt;
    this.#storeAt = layout.storeAt;
    this.#total = layout.total;
    const h32At = s.h32.byteOffset - base;
    this.#fixed = [H32.MAGIC, H32.POLICY, H32.CAPACITY, H32.BUCKET_BITS].map((w) => h32At + 4 * w);
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

  /** Whether entry k names a word an operation writes, with a value that word can hold. */
  #valid(k: number): boolean {
    const f = this.f64;
    const tag = f[JOURNAL_AT / 8 + 2 * k];
    const old = f[JOURNAL_AT / 8 + 2 * k + 1];
    if (!Number.isSafeInteger(tag) || tag < 0) return false;
    if (tag % 2 === 1) {
      const at = (tag - 1) / 2;
      if (at % 8 !== 0 || at + 8 > this.#total) return false;
      return at === 8 * F.RECLAIMED || at === 8 * F.UNTRACKED || (at >= this.#ownersAt && !this.#fixedWord(at, 8));
    }
    const at = tag / 2;
    if (at % 4 !== 0 || at + 4 > this.#total || !Number.isInteger(old) || old < -0x80000000 || old > 0x7fffffff) return false;
    return at === 4 * W.OWNERS_USED || at === 4 * W.OWNERS_FULL || at === 4 * W.RECLAIMS || (at >= this.#storeAt && !this.#fixedWord(at, 4));
  }

  #fixedWord(at: number, bytes: number): boolean {
    return this.#fixed.some((w) => w + 4 > at && w < at + bytes);
  }

  /**
   * Restores every journaled word, newest first, then clears the journal; idempotent. Returns false, and
   * restores nothing, when the count or an entry is not one an operation could have written.
   */
  rollback(): boolean {
    const i32 = this.i32;
    const f = this.f64;
    const n = i32[W.JCOUNT];
    if (!(n >= 0 && n <= this.cap)) return false;
    for (let k = 0; k < n; k++) if (!this.#valid(k)) return false;
    for (let k = n - 1; k >= 0; k--) {
      const e = JOURNAL_AT / 8 + 2 * k;
      const tag = f[e];
      const old = f[e + 1];
      if (tag % 2 === 1) f[(tag - 1) / 16] = old;
      else i32[tag / 8] = old;
    }
    i32[W.JCOUNT] = 0;
    return true;
  }
}
