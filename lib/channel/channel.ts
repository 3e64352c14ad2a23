/*
 * Channel: messages between processes through a ring in shared memory — copies or zero-copy loans, blocking,
 * spinning or async waits, and recovery from peers that die at any instruction.
 *
 * A Channel is one process's handle on a channel segment (layout.ts, docs/channel-layout.md). The handle takes
 * a writer slot the first time it sends and a reader slot the first time it reads; detach() (or dispose) gives
 * them back. The segment is shared and untrusted: every cursor, span, length, state and slot number read from
 * it is checked before it is used to compute an address, and a value that cannot be right ends the call with
 * ERR_DEVMAP_CORRUPT — never a bad read or a wait without end (every wait is in slices, and looks again).
 *
 * What each call promises:
 *   - send/trySend/sendAsync copy the message in and publish it; FIFO per writer. Under overflow 'block' a full
 *     ring makes send wait (false on timeout); under 'fail' it returns false at once; under 'overwrite' the
 *     oldest record is dropped (counted in stats().lost).
 *   - loan(size) reserves a record and hands out a view of it in the ring; commit(length) publishes it, abort()
 *     turns it into a hole readers pass over. The view is a subarray of the handle's ring view, never detached. A writer killed between
 *     loan and commit is detected by the readers waiting on its record (its slot's pid and start time, dead only
 *     on the kernel's word), which pass over it within ~20 ms.
 *   - receive/tryReceive/receiveAsync return a copy and move the cursor after copying: a reader killed
 *     mid-receive took nothing, so every record is delivered once as far as the channel can see.
 *   - consume(fn) calls fn with a view of the record in the ring and moves the cursor only when fn returns; the
 *     view is detached then. A reader killed inside fn leaves the record for the next reader: at-least-once.
 *     If fn throws, the record stays too (and the error propagates).
 *   - consumeBatch(fn, { max }) hands fn (bytes, offset, length) for each record available, over one view of the
 *     ring made for the call and detached when it returns: no allocation per message.
 *   - close() ends the stream: sends throw ERR_DEVMAP_CHANNEL_CLOSED, readers drain what is there, then receive
 *     returns null and async iteration ends.
 */
import { DevmapError, integer, options, rangeError, typeError } from '../errors';
import { typedArrayByteLength } from '../intrinsics';
import type { Mapping } from '../memory/mapping';
import { native } from '../native';
import { notify } from '../sync/futex';
import { C, format, geometry, H, MAX_RING, MAX_SLOTS, MIN_RING, MODES, OVERFLOWS, readGeometry, spanOf, type Mode, type Overflow } from './layout';
import { DRAINED, EMPTY, Reader, type ReaderKind } from './reader';
import { deadlineOf, LIVENESS_MS, Segment, SLICE_MS, sliceUntil } from './segment';
import { statsOf, type ChannelStats } from './stats';
import { CLOSED, FULL, Writer } from './writer';

export interface ChannelOptions {
  /** Ring bytes, rounded up to a power of two (at least 4096, at most 2^30). */
  capacity: number;
  /** Default 'spsc'. */
  mode?: Mode;
  /** Default 'block'. 'overwrite' is for spsc and mpsc. */
  overflow?: Overflow;
  /** Largest message in bytes: default half the ring, at most the ring less 16. */
  maxMessage?: number;
  /** Writer slots (processes writing at once): spsc 1; default 16 otherwise. */
  writers?: number;
  /** Reader slots: spsc and mpsc 1; default 8 for mpmc and broadcast readers. */
  readers?: number;
}

export interface HandleOptions {
  /** Polls of the channel before a blocking call sleeps (default 2000; 0 sleeps at once). */
  spin?: number;
}

export interface WaitOptions {
  /** Milliseconds; default none. */
  timeout?: number;
  signal?: AbortSignal;
}

export interface Loan {
  /** The record's bytes in the ring, to fill in place before commit(); do not touch it after commit() or abort(). */
  readonly view: Uint8Array;
  /** Publishes the first `length` bytes (default: all). */
  commit(length?: number): void;
  /** Gives the record up: readers pass over it. */
  abort(): void;
  [Symbol.dispose](): void;
}

const CREATE_KEYS = ['capacity', 'mode', 'overflow', 'maxMessage', 'writers', 'readers', 'spin'];
const WAIT_KEYS = ['timeout', 'signal'];
const DEFAULT_SPIN = 2000;

function closedError(): DevmapError {
  return new DevmapError('ERR_DEVMAP_CHANNEL_CLOSED', 'The channel is closed: no more messages can be sent');
}

function validateCreate(opts: unknown): ReturnType<typeof geometry> & { spin: number } {
  if (opts === undefined) throw typeError('an object with a capacity', 'options', opts);
  const o = options<ChannelOptions & HandleOptions>(opts, 'options', CREATE_KEYS);
  const { capacity, mode = 'spsc', overflow = 'block', maxMessage, writers, readers, spin } = o;
  const cap = integer(capacity, 'options.capacity', 1, MAX_RING);
  if (!MODES.includes(mode as Mode)) throw typeError(`one of ${MODES.join(', ')}`, 'options.mode', mode);
  if (!OVERFLOWS.includes(overflow as Overflow)) throw typeError(`one of ${OVERFLOWS.join(', ')}`, 'options.overflow', overflow);
  if (overflow === 'overwrite' && mode !== 'spsc' && mode !== 'mpsc') {
    throw rangeError("overflow 'block' or 'fail' (overwrite is for spsc and mpsc)", 'options.overflow', overflow);
  }
  let ring = MIN_RING;
  while (ring < cap) ring *= 2;
  const max = maxMessage === undefined ? ring / 2 : integer(maxMessage, 'options.maxMessage', 1, ring - 16);
  const single = mode === 'spsc';
  const w = writers === undefined ? (single ? 1 : 16) : integer(writers, 'options.writers', 1, single ? 1 : MAX_SLOTS);
  const oneReader = mode === 'spsc' || mode === 'mpsc';
  const r = readers === undefined ? (oneReader ? 1 : 8) : integer(readers, 'options.readers', 1, oneReader ? 1 : MAX_SLOTS);
  return { ...geometry(mode as Mode, overflow as Overflow, ring, max, w, r), spin: spinOf(spin) };
}

function spinOf(spin: unknown): number {
  return spin === undefined ? DEFAULT_SPIN : integer(spin, 'options.spin', 0, 0x7fffffff);
}

const NO_WAIT_OPTIONS = { deadline: Infinity, signal: undefined };

function waitOpts(opts: unknown): { deadline: number; signal: AbortSignal | undefined } {
  if (opts === undefined) return NO_WAIT_OPTIONS;
  const o = options<WaitOptions>(opts, 'options', WAIT_KEYS);
  const { timeout, signal } = o;
  if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
    if (typeof timeout !== 'number') throw typeError('a number of milliseconds', 'options.timeout', timeout);
    throw rangeError('a number of milliseconds >= 0', 'options.timeout', timeout);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('an AbortSignal', 'options.signal', signal);
  return { deadline: deadlineOf(timeout), signal };
}

/** What a message may be: bytes (any ArrayBufferView) or a string, sent as UTF-8. */
export type Message = ArrayBufferView | string;

/** The receiving half, shared by a Channel (spsc, mpsc, mpmc) and a broadcast Subscriber. */
/** Bytes [offset, offset + length) of a handle's mapping, a subarray of its ring view (module-private: set below). */
let recordOf: (h: Receiving, offset: number, length: number) => Uint8Array;

abstract class Receiving {
  protected readonly s: Segment;
  protected readonly spin: number;

  protected constructor(s: Segment, spin: number) {
    // Plain JavaScript can call a TypeScript-private constructor: only a Segment this module made gets in.
    if (!(s instanceof Segment)) {
      throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'Use Channel.create(), Channel.attach() or channel.subscribe()');
    }
    this.s = s;
    this.spin = spin;
  }

  protected abstract reader(): Reader;

  /*
   * The ring as user code sees it: one view of the mapping's data region, made on first use and kept. A record
   * handed to consume() or a loan is a subarray of it — no native call and no ArrayBuffer per message. It is not
   * detached when the callback returns or the loan is committed: a Node API may still hold it (zlib aborts the
   * process on a detached input), and devmap never detaches a view user code holds. A view kept past its
   * callback sees whatever the ring holds there later — the same channel's bytes, never another object's, and
   * after unmap the trash pages' zeros.
   */
  #ring: Uint8Array | undefined;

  static {
    recordOf = (h, offset, length) => {
      const at = offset - h.s.g.dataOffset;
      return h.#ringBytes().subarray(at, at + length);
    };
  }

  /** The whole ring (offsets in it are payload offsets less the data region's start). */
  #ringBytes(): Uint8Array {
    const s = this.s;
    // User code holds windows on this view, so its buffer can be moved away (another realm's transfer()): then a
    // new view of the same pages takes its place (the addon's store count keeps the old one's pages safe).
    if (this.#ring === undefined || typedArrayByteLength(this.#ring) === 0) {
      this.#ring = new Uint8Array(s.mapping.view(s.g.dataOffset, s.g.total - s.g.dataOffset));
    }
    return this.#ring;
  }

  /** Set while a consume callback runs: reading the same channel from inside it would move the cursor under it. */
  #inCallback = false;

  #enter(): void {
    if (this.#inCallback) {
      throw new DevmapError('ERR_DEVMAP_REENTRANT', 'A consume() callback cannot read from the channel it is consuming; return first');
    }
  }

  /** Waits (blocking) for a record; returns its position, EMPTY on timeout or DRAINED. */
  #await(deadline: number, signal: AbortSignal | undefined): number {
    const s = this.s;
    this.#enter();
    s.live();
    const r = this.reader();
    for (let spins = deadline === 0 ? 0 : this.spin; ; spins--) {
      const pos = r.next();
      if (pos !== EMPTY) return pos;
      if (spins > 0) continue;
      if (signal?.aborted) throw signal.reason;
      const ms = sliceUntil(deadline, LIVENESS_MS);
      if (ms <= 0) return EMPTY;
      s.sleep(H.WRITE_SIGNAL, H.READER_SLEEPERS, ms, () => r.ready());
      s.live();
    }
  }

  async #awaitAsync(deadline: number, signal: AbortSignal | undefined): Promise<number> {
    const s = this.s;
    this.#enter();
    s.live();
    const r = this.reader();
    for (;;) {
      const pos = r.next();
      if (pos !== EMPTY) return pos;
      if (signal?.aborted) throw signal.reason;
      const ms = sliceUntil(deadline, r.waitingOnWriter ? LIVENESS_MS : SLICE_MS);
      if (ms <= 0) return EMPTY;
      await s.sleepAsync(H.WRITE_SIGNAL, H.READER_SLEEPERS, ms, () => r.ready(), signal);
      s.live();
    }
  }

  /** Copies the record at `pos` out and finishes it; null when an overwriting writer took it meanwhile. */
  #take(pos: number): Uint8Array | null {
    const r = this.reader();
    const off = this.s.payload(pos);
    const copy = this.s.u8.slice(off, off + r.length);
    return r.done(pos) ? copy : null;
  }

  /** The next message (a copy), waiting for it; null on timeout, or when the channel is closed and drained. */
  receive(opts?: WaitOptions): Uint8Array | null {
    const { deadline, signal } = waitOpts(opts);
    for (;;) {
      const pos = this.#await(deadline, signal);
      if (pos < 0) return null;
      const m = this.#take(pos);
      if (m !== null) return m;
    }
  }

  /** The next message if one is there now, else null. */
  tryReceive(): Uint8Array | null {
    for (;;) {
      const pos = this.#await(0, undefined);
      if (pos < 0) return null;
      const m = this.#take(pos);
      if (m !== null) return m;
    }
  }

  /** receive() without blocking the thread: the wait is a futex waitAsync (it keeps the event loop alive). */
  async receiveAsync(opts?: WaitOptions): Promise<Uint8Array | null> {
    const { deadline, signal } = waitOpts(opts);
    for (;;) {
      const pos = await this.#awaitAsync(deadline, signal);
      if (pos < 0) return null;
      const m = this.#take(pos);
      if (m !== null) return m;
    }
  }

  /**
   * Zero-copy read: calls fn with a view of the next record in the ring, then finishes the record. The view is
   * valid until fn returns (after that the ring slot is reused; see #ring). Returns false on timeout or when the
   * channel is closed and drained.
   */
  consume(fn: (view: Uint8Array) => void, opts?: WaitOptions): boolean {
    if (typeof fn !== 'function') throw typeError('a function', 'fn', fn);
    const { deadline, signal } = waitOpts(opts);
    const pos = this.#await(deadline, signal);
    if (pos < 0) return false;
    const r = this.reader();
    const view = recordOf(this, this.s.payload(pos), r.length);
    this.#inCallback = true;
    try {
      fn(view);
    } finally {
      this.#inCallback = false;
    }
    this.s.live();
    r.done(pos);
    return true;
  }

  /**
   * Zero-copy batch: waits for at least one record, then calls fn(bytes, offset, length) for each record
   * available (up to `max`), where bytes is the handle's view of the ring (valid at [offset, offset + length)
   * until fn returns). Each record is finished after its fn returns. Returns how many were consumed.
   */
  consumeBatch(fn: (bytes: Uint8Array, offset: number, length: number) => void, opts?: WaitOptions & { max?: number }): number {
    if (typeof fn !== 'function') throw typeError('a function', 'fn', fn);
    const { max: maxOpt, ...rest } = options<WaitOptions & { max: number }>(opts, 'options', [...WAIT_KEYS, 'max']);
    const max = maxOpt === undefined ? Infinity : integer(maxOpt, 'options.max', 1);
    const { deadline, signal } = waitOpts(rest);
    let pos = this.#await(deadline, signal);
    if (pos < 0) return 0;
    const s = this.s;
    const r = this.reader();
    const bytes = this.#ringBytes();
    let n = 0;
    for (;;) {
      this.#inCallback = true;
      try {
        fn(bytes, (pos & s.mask) + 16, r.length);
      } finally {
        this.#inCallback = false;
      }
      s.live();
      r.done(pos);
      if (++n >= max) break;
      pos = r.next();
      if (pos < 0) break;
    }
    return n;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const m = await this.receiveAsync();
      if (m === null) return;
      yield m;
    }
  }
}

export class Channel extends Receiving {
  readonly #writer: Writer;
  #reader: Reader | undefined;
  #subscribers = new Set<Subscriber>();

  private constructor(s: Segment, spin: number) {
    super(s, spin);
    this.#writer = new Writer(s);
  }

  /** Bytes a channel with these options occupies (the mapping must have at least that many). */
  static bytesFor(opts: ChannelOptions): number {
    return validateCreate(opts).total;
  }

  /** Formats a channel at offset 0 of `mapping` (a shared mapping nobody uses yet) and returns a handle. */
  static create(mapping: Mapping, opts: ChannelOptions & HandleOptions): Channel {
    const g = validateCreate(opts);
    const buffer = mappingBuffer(mapping);
    if (mapping.length < g.total) throw rangeError(`a mapping of at least ${g.total} bytes (Channel.bytesFor)`, 'mapping.length', mapping.length);
    format(new Int32Array(buffer, 0, g.dataOffset >> 2), g);
    return new Channel(new Segment(mapping), g.spin);
  }

  /** A handle on the channel in `mapping`; every field is checked (ERR_DEVMAP_CORRUPT). */
  static attach(mapping: Mapping, opts?: HandleOptions): Channel {
    const { spin } = options<HandleOptions>(opts, 'options', ['spin']);
    const sp = spinOf(spin);
    mappingBuffer(mapping);
    return new Channel(new Segment(mapping), sp);
  }

  /**
   * The state of the channel in `source` (a Mapping, or a copy of the segment's bytes) as plain data, without
   * taking a slot: what `devmap inspect` shows.
   */
  static inspect(source: Mapping | Uint8Array): ChannelStats {
    let bytes: Uint8Array;
    if (source instanceof Uint8Array) bytes = source;
    else if (source !== null && typeof source === 'object' && 'buffer' in source && typeof (source as Mapping).unmap === 'function') bytes = new Uint8Array(mappingBuffer(source as Mapping));
    else throw typeError('a Mapping or a Uint8Array', 'source', source);
    const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
    const i32 = new Int32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >> 2);
    const g = readGeometry(i32, aligned.byteLength);
    return statsOf(i32, new Float64Array(aligned.buffer, aligned.byteOffset, g.dataOffset >> 3), g);
  }

  get mode(): Mode {
    return this.s.g.mode;
  }
  get overflow(): Overflow {
    return this.s.g.overflow;
  }
  /** Ring size in bytes. */
  get capacity(): number {
    return this.s.g.ring;
  }
  get maxMessage(): number {
    return this.s.g.maxMessage;
  }
  get closed(): boolean {
    this.s.live();
    return this.s.closed;
  }

  protected reader(): Reader {
    if (this.#reader !== undefined) return this.#reader;
    if (this.s.g.mode === 'broadcast') {
      throw new DevmapError('ERR_DEVMAP_CHANNEL_MODE', 'A broadcast channel is read through a subscriber: channel.subscribe()');
    }
    const kind: ReaderKind = this.s.g.mode === 'mpmc' ? 'mpmc' : 'single';
    const r = new Reader(this.s, kind);
    r.ensure();
    return (this.#reader = r);
  }

  // --- writing -----------------------------------------------------------------------------------------------

  #length(data: unknown): number {
    let len: number;
    if (typeof data === 'string') len = Buffer.byteLength(data, 'utf8');
    else if (ArrayBuffer.isView(data)) len = data.byteLength;
    else throw typeError('an ArrayBufferView or a string', 'data', data);
    if (len > this.s.g.maxMessage) throw rangeError(`a message of at most ${this.s.g.maxMessage} bytes`, 'data.byteLength', len);
    return len;
  }

  /** Reserves a record, waiting for room under 'block'. Returns its position, or FULL on timeout / under 'fail'. */
  #reserve(len: number, deadline: number, signal: AbortSignal | undefined, direct: boolean): number {
    const s = this.s;
    const w = this.#writer;
    s.live();
    w.ensure();
    for (let spins = deadline === 0 ? 0 : this.spin; ; spins--) {
      const pos = direct ? w.reserveDirect(len) : w.tryReserve(len);
      if (pos >= 0) return pos;
      if (pos === CLOSED) throw closedError();
      if (s.g.overflow === 'fail') return FULL;
      if (spins > 0) continue;
      if (signal?.aborted) throw signal.reason;
      const ms = sliceUntil(deadline, LIVENESS_MS);
      if (ms <= 0) return FULL;
      if (w.reapReaders()) continue;
      s.sleep(H.READ_SIGNAL, H.WRITER_SLEEPERS, ms, () => w.hasRoom(len));
      s.live();
    }
  }

  async #reserveAsync(len: number, deadline: number, signal: AbortSignal | undefined): Promise<number> {
    const s = this.s;
    const w = this.#writer;
    s.live();
    w.ensure();
    for (;;) {
      const pos = w.reserveDirect(len);
      if (pos >= 0) return pos;
      if (pos === CLOSED) throw closedError();
      if (s.g.overflow === 'fail') return FULL;
      if (signal?.aborted) throw signal.reason;
      const ms = sliceUntil(deadline, s.g.mode === 'broadcast' ? LIVENESS_MS : SLICE_MS);
      if (ms <= 0) return FULL;
      if (w.reapReaders()) continue;
      await s.sleepAsync(H.READ_SIGNAL, H.WRITER_SLEEPERS, ms, () => w.hasRoom(len), signal);
      s.live();
    }
  }

  #copy(pos: number, data: Message, len: number): void {
    const s = this.s;
    const off = s.payload(pos);
    if (typeof data === 'string') s.buf.write(data, off, len, 'utf8');
    else if (data instanceof Uint8Array) s.u8.set(data.length === len ? data : data.subarray(0, len), off);
    else s.u8.set(new Uint8Array(data.buffer, data.byteOffset, len), off);
  }

  #fill(pos: number, data: Message, len: number): void {
    this.#copy(pos, data, len);
    this.#writer.publish(pos, len);
  }

  /**
   * Sends every message of `messages` in order, as send() would, and returns how many were sent (fewer only on
   * timeout or under 'fail'). In spsc the messages that fit are written and then published with one store of
   * the tail and one wake-up: the batched form for throughput.
   */
  sendBatch(messages: readonly Message[], opts?: WaitOptions): number {
    if (!Array.isArray(messages)) throw typeError('an array of messages', 'messages', messages);
    const { deadline, signal } = waitOpts(opts);
    const w = this.#writer;
    const n = messages.length;
    let i = 0;
    while (i < n) {
      this.s.live();
      w.ensure();
      w.beginRun();
      if (w.inRun) {
        try {
          for (; i < n; i++) {
            const data = messages[i];
            const len = this.#length(data);
            const pos = w.tryReserve(len);
            if (pos < 0) break;
            this.#copy(pos, data, len);
          }
        } finally {
          w.endRun();
        }
        if (i === n) break;
      }
      // Full (or not spsc): one message the ordinary way, waiting for room as send() does.
      const data = messages[i];
      const len = this.#length(data);
      const pos = this.#reserve(len, deadline, signal, true);
      if (pos < 0) {
        this.#refused();
        return i;
      }
      this.#fill(pos, data, len);
      i++;
    }
    return n;
  }

  #refused(): false {
    this.#writer.count(C.AUX2);
    return false;
  }

  /** Sends a copy of `data`. Under 'block' waits for room (false on timeout); under 'fail' false when full. */
  send(data: Message, opts?: WaitOptions): boolean {
    const len = this.#length(data);
    const { deadline, signal } = waitOpts(opts);
    const pos = this.#reserve(len, deadline, signal, true);
    if (pos < 0) return this.#refused();
    this.#fill(pos, data, len);
    return true;
  }

  /** Sends if there is room now. */
  trySend(data: Message): boolean {
    const len = this.#length(data);
    const pos = this.#reserve(len, 0, undefined, true);
    if (pos < 0) return this.#refused();
    this.#fill(pos, data, len);
    return true;
  }

  async sendAsync(data: Message, opts?: WaitOptions): Promise<boolean> {
    const len = this.#length(data);
    const { deadline, signal } = waitOpts(opts);
    const pos = await this.#reserveAsync(len, deadline, signal);
    if (pos < 0) return this.#refused();
    this.#fill(pos, data, len);
    return true;
  }

  /**
   * Zero-copy send: reserves `size` bytes in the ring (waiting for room like send) and returns the loan, or
   * null on timeout / when full under 'fail'. Commit or abort every loan: until then readers wait at it.
   */
  loan(size: number, opts?: WaitOptions): Loan | null {
    const len = integer(size, 'size', 0, this.s.g.maxMessage);
    const { deadline, signal } = waitOpts(opts);
    const pos = this.#reserve(len, deadline, signal, false);
    if (pos < 0) {
      this.#refused();
      return null;
    }
    const s = this.s;
    const w = this.#writer;
    const view = recordOf(this, s.payload(pos), len);
    let open = true;
    const finish = (): void => {
      if (!open) throw new DevmapError('ERR_DEVMAP_LOAN_DONE', 'This loan has already been committed or aborted');
      open = false;
      s.live();
    };
    return {
      view,
      commit(length?: number) {
        const n = length === undefined ? len : integer(length, 'length', 0, len);
        finish();
        w.commit(pos, n);
      },
      abort() {
        finish();
        w.abort(pos);
      },
      [Symbol.dispose]() {
        if (open) this.abort();
      },
    };
  }

  /** Ends the stream for everyone: writers can send no more; readers drain what is there, then end. */
  close(): void {
    const i32 = this.s.i32;
    this.s.live();
    Atomics.store(i32, H.CLOSED, 1);
    for (const signal of [H.WRITE_SIGNAL, H.READ_SIGNAL]) {
      Atomics.add(i32, signal, 1);
      notify(i32, signal);
    }
  }

  /** A broadcast reader with its own cursor, starting at the next message sent. */
  subscribe(opts?: HandleOptions): Subscriber {
    if (this.s.g.mode !== 'broadcast') {
      throw new DevmapError('ERR_DEVMAP_CHANNEL_MODE', `subscribe() is for broadcast channels; this one is ${this.s.g.mode}`);
    }
    const { spin } = options<HandleOptions>(opts, 'options', ['spin']);
    this.s.live();
    const sub = new Subscriber(this.s, spin === undefined ? this.spin : spinOf(spin), this.#subscribers);
    this.#subscribers.add(sub);
    return sub;
  }

  stats(): ChannelStats {
    this.s.live();
    return statsOf(this.s.i32, this.s.f64, this.s.g);
  }

  /** Gives this process's writer and reader slots back (the channel stays for the others). */
  detach(): void {
    this.#writer.release();
    this.#reader?.release();
    this.#reader = undefined;
    for (const sub of this.#subscribers) sub.unsubscribe();
  }

  [Symbol.dispose](): void {
    this.detach();
  }
}

/** One broadcast reader: every message sent after it subscribed, at its own pace; the writers wait for it. */
export class Subscriber extends Receiving {
  readonly #reader: Reader;
  readonly #set: Set<Subscriber>;

  /** @internal Use Channel#subscribe(). */
  constructor(s: Segment, spin: number, set: Set<Subscriber>) {
    super(s, spin);
    this.#reader = new Reader(s, 'broadcast');
    this.#reader.ensure();
    this.#set = set;
  }

  protected reader(): Reader {
    if (this.#reader.slot < 0) throw new DevmapError('ERR_DEVMAP_UNSUBSCRIBED', 'This subscriber has unsubscribed');
    return this.#reader;
  }

  /** Bytes this subscriber has still to read. */
  get lag(): number {
    this.s.live();
    return (Atomics.load(this.s.i32, H.TAIL) - this.#reader.position) >>> 0;
  }

  get slot(): number {
    return this.#reader.slot;
  }

  /** Stops reading: the slot is freed and no longer holds the writers back. */
  unsubscribe(): void {
    this.#reader.release();
    this.#set.delete(this);
  }

  [Symbol.dispose](): void {
    this.unsubscribe();
  }
}

function mappingBuffer(mapping: Mapping): ArrayBuffer {
  if (mapping === null || typeof mapping !== 'object' || typeof (mapping as { unmap?: unknown }).unmap !== 'function') {
    throw typeError('a Mapping', 'mapping', mapping);
  }
  if (!mapping.shared) {
    throw new DevmapError('ERR_DEVMAP_NOT_SHARED', 'A channel needs a shared mapping (MAP_SHARED): other processes must see its bytes');
  }
  return mapping.buffer;
}

export { spanOf };
