/*
 * The undo journal (map.ts's essay, 3): before each persistent write of a locked operation, the word's
 * position and old value are appended; committing is setting the count back to 0; rolling back restores the
 * entries newest first, so the oldest value of a word wins.
 *
 * An entry is a pair of Float64s: a tag naming the word (2·byte offset + 1 for a Float64 word, 2·byte offset
 * for an Int32 word, offsets from the region's start) and the old value.
 */
import { writeSync } from 'node:fs';
import { DevmapError } from '../../errors';
import type { RmapStore, WriteHook } from '../store';
import { JOURNAL_AT, W } from './layout';

// ---- the test hook: stop inside the locked region after N journaled writes (before the N-th data write) ----

const STOP_AFTER = Number(process.env.DEVMAP_SRMAP_STOP_AFTER ?? 0) | 0;
let journaled = 0;
function stopHere(): void {
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
