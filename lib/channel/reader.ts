/*
 * The reading side of a channel: one reader's cursor, and what it does with each record it meets.
 *
 * Three kinds of reader share this code:
 *   - the one reader of spsc and mpsc: its cursor is HEAD, in reader slot 0. A new reader may take slot 0 over
 *     only from a dead one, and starts where it stopped: a record it was consuming when it died is delivered
 *     again (at-least-once for consume; receive copies first and moves HEAD after, so from the channel's side
 *     every record is taken once).
 *   - the readers of mpmc, which compete for records: under CLAIM_LOCK a reader marks the record at HEAD
 *     CLAIMED with its own tag and moves HEAD past it; after delivery it marks it DONE and moves RELEASE (the
 *     writers' limit) over every finished record. A record CLAIMED by a reader that died is claimed again by
 *     the next reader that finds nothing new (redelivery, out of order).
 *   - broadcast readers (Subscriber): each has its own cursor in its slot and sees every record; the writers
 *     wait for the slowest live one.
 *
 * Each record met at the cursor is checked as untrusted bytes (segment.ts). COMMITTED: delivered. ABORTED:
 * passed over. RESERVED: waited for; once it has been pending for LIVENESS_MS the reader asks whether its writer
 * still runs, and if the kernel says it does not, marks the record ABORTED (a CAS: every reader may decide it)
 * and passes over it — the "skip within 100 ms" of a writer killed between loan and commit.
 */
import { DevmapError } from '../errors';
import { C, corrupt, H, R, readerSlot, S, State, writerSlot } from './layout';
import { LIVENESS_MS, type Segment } from './segment';
import { claimSlot, isOwnerAlive, isTagDead, publish, releaseSlot } from './slots';

export const EMPTY = -1;
export const DRAINED = -2;

export type ReaderKind = 'single' | 'mpmc' | 'broadcast';

export class Reader {
  readonly #s: Segment;
  readonly kind: ReaderKind;
  #slot = -1;
  #base = 0;
  #claimed = 0;
  /** Int32 index of this reader's cursor word. */
  #cursor: number = H.HEAD;
  #counters = 0;
  #cas: boolean;
  #pendingPos = -1;
  #pendingSince = 0;
  #lastScan = 0;
  /** The record next() returned: its payload length and span. */
  length = 0;
  span = 0;
  /** Set when next() found nothing because the record at the cursor is still being written. */
  waitingOnWriter = false;

  constructor(s: Segment, kind: ReaderKind) {
    this.#s = s;
    this.kind = kind;
    this.#cas = s.g.overflow === 'overwrite';
  }

  get slot(): number {
    return this.#slot;
  }

  /** Claims a reader slot on first use; broadcast readers start at the current tail. */
  ensure(): void {
    if (this.#slot >= 0) return;
    const s = this.#s;
    const i32 = s.i32;
    const slot = claimSlot(i32, s.g.readers, (i) => readerSlot(s.g, i));
    if (slot < 0) {
      const what = this.kind === 'single' ? `The reader slot of this ${s.g.mode} channel is` : `All ${s.g.readers} reader slots are`;
      throw new DevmapError('ERR_DEVMAP_BUSY', `${what} held by a live process`);
    }
    const b = readerSlot(s.g, slot);
    const gen = i32[b + S.GEN];
    this.#claimed = State.CLAIMED | (slot << 8) | ((gen & 0xffff) << 16);
    this.#counters = (b * 4) / 8;
    if (this.kind === 'broadcast') {
      this.#cursor = b + S.CURSOR;
      Atomics.store(i32, b + S.FLAGS, 1);
      Atomics.store(i32, this.#cursor, Atomics.load(i32, H.TAIL));
      publish(i32, b);
      // Writers that read the cursors before the publish may have used a limit up to the tail of that moment:
      // start at a tail read after it (writer.ts, #refreshLimit).
      Atomics.store(i32, this.#cursor, Atomics.load(i32, H.TAIL));
    } else {
      publish(i32, b);
    }
    this.#base = b;
    this.#slot = slot;
  }

  release(): void {
    if (this.#slot < 0) return;
    const s = this.#s;
    if (s.i32.length > 0) {
      Atomics.compareExchange(s.i32, H.CLAIM_LOCK, (this.#claimed >>> 8) + 1, 0);
      releaseSlot(s.i32, this.#base);
    }
    this.#slot = -1;
  }

  count(which: C, n = 1): void {
    this.#s.f64[this.#counters + which] += n;
  }

  /** This reader's cursor (the next record it would look at). */
  get position(): number {
    return Atomics.load(this.#s.i32, this.kind === 'mpmc' ? H.HEAD : this.#cursor) >>> 0;
  }

  /**
   * The second look of the sleep protocol (segment.ts): true when a record at the cursor is there and no longer
   * being written, or when the channel is closed with nothing left.
   */
  ready(): boolean {
    const i32 = this.#s.i32;
    if (i32.length === 0) return true;
    const pos = this.position; // mpmc: HEAD, where only unclaimed records are (RESERVED, COMMITTED, ABORTED)
    if (pos === Atomics.load(i32, H.TAIL) >>> 0) return Atomics.load(i32, H.CLOSED) === 1;
    return this.#s.state(this.#s.rec(pos)) !== State.RESERVED;
  }

  /**
   * The next record to deliver, without waiting: its position (length and span set), EMPTY when there is none
   * yet (or the one at the cursor is still being written), DRAINED when the channel is closed and nothing is
   * left. An mpmc reader has claimed the record it returns.
   */
  next(): number {
    this.waitingOnWriter = false;
    if (this.kind === 'mpmc') return this.#claim();
    const s = this.#s;
    const i32 = s.i32;
    for (;;) {
      const pos = Atomics.load(i32, this.#cursor) >>> 0;
      const tail = Atomics.load(i32, H.TAIL) >>> 0;
      if (pos === tail) return Atomics.load(i32, H.CLOSED) === 1 && pos === (Atomics.load(i32, H.TAIL) >>> 0) ? DRAINED : EMPTY;
      s.distance(pos, tail, 'a read cursor');
      const r = s.rec(pos);
      const state = s.state(r);
      const span = s.spanOrZero(r, pos, tail);
      const len = s.i32[r + R.LENGTH];
      // Under 'overwrite' a writer may drop this record (moving the cursor) and rewrite it while we read it:
      // bytes that cannot be right are only corrupt if the cursor still points here.
      if (this.#cas && Atomics.load(i32, this.#cursor) >>> 0 !== pos) continue;
      if (span === 0) s.span(r, pos, tail);
      if (state === State.COMMITTED) {
        if (len < 0 || len > span - 16) s.length(r, pos, span);
        this.length = len;
        this.span = span;
        return pos;
      }
      if (state === State.ABORTED) {
        this.#advance(pos, span); // a failed CAS means an overwriting writer moved the cursor: look again
        continue;
      }
      if (state !== State.RESERVED) throw corrupt(`record state ${state >>> 0} at position ${pos}`);
      if (!this.#writerGone(r, pos)) {
        this.waitingOnWriter = true;
        return EMPTY;
      }
      // The writer died holding the record: pass over it (a CAS, other broadcast readers decide the same).
      if (Atomics.compareExchange(i32, r + R.STATE, State.RESERVED, State.ABORTED) === State.RESERVED) this.count(C.AUX1);
    }
  }

  /**
   * Finishes the record next() returned at `pos`: moves the cursor past it (mpmc: marks it DONE and moves
   * RELEASE). Returns false when an overwriting writer took it first (the copy must be discarded).
   */
  done(pos: number): boolean {
    const s = this.#s;
    if (this.kind === 'mpmc') {
      Atomics.store(s.i32, s.rec(pos) + R.STATE, State.DONE);
      this.#release();
    } else if (!this.#advance(pos, this.span)) {
      return false;
    }
    this.count(C.COUNT);
    this.count(C.BYTES, this.length);
    return true;
  }

  #advance(pos: number, span: number): boolean {
    const s = this.#s;
    if (this.#cas) {
      if (Atomics.compareExchange(s.i32, this.#cursor, pos | 0, (pos + span) | 0) !== (pos | 0)) return false;
    } else {
      Atomics.store(s.i32, this.#cursor, (pos + span) | 0);
    }
    s.wakeWriters();
    return true;
  }

  /** Whether the writer of the reserved record at `pos` is gone, asked once it has been pending a while. */
  #writerGone(r: number, pos: number): boolean {
    const now = performance.now();
    if (this.#pendingPos !== pos) {
      this.#pendingPos = pos;
      this.#pendingSince = now;
      return false;
    }
    if (now - this.#pendingSince < LIVENESS_MS) return false;
    this.#pendingSince = now;
    const s = this.#s;
    const tag = s.i32[r + R.WRITER];
    const slot = tag & 0xff;
    if (slot >= s.g.writers) throw corrupt(`record at position ${pos} names writer slot ${slot}`);
    return isTagDead(s.i32, writerSlot(slot), tag);
  }

  // --- mpmc ------------------------------------------------------------------------------------------------

  #claim(): number {
    const s = this.#s;
    const i32 = s.i32;
    s.acquire(H.CLAIM_LOCK, H.CLAIM_SLEEPERS, (this.#claimed >>> 8) + 1, (tag) => this.#claimerDead(tag));
    let found = EMPTY;
    try {
      for (;;) {
        const pos = Atomics.load(i32, H.HEAD) >>> 0;
        const tail = Atomics.load(i32, H.TAIL) >>> 0;
        if (pos === tail) {
          // TAIL is read again after CLOSED: a writer may have sent more between our read of it and its close.
          if (Atomics.load(i32, H.CLOSED) === 1 && Atomics.load(i32, H.TAIL) >>> 0 === pos && Atomics.load(i32, H.RELEASE) >>> 0 === pos) {
            found = DRAINED;
          }
          break;
        }
        s.distance(pos, tail, 'the claim cursor');
        const r = s.rec(pos);
        const state = s.state(r);
        const span = s.span(r, pos, tail);
        if (state === State.COMMITTED) {
          this.length = s.length(r, pos, span);
          this.span = span;
          Atomics.store(i32, r + R.STATE, this.#claimed);
          Atomics.store(i32, H.HEAD, (pos + span) | 0);
          found = pos;
          break;
        }
        if (state === State.ABORTED) {
          Atomics.store(i32, H.HEAD, (pos + span) | 0);
          continue;
        }
        if (state !== State.RESERVED) throw corrupt(`record state ${state >>> 0} at position ${pos}`);
        if (!this.#writerGone(r, pos)) {
          this.waitingOnWriter = true;
          break;
        }
        if (Atomics.compareExchange(i32, r + R.STATE, State.RESERVED, State.ABORTED) === State.RESERVED) this.count(C.AUX1);
      }
    } finally {
      s.unlock(H.CLAIM_LOCK, H.CLAIM_SLEEPERS);
    }
    if (found === EMPTY) return this.#reclaimOrphan();
    if (found === DRAINED) this.#release();
    return found;
  }

  /** Whether the reader named by a claim tag (slot | generation << 8, 16 bits of it) is gone. */
  #claimerDead(tag: number): boolean {
    const s = this.#s;
    const slot = tag & 0xff;
    if (slot >= s.g.readers) throw corrupt(`a claim names reader slot ${slot}`);
    const b = readerSlot(s.g, slot);
    if ((Atomics.load(s.i32, b + S.GEN) & 0xffff) !== tag >>> 8) return true;
    return !isOwnerAlive(s.i32, b);
  }

  /**
   * mpmc, when nothing new is there: looks between RELEASE and HEAD for a record claimed by a reader that died,
   * and claims it again (delivered once more: at-least-once). Rate-limited.
   */
  #reclaimOrphan(): number {
    const now = performance.now();
    if (now - this.#lastScan < LIVENESS_MS) return EMPTY;
    this.#lastScan = now;
    const s = this.#s;
    const i32 = s.i32;
    const head = Atomics.load(i32, H.HEAD) >>> 0;
    let pos = Atomics.load(i32, H.RELEASE) >>> 0;
    s.distance(pos, head, 'the release cursor');
    while (pos !== head) {
      const r = s.rec(pos);
      const state = s.state(r);
      const span = s.spanOrZero(r, pos, head);
      // Records below RELEASE may be rewritten under us: once RELEASE has passed `pos`, stop (nothing there is
      // an orphan any more); a bad span is corrupt only while the record is still unreleased.
      const release = Atomics.load(i32, H.RELEASE) >>> 0;
      if (((pos - release) >>> 0) > ((head - release) >>> 0)) return EMPTY;
      if (span === 0) s.span(r, pos, head);
      if ((state & 0xff) === State.CLAIMED && state !== this.#claimed && this.#claimerDead(state >>> 8)) {
        if (Atomics.compareExchange(i32, r + R.STATE, state, this.#claimed) === state) {
          // Ours now, and unreleased (only DONE and ABORTED records are released): read it again.
          this.span = s.span(r, pos, head);
          this.length = s.length(r, pos, this.span);
          return pos;
        }
      }
      pos = (pos + span) >>> 0;
    }
    return EMPTY;
  }

  /** mpmc: moves RELEASE over every finished record (several readers may help; each step is a CAS). */
  #release(): void {
    const s = this.#s;
    const i32 = s.i32;
    let moved = false;
    for (;;) {
      const pos = Atomics.load(i32, H.RELEASE) >>> 0;
      const head = Atomics.load(i32, H.HEAD) >>> 0;
      if (pos === head) break;
      s.distance(pos, head, 'the release cursor');
      const r = s.rec(pos);
      const state = s.state(r);
      const span = s.spanOrZero(r, pos, head);
      // Another reader may have moved RELEASE past this record, and a writer rewritten it, since we read RELEASE.
      if (Atomics.load(i32, H.RELEASE) >>> 0 !== pos) continue;
      if (state !== State.DONE && state !== State.ABORTED) break;
      if (span === 0) s.span(r, pos, head);
      if (Atomics.compareExchange(i32, H.RELEASE, pos | 0, (pos + span) | 0) === (pos | 0)) moved = true;
    }
    if (moved) s.wakeWriters();
  }
}
