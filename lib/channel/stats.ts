// A channel's counters, cursors and parties as plain data: Channel#stats() and Channel.inspect (devmap inspect).
import { C, H, readerSlot, S, type Geometry, writerSlot } from './layout';
import { isOwnerAlive, ownerOf } from './slots';

export interface ChannelWriterInfo {
  slot: number;
  pid: number;
  startTime: number;
  alive: boolean;
  sent: number;
  bytes: number;
  aborted: number;
  refused: number;
  overwritten: number;
}

export interface ChannelReaderInfo {
  slot: number;
  pid: number;
  startTime: number;
  alive: boolean;
  /** Broadcast: this reader's cursor; otherwise the shared read cursor. */
  cursor: number;
  /** Bytes between the cursor and the tail: what this reader has still to read. */
  lag: number;
  received: number;
  bytes: number;
  skipped: number;
}

export interface ChannelStats {
  mode: Geometry['mode'];
  overflow: Geometry['overflow'];
  /** Ring size in bytes (the capacity, rounded up to a power of two). */
  capacity: number;
  maxMessage: number;
  closed: boolean;
  tail: number;
  head: number;
  release: number;
  /** Records committed, and their payload bytes, over every writer slot. */
  sent: number;
  bytesSent: number;
  /** Loans aborted by their writer. */
  aborted: number;
  /** Sends that returned false: full under overflow 'fail', or timed out. */
  dropped: number;
  /** Records dropped unread by overflow 'overwrite'. */
  lost: number;
  received: number;
  bytesReceived: number;
  /** Records passed over because their writer died before committing. */
  skipped: number;
  writers: ChannelWriterInfo[];
  readers: ChannelReaderInfo[];
}

/** Reads every counter without locking (a snapshot; counters of one party are written only by it). */
export function statsOf(i32: Int32Array, f64: Float64Array, g: Geometry): ChannelStats {
  const tail = Atomics.load(i32, H.TAIL) >>> 0;
  const head = Atomics.load(i32, H.HEAD) >>> 0;
  const out: ChannelStats = {
    mode: g.mode, overflow: g.overflow, capacity: g.ring, maxMessage: g.maxMessage, closed: Atomics.load(i32, H.CLOSED) === 1,
    tail, head, release: Atomics.load(i32, H.RELEASE) >>> 0,
    sent: 0, bytesSent: 0, aborted: 0, dropped: 0, lost: 0, received: 0, bytesReceived: 0, skipped: 0, writers: [], readers: [],
  };
  for (let i = 0; i < g.writers; i++) {
    const b = writerSlot(i);
    const f = (b * 4) / 8;
    const who = ownerOf(i32, b);
    const w: ChannelWriterInfo = {
      slot: i, pid: who.pid, startTime: who.startTime, alive: who.pid !== 0 && isOwnerAlive(i32, b),
      sent: f64[f + C.COUNT], bytes: f64[f + C.BYTES], aborted: f64[f + C.AUX1], refused: f64[f + C.AUX2], overwritten: f64[f + C.AUX3],
    };
    out.sent += w.sent;
    out.bytesSent += w.bytes;
    out.aborted += w.aborted;
    out.dropped += w.refused;
    out.lost += w.overwritten;
    if (who.pid !== 0 || w.sent > 0) out.writers.push(w);
  }
  for (let i = 0; i < g.readers; i++) {
    const b = readerSlot(g, i);
    const f = (b * 4) / 8;
    const who = ownerOf(i32, b);
    const cursor = g.mode === 'broadcast' ? Atomics.load(i32, b + S.CURSOR) >>> 0 : head;
    const r: ChannelReaderInfo = {
      slot: i, pid: who.pid, startTime: who.startTime, alive: who.pid !== 0 && isOwnerAlive(i32, b), cursor, lag: (tail - cursor) >>> 0,
      received: f64[f + C.COUNT], bytes: f64[f + C.BYTES], skipped: f64[f + C.AUX1],
    };
    out.received += r.received;
    out.bytesReceived += r.bytes;
    out.skipped += r.skipped;
    if (who.pid !== 0 || r.received > 0) out.readers.push(r);
  }
  return out;
}
