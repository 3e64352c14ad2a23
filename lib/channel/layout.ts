/*
 * The bytes of a channel segment: where every word lives, how a segment is formatted, and how one that another
 * process wrote is checked before anything trusts it. docs/channel-layout.md is the normative description
 * (C's include/devmap/channel.h and python/devmap_channel.py follow it too); this file is its TypeScript.
 *
 * A segment is three parts, at offset 0 of a MAP_SHARED mapping:
 *
 *   header    320 bytes: the geometry (written once by create, `ready` last) and the shared cursors, each group
 *             on its own 64-byte line so that a writer and a reader do not bounce one cache line per message.
 *   slots     W writer slots, then N reader slots, 64 bytes each: who holds the slot (pid, start time,
 *             generation) and that party's own counters (only the owner writes them, so no atomics).
 *   data      R + recordMax bytes (R a power of two): the ring. Cursors are byte positions that count up mod 2^32;
 *             a record at position p starts at data + (p mod R) and is contiguous: a record that starts near the
 *             end of the ring runs on into the recordMax bytes of slack after it, so no record is ever split
 *             and no padding record is needed. Two live records never overlap, because live records span at
 *             most R positions of cursor space (the proof is in docs/channel-layout.md).
 *
 * Every number is little-endian (the CPU's order on x86-64 and arm64). Positions and lengths are unsigned 32-bit.
 */
import { DevmapError } from '../errors';

/** "DMCH" read as a little-endian u32. */
export const MAGIC = 0x48434d44;
export const VERSION = 1;

export type Mode = 'spsc' | 'mpsc' | 'mpmc' | 'broadcast';
export type Overflow = 'block' | 'overwrite' | 'fail';
export const MODES: readonly Mode[] = ['spsc', 'mpsc', 'mpmc', 'broadcast'];
export const OVERFLOWS: readonly Overflow[] = ['block', 'overwrite', 'fail'];

/** Int32 word indices of the header. */
export const enum H {
  MAGIC = 0,
  VERSION = 1,
  MODE = 2, // 1 spsc, 2 mpsc, 3 mpmc, 4 broadcast
  OVERFLOW = 3, // 1 block, 2 overwrite, 3 fail
  RING = 4, // R
  MAX_MESSAGE = 5, // largest payload in bytes
  WRITERS = 6, // W
  READERS = 7, // N
  DATA_OFFSET = 8,
  TOTAL = 9, // bytes the channel occupies
  READY = 10, // 1, stored last by create
  CLOSED = 11, // 1 once close() ran: writers refuse, readers drain then end
  // line 1 (byte 64): the writers' side
  TAIL = 16, // reserve cursor: every byte below it belongs to a record whose header is written
  RESERVE_LOCK = 17, // 0, or 1 + the writer tag holding it (multi-writer modes)
  LOCK_SLEEPERS = 18,
  // line 2 (byte 128): the competing readers' side
  HEAD = 32, // spsc/mpsc: next record to read; mpmc: next record to claim
  CLAIM_LOCK = 33, // mpmc: 0, or 1 + the reader tag holding it
  RELEASE = 34, // mpmc: every record below it is done (writers may reuse the bytes)
  CLAIM_SLEEPERS = 35,
  // line 3 (byte 192): readers sleep here
  WRITE_SIGNAL = 48, // bumped by a writer that saw sleeping readers
  READER_SLEEPERS = 49,
  // line 4 (byte 256): writers sleep here
  READ_SIGNAL = 64, // bumped by a reader that saw sleeping writers
  WRITER_SLEEPERS = 65,
}

export const HEADER_BYTES = 320;
export const SLOT_BYTES = 64;
export const SLOT_WORDS = SLOT_BYTES / 4;

/** Int32 word offsets inside a slot (writer and reader slots share the identity part). */
export const enum S {
  PID = 0, // 0 free, -1 being claimed, else the owner's pid
  START_LO = 1, // owner's start time (field 22 of /proc/<pid>/stat), low and high 32 bits
  START_HI = 2,
  GEN = 3, // bumped by every claim: a tag (slot, gen) names one owner for the slot's life
  CURSOR = 4, // broadcast reader: its next record
  FLAGS = 5, // reader: bit 0 gating
}
/** Float64 counters inside a slot, as indices of a Float64Array from the slot's first byte (byte 24 on). */
export const enum C {
  COUNT = 3, // writer: records committed; reader: records delivered
  BYTES = 4, // payload bytes of those
  AUX1 = 5, // writer: loans aborted; reader: records skipped (their writer died before committing)
  AUX2 = 6, // writer: sends refused (full under 'fail', or timed out)
  AUX3 = 7, // writer: records dropped unread by overwrite
}

/** Record header: 16 bytes at an 8-aligned position. */
export const enum R {
  STATE = 0,
  SPAN = 1, // bytes the record occupies, header included, a multiple of 8
  LENGTH = 2, // payload bytes (≤ SPAN - 16)
  WRITER = 3, // the writer tag: slot | gen << 8
}
export const RECORD_HEADER = 16;

export const enum State {
  RESERVED = 1,
  COMMITTED = 2,
  ABORTED = 3, // by its writer, or skipped because its writer died: readers pass over it
  CLAIMED = 4, // mpmc: a reader took it; bits 8.. of the state word hold the reader tag
  DONE = 5, // mpmc: consumed; the bytes are the writers' again once RELEASE passes
}

export const MIN_RING = 4096;
export const MAX_RING = 1 << 30;
export const MAX_SLOTS = 64;

export interface Geometry {
  mode: Mode;
  overflow: Overflow;
  ring: number;
  maxMessage: number;
  writers: number;
  readers: number;
  dataOffset: number;
  total: number;
}

export const spanOf = (length: number) => (RECORD_HEADER + length + 7) & ~7;
const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** Where everything goes for these parameters (already validated by the caller). */
export function geometry(mode: Mode, overflow: Overflow, ring: number, maxMessage: number, writers: number, readers: number): Geometry {
  const dataOffset = align(HEADER_BYTES + SLOT_BYTES * (writers + readers), 64);
  const total = dataOffset + ring + spanOf(maxMessage);
  return { mode, overflow, ring, maxMessage, writers, readers, dataOffset, total };
}

export function corrupt(what: string): DevmapError {
  return new DevmapError('ERR_DEVMAP_CORRUPT', `The channel segment is corrupt: ${what}`);
}

/**
 * Reads and checks the geometry of the channel in `i32` (a view of at least `length` bytes). Every field must
 * be in range and agree with the others; anything else is ERR_DEVMAP_CORRUPT (or ERR_DEVMAP_NOT_READY when
 * creation has not finished).
 */
export function readGeometry(i32: Int32Array, length: number): Geometry {
  if (length < HEADER_BYTES) throw corrupt(`${length} bytes cannot hold the ${HEADER_BYTES}-byte header`);
  if (Atomics.load(i32, H.MAGIC) >>> 0 !== MAGIC) throw corrupt('no channel magic ("DMCH") at offset 0');
  const version = i32[H.VERSION];
  if (version !== VERSION) throw corrupt(`version ${version >>> 0}, this devmap reads version ${VERSION}`);
  if (Atomics.load(i32, H.READY) !== 1) {
    throw new DevmapError('ERR_DEVMAP_NOT_READY', 'The channel is still being created (its ready word is not set); attach again shortly');
  }
  const mode = MODES[i32[H.MODE] - 1];
  const overflow = OVERFLOWS[i32[H.OVERFLOW] - 1];
  if (mode === undefined) throw corrupt(`mode ${i32[H.MODE] >>> 0}`);
  if (overflow === undefined) throw corrupt(`overflow ${i32[H.OVERFLOW] >>> 0}`);
  const ring = i32[H.RING];
  if (ring < MIN_RING || ring > MAX_RING || (ring & (ring - 1)) !== 0) throw corrupt(`ring size ${ring >>> 0}`);
  const maxMessage = i32[H.MAX_MESSAGE];
  if (maxMessage < 1 || spanOf(maxMessage) > ring) throw corrupt(`largest message ${maxMessage >>> 0} for a ring of ${ring}`);
  const writers = i32[H.WRITERS];
  const readers = i32[H.READERS];
  if (writers < 1 || writers > MAX_SLOTS || (mode === 'spsc' && writers !== 1)) throw corrupt(`${writers >>> 0} writer slots in ${mode} mode`);
  if (readers < 1 || readers > MAX_SLOTS || ((mode === 'spsc' || mode === 'mpsc') && readers !== 1)) {
    throw corrupt(`${readers >>> 0} reader slots in ${mode} mode`);
  }
  const g = geometry(mode, overflow, ring, maxMessage, writers, readers);
  if (i32[H.DATA_OFFSET] !== g.dataOffset) throw corrupt(`data offset ${i32[H.DATA_OFFSET] >>> 0}, expected ${g.dataOffset}`);
  if (i32[H.TOTAL] !== g.total) throw corrupt(`total size ${i32[H.TOTAL] >>> 0}, expected ${g.total}`);
  if (g.total > length) throw corrupt(`the channel needs ${g.total} bytes but the mapping has ${length}`);
  return g;
}

/** Formats a channel: zeroes the header and slots, writes the geometry, and stores `ready` last. */
export function format(i32: Int32Array, g: Geometry): void {
  i32.fill(0, 0, g.dataOffset / 4);
  i32[H.MAGIC] = MAGIC | 0;
  i32[H.VERSION] = VERSION;
  i32[H.MODE] = MODES.indexOf(g.mode) + 1;
  i32[H.OVERFLOW] = OVERFLOWS.indexOf(g.overflow) + 1;
  i32[H.RING] = g.ring;
  i32[H.MAX_MESSAGE] = g.maxMessage;
  i32[H.WRITERS] = g.writers;
  i32[H.READERS] = g.readers;
  i32[H.DATA_OFFSET] = g.dataOffset;
  i32[H.TOTAL] = g.total;
  Atomics.store(i32, H.READY, 1);
}

/** Word index of slot `i` (writer slots first, then reader slots). */
export const writerSlot = (i: number) => HEADER_BYTES / 4 + i * SLOT_WORDS;
export const readerSlot = (g: Geometry, i: number) => HEADER_BYTES / 4 + (g.writers + i) * SLOT_WORDS;
