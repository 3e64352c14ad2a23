/*
 * Segment: one process's typed views of a channel, and the small shared steps both sides use — reading a
 * record header as untrusted bytes, sleeping on a signal word without losing a wakeup, waking the other side.
 *
 * Sleeping (the same protocol in C and Python, docs/channel-layout.md §4). A reader that finds nothing raises
 * READER_SLEEPERS, reads WRITE_SIGNAL, looks once more, and only then sleeps on WRITE_SIGNAL (futex). A writer
 * publishes (a seq_cst store of the record state or the tail), then reads READER_SLEEPERS; only when it is not
 * 0 does it bump WRITE_SIGNAL and wake. With sequentially consistent atomics either the writer sees the sleeper
 * or the sleeper's second look sees the record: no wakeup is lost, and an uncontended message costs no system
 * call. Writers waiting for space do the same on READ_SIGNAL / WRITER_SLEEPERS. A process killed between its
 * publish and its wake could still leave a sleeper waiting, so every sleep is a slice (at most 50 ms) after
 * which the sleeper looks again.
 */
import { DevmapError } from '../errors';
import { internalBuffer, type Mapping } from '../memory/mapping';
import { notify, wait, waitAsync } from '../sync/futex';
import { corrupt, H, R, RECORD_HEADER, readGeometry, spanOf, State, type Geometry } from './layout';

/** Longest single sleep: bounds how late a lost wakeup (a peer killed mid-protocol) is noticed. */
export const SLICE_MS = 50;
/** How often a party waiting on a peer (a reserved record, a lock, a gating reader) checks it still runs. */
export const LIVENESS_MS = 10;

export class Segment {
  readonly mapping: Mapping;
  readonly g: Geometry;
  readonly i32: Int32Array;
  readonly u8: Uint8Array;
  readonly f64: Float64Array;
  /** A Buffer over the same bytes: Buffer#write encodes strings straight into the ring. */
  readonly buf: Buffer;
  /** Int32 index of data byte 0. */
  readonly dataWord: number;
  readonly mask: number;
  readonly recordMax: number;

  constructor(mapping: Mapping) {
    const ab = internalBuffer(mapping); // detached by unmap, so live() sees it
    const head = new Int32Array(ab, 0, Math.min(ab.byteLength, 4096) >> 2);
    this.g = readGeometry(head, mapping.length);
    this.mapping = mapping;
    this.i32 = new Int32Array(ab, 0, this.g.total >> 2);
    this.u8 = new Uint8Array(ab, 0, this.g.total);
    this.f64 = new Float64Array(ab, 0, this.g.dataOffset >> 3);
    this.buf = Buffer.from(ab, 0, this.g.total);
    this.dataWord = this.g.dataOffset >> 2;
    this.mask = this.g.ring - 1;
    this.recordMax = spanOf(this.g.maxMessage);
  }

  /** Throws ERR_DEVMAP_UNMAPPED when the mapping has gone (every typed array over it is then length 0). */
  live(): void {
    if (this.i32.length === 0) throw new DevmapError('ERR_DEVMAP_UNMAPPED', 'The mapping under this channel has been unmapped');
  }

  /** Int32 index of the header of the record at position `pos`. */
  rec(pos: number): number {
    return this.dataWord + ((pos & this.mask) >> 2);
  }

  /** Byte offset of the payload of the record at `pos`. */
  payload(pos: number): number {
    return this.g.dataOffset + (pos & this.mask) + RECORD_HEADER;
  }

  get closed(): boolean {
    return Atomics.load(this.i32, H.CLOSED) === 1;
  }

  /**
   * Checks the header of a record that lies below `limit` (the tail): its span must be a multiple of 8 that
   * fits both the largest record and the distance to the limit. Returns the span.
   */
  span(r: number, pos: number, limit: number): number {
    const span = this.spanOrZero(r, pos, limit);
    if (span === 0) throw corrupt(`record at position ${pos >>> 0} has span ${this.i32[r + R.SPAN] >>> 0}`);
    return span;
  }

  /**
   * span() without the throw: 0 when the span cannot be right. For walks over records that another party may
   * release (and a writer rewrite) under the walker: a bad value there is only corrupt if the record is still
   * the walker's to read, which the caller checks.
   */
  spanOrZero(r: number, pos: number, limit: number): number {
    const span = this.i32[r + R.SPAN];
    if (span < RECORD_HEADER || span > this.recordMax || (span & 7) !== 0 || span > ((limit - pos) >>> 0)) return 0;
    return span;
  }

  /** The payload length of a committed record with span `span`. */
  length(r: number, pos: number, span: number): number {
    const len = this.i32[r + R.LENGTH];
    if (len < 0 || len > span - RECORD_HEADER) throw corrupt(`record at position ${pos >>> 0} has length ${len >>> 0} in a span of ${span}`);
    return len;
  }

  /** Distance from `from` to `to` in cursor space; corrupt when it exceeds the ring. */
  distance(from: number, to: number, what: string): number {
    const d = (to - from) >>> 0;
    if (d > this.g.ring) throw corrupt(`${what} is ${d} bytes behind the tail, more than the ring of ${this.g.ring}`);
    return d;
  }

  state(r: number): number {
    return Atomics.load(this.i32, r + R.STATE);
  }

  /** After publishing: wake sleepers on `signal` if the count word says there are any. */
  wake(signal: number, sleepers: number): void {
    if (Atomics.load(this.i32, sleepers) > 0) {
      Atomics.add(this.i32, signal, 1);
      notify(this.i32, signal);
    }
  }

  wakeReaders(): void {
    this.wake(H.WRITE_SIGNAL, H.READER_SLEEPERS);
  }

  wakeWriters(): void {
    this.wake(H.READ_SIGNAL, H.WRITER_SLEEPERS);
  }

  /**
   * Sleeps on `signal` unless `ready()` turns true after the sleeper count is raised (see the essay), for at
   * most `ms` milliseconds.
   */
  sleep(signal: number, sleepers: number, ms: number, ready: () => boolean): void {
    const i32 = this.i32;
    Atomics.add(i32, sleepers, 1);
    try {
      const v = Atomics.load(i32, signal);
      if (!ready()) wait(i32, signal, v, ms);
    } finally {
      if (i32.length > 0) Atomics.sub(i32, sleepers, 1);
    }
  }

  async sleepAsync(signal: number, sleepers: number, ms: number, ready: () => boolean, abort: AbortSignal | undefined): Promise<void> {
    const i32 = this.i32;
    Atomics.add(i32, sleepers, 1);
    try {
      const v = Atomics.load(i32, signal);
      if (!ready()) await waitAsync(i32, signal, v, abort === undefined ? { timeout: ms } : { timeout: ms, signal: abort });
    } finally {
      if (i32.length > 0) Atomics.sub(i32, sleepers, 1);
    }
  }

  /**
   * Takes the lock word `lock` as `me` (1 + a tag): CAS, spin, then sleep in 1 ms slices; every LIVENESS_MS it
   * asks `ownerDead(tag)` about the holder and takes the lock over from a dead one. The critical sections of
   * both locks (reserve, claim) are written so that their last store is their whole effect (writer.ts).
   */
  acquire(lock: number, sleepers: number, me: number, ownerDead: (tag: number) => boolean): void {
    const i32 = this.i32;
    if (Atomics.compareExchange(i32, lock, 0, me) === 0) return;
    let checked = performance.now();
    for (let spins = 0; ; spins++) {
      const owner = Atomics.load(i32, lock);
      if (owner === 0) {
        if (Atomics.compareExchange(i32, lock, 0, me) === 0) return;
        continue;
      }
      if (owner === me) throw corrupt('a lock word is held in this process\'s name outside its critical section');
      if (spins < 1000) continue;
      const now = performance.now();
      if (now - checked >= LIVENESS_MS) {
        checked = now;
        if (ownerDead(owner - 1) && Atomics.compareExchange(i32, lock, owner, me) === owner) return;
      }
      this.sleep(lock, sleepers, 1, () => Atomics.load(i32, lock) !== owner);
    }
  }

  unlock(lock: number, sleepers: number): void {
    Atomics.store(this.i32, lock, 0);
    if (Atomics.load(this.i32, sleepers) > 0) notify(this.i32, lock, 1);
  }

  /** Whether the record at `pos` exists (is below the tail) and is no longer reserved. */
  settled(pos: number): boolean {
    if (pos === Atomics.load(this.i32, H.TAIL) >>> 0) return false;
    return this.state(this.rec(pos)) !== State.RESERVED;
  }
}

/** Milliseconds left before `deadline` (Infinity for none), for a sleep slice of at most `slice`. */
export function sliceUntil(deadline: number, slice: number): number {
  if (deadline === Infinity) return slice;
  return Math.max(0, Math.min(slice, deadline - performance.now()));
}

/** An absolute deadline (performance.now() clock); 0 means "do not wait, do not spin". */
export function deadlineOf(timeout: number | undefined): number {
  if (timeout === 0) return 0;
  return timeout === undefined || timeout === Infinity ? Infinity : performance.now() + timeout;
}
