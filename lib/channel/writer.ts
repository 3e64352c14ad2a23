/*
 * The writing side of a channel: one process's writer slot, reservations, commits and the reserve lock.
 *
 * A reservation is made under RESERVE_LOCK in the multi-writer modes (mpsc, mpmc, broadcast; spsc has one
 * writer and takes no lock). Inside it the writer reads TAIL, checks the space against the readers' limit,
 * writes the record header (state RESERVED, span, length, its tag) at TAIL, and stores TAIL + span. That last
 * store is the whole effect of the critical section: a holder killed before it leaves only bytes beyond the tail
 * (free space), a holder killed after it leaves a well-formed reserved record. So a waiter that finds the lock
 * held by a dead writer (its tag names a slot re-claimed, released or owned by a dead process) takes it over
 * with a CAS and carries on. The data is copied outside the lock; commit is one store of COMMITTED.
 *
 * The limit a writer may not pass: HEAD (spsc, mpsc), RELEASE (mpmc), or the lowest cursor of the live broadcast
 * readers (TAIL itself when there is none). The writer keeps the last value it read and reads again only when
 * that one says "full": cursors only move forward, so a stale limit is a conservative one (and it is refreshed
 * at least every 2^30 bytes, long before the 32-bit positions could wrap around it).
 *
 * Under overflow 'overwrite' (spsc, mpsc) a full writer instead drops the oldest committed record: it moves HEAD
 * past it with a CAS before writing, and a reader that was copying that record sees its own CAS of HEAD fail
 * and discards the copy.
 */
import { DevmapError } from '../errors';
import { C, corrupt, H, R, readerSlot, S, State, writerSlot } from './layout';
import { LIVENESS_MS, type Segment } from './segment';
import { claimSlot, isOwnerAlive, isTagDead, publish, releaseSlot, tagOf } from './slots';

export const FULL = -1;
export const CLOSED = -2;

export class Writer {
  readonly #s: Segment;
  #slot = -1;
  #tag = 0;
  /** Float64 index of this slot's counters. */
  #counters = 0;
  #limit = 0;
  #limitTail = 0;
  #multi: boolean;
  #lastReap = 0;
  /**
   * spsc send(): the record is written whole before TAIL moves, so its header says COMMITTED from the start and
   * the one seq_cst store of TAIL (in publish()) is the commit. Set by reserveDirect() for one reservation.
   */
  #direct = false;
  /** spsc sendBatch(): records reserved and written whole, published together by one TAIL store (endRun). */
  #run = false;
  #runTail = 0;
  #runCount = 0;
  #runBytes = 0;
  #pendingDirect = false;
  #directSpan = 0;

  constructor(s: Segment) {
    this.#s = s;
    this.#multi = s.g.mode !== 'spsc';
  }

  get slot(): number {
    return this.#slot;
  }

  /** Claims a writer slot on first use. */
  ensure(): void {
    if (this.#slot >= 0) return;
    const s = this.#s;
    const slot = claimSlot(s.i32, s.g.writers, writerSlot);
    if (slot < 0) {
      throw new DevmapError('ERR_DEVMAP_BUSY', `All ${s.g.writers} writer slots of this ${s.g.mode} channel are held by live processes`);
    }
    const b = writerSlot(slot);
    this.#tag = tagOf(slot, s.i32[b + S.GEN]);
    this.#counters = (b * 4) / 8; // Float64 index of the slot's first byte: C.* count from there
    publish(s.i32, b);
    this.#slot = slot;
    this.#limit = Atomics.load(s.i32, H.TAIL) >>> 0;
    this.#limitTail = this.#limit;
    this.#limit = this.#refreshLimit(this.#limit);
  }

  release(): void {
    if (this.#slot < 0) return;
    const s = this.#s;
    if (s.i32.length > 0) {
      Atomics.compareExchange(s.i32, H.RESERVE_LOCK, this.#tag + 1, 0);
      releaseSlot(s.i32, writerSlot(this.#slot));
    }
    this.#slot = -1;
  }

  count(which: C, n = 1): void {
    this.#s.f64[this.#counters + which] += n;
  }

  /**
   * Reserves a record of `length` payload bytes without waiting. Returns its position, FULL when there is no
   * room now (or, under 'overwrite', when the oldest record is still being written), or CLOSED.
   */
  tryReserve(length: number): number {
    const s = this.#s;
    const i32 = s.i32;
    if (Atomics.load(i32, H.CLOSED) === 1) return CLOSED;
    const span = (16 + length + 7) & ~7;
    if (this.#multi) this.#lock();
    try {
      const tail = this.#run ? this.#runTail : Atomics.load(i32, H.TAIL) >>> 0;
      if (((tail + span - this.#limit) >>> 0) > s.g.ring || ((tail - this.#limitTail) >>> 0) > 0x40000000) {
        this.#limit = this.#refreshLimit(tail);
        this.#limitTail = tail;
        while (((tail + span - this.#limit) >>> 0) > s.g.ring) {
          if (s.g.overflow !== 'overwrite' || !this.#dropOldest(tail)) return FULL;
          this.#limit = this.#refreshLimit(tail);
        }
      }
      const r = s.rec(tail);
      i32[r + R.SPAN] = span;
      i32[r + R.LENGTH] = length;
      i32[r + R.WRITER] = this.#tag;
      // Plain stores: the seq_cst store of TAIL below publishes them (a reader reads TAIL before the header).
      i32[r + R.STATE] = this.#direct || this.#run ? State.COMMITTED : State.RESERVED;
      if (this.#run) {
        this.#runTail = (tail + span) >>> 0;
        this.#runCount++;
        this.#runBytes += length;
        return tail;
      }
      if (this.#direct) {
        this.#pendingDirect = true;
        this.#directSpan = span;
        return tail;
      }
      Atomics.store(i32, H.TAIL, (tail + span) | 0);
      return tail;
    } finally {
      if (this.#multi) s.unlock(H.RESERVE_LOCK, H.LOCK_SLEEPERS);
    }
  }

  /**
   * spsc only: reserves without publishing; the caller copies the payload, then calls publish(). A record
   * nobody can see until TAIL moves needs no RESERVED state and no separate commit store.
   */
  reserveDirect(length: number): number {
    this.#direct = this.#s.g.mode === 'spsc';
    this.#pendingDirect = false;
    try {
      return this.tryReserve(length);
    } finally {
      this.#direct = false;
    }
  }

  /** spsc: starts a run of records that endRun() publishes at once. */
  beginRun(): void {
    this.#run = this.#s.g.mode === 'spsc' && this.#s.g.overflow !== 'overwrite';
    this.#runTail = Atomics.load(this.#s.i32, H.TAIL) >>> 0;
    this.#runCount = 0;
    this.#runBytes = 0;
  }

  /** Publishes the run (one seq_cst store of TAIL), counts it and wakes the readers once. */
  endRun(): void {
    if (!this.#run) return;
    this.#run = false;
    if (this.#runCount === 0) return;
    const s = this.#s;
    Atomics.store(s.i32, H.TAIL, this.#runTail | 0);
    this.count(C.COUNT, this.#runCount);
    this.count(C.BYTES, this.#runBytes);
    s.wakeReaders();
  }

  /** Whether beginRun() started a run (spsc without overwrite); otherwise each record is published alone. */
  get inRun(): boolean {
    return this.#run;
  }

  /** After reserveDirect(): moves TAIL past the record (its commit), counts it and wakes the readers. */
  publish(pos: number, length: number): void {
    const s = this.#s;
    if (!this.#pendingDirect) return this.commit(pos, length);
    this.#pendingDirect = false;
    Atomics.store(s.i32, H.TAIL, (pos + this.#directSpan) | 0);
    this.count(C.COUNT);
    this.count(C.BYTES, length);
    s.wakeReaders();
  }

  /** The second look of the sleep protocol: is there room for `length` bytes now (or is the channel closed)? */
  hasRoom(length: number): boolean {
    const s = this.#s;
    if (s.i32.length === 0 || Atomics.load(s.i32, H.CLOSED) === 1) return true;
    const tail = Atomics.load(s.i32, H.TAIL) >>> 0;
    this.#limit = this.#refreshLimit(tail);
    this.#limitTail = tail;
    return ((tail + ((16 + length + 7) & ~7) - this.#limit) >>> 0) <= s.g.ring;
  }

  /** Publishes the record at `pos` with `length` payload bytes (at most the reserved length). */
  commit(pos: number, length: number): void {
    const s = this.#s;
    const r = s.rec(pos);
    s.i32[r + R.LENGTH] = length;
    Atomics.store(s.i32, r + R.STATE, State.COMMITTED);
    this.count(C.COUNT);
    this.count(C.BYTES, length);
    s.wakeReaders();
  }

  abort(pos: number): void {
    const s = this.#s;
    Atomics.store(s.i32, s.rec(pos) + R.STATE, State.ABORTED);
    this.count(C.AUX1);
    s.wakeReaders();
  }

  /** The lowest position a reader may still need, read fresh from the segment. */
  #refreshLimit(tail: number): number {
    const s = this.#s;
    const i32 = s.i32;
    switch (s.g.mode) {
      case 'spsc':
      case 'mpsc': {
        const head = Atomics.load(i32, H.HEAD) >>> 0;
        s.distance(head, tail, 'the read cursor');
        return head;
      }
      case 'mpmc': {
        const release = Atomics.load(i32, H.RELEASE) >>> 0;
        s.distance(release, tail, 'the release cursor');
        return release;
      }
      case 'broadcast': {
        let low = tail;
        let lowDistance = 0;
        for (let i = 0; i < s.g.readers; i++) {
          const b = readerSlot(s.g, i);
          if (Atomics.load(i32, b + S.PID) <= 0) continue; // free, or being claimed (its cursor will be >= tail)
          const cursor = Atomics.load(i32, b + S.CURSOR) >>> 0;
          const d = s.distance(cursor, tail, `broadcast reader ${i}`);
          if (d > lowDistance) [low, lowDistance] = [cursor, d];
        }
        return low;
      }
    }
  }

  /**
   * Broadcast: frees the slots of readers that no longer run, so that they stop gating. Rate-limited (each
   * check reads /proc); returns true when a slot was freed.
   */
  reapReaders(force = false): boolean {
    const s = this.#s;
    if (s.g.mode !== 'broadcast') return false;
    const now = performance.now();
    if (!force && now - this.#lastReap < LIVENESS_MS) return false;
    this.#lastReap = now;
    let freed = false;
    for (let i = 0; i < s.g.readers; i++) {
      const b = readerSlot(s.g, i);
      const pid = Atomics.load(s.i32, b + S.PID);
      if (pid > 0 && !isOwnerAlive(s.i32, b) && Atomics.compareExchange(s.i32, b + S.PID, pid, 0) === pid) freed = true;
    }
    if (freed) this.#limit = this.#refreshLimit(Atomics.load(s.i32, H.TAIL) >>> 0);
    return freed;
  }

  /** 'overwrite': moves HEAD past the oldest record, if it is settled. Called under the reserve lock. */
  #dropOldest(tail: number): boolean {
    const s = this.#s;
    const head = Atomics.load(s.i32, H.HEAD) >>> 0;
    if (head === tail) return false;
    const r = s.rec(head);
    const state = s.state(r);
    if (state === State.RESERVED) return false;
    if (state !== State.COMMITTED && state !== State.ABORTED) throw corrupt(`record state ${state >>> 0} at position ${head}`);
    const span = s.span(r, head, tail);
    if (Atomics.compareExchange(s.i32, H.HEAD, head | 0, (head + span) | 0) === (head | 0) && state === State.COMMITTED) {
      this.count(C.AUX3);
    }
    return true;
  }

  #lock(): void {
    const s = this.#s;
    s.acquire(H.RESERVE_LOCK, H.LOCK_SLEEPERS, this.#tag + 1, (owner) => {
      const slot = owner & 0xff;
      if (slot >= s.g.writers) throw corrupt(`the reserve lock names writer slot ${slot}`);
      return isTagDead(s.i32, writerSlot(slot), owner);
    });
  }

  /** Byte offset of this writer's slot, for tests. */
  get slotOffset(): number {
    return this.#slot < 0 ? -1 : writerSlot(this.#slot) * 4;
  }
}
