/*
 * The wire protocol between the kernel host and its client processes (the Node client here, the preload shim
 * in native/shim/protocol.h: both follow this file).
 *
 * A client connection is a stream Unix socket. The client sends one request and waits for its reply; the host
 * answers requests in order. Every message is a frame:
 *
 *     u32 size     total bytes, header included (8 ≤ size ≤ MAX_FRAME)
 *     u16 op       the request (replies carry op | REPLY)
 *     u16 words    how many 64-bit signed little-endian words follow
 *     i64 × words  the arguments (a reply's first word is 0 or -errno)
 *     bytes        the rest of the frame: a path, data for write(2) or from read(2), ioctl bytes, a message
 *
 * Descriptors travel with the reply that needs them (SCM_RIGHTS). Addresses never travel: each side has its own
 * reservation of the same size (the host's address space and the client's), and the protocol speaks in offsets
 * from the reservation's base, so a forked child — whose reservation is where its parent's was — and the
 * host's new address space for it agree on every offset.
 *
 * A reply to mmap, munmap and mprotect lists the changes the client makes to its reservation, in order, so that
 * its pages are what the host's address space holds: map an object (a descriptor of the reply) or anonymous
 * memory at an offset, reserve a range again, or change protection. The host is the only authority; a client
 * that does not apply them only hurts itself.
 */

export const PROTOCOL_VERSION = 1;
export const HEADER = 8;
/** The largest frame either side accepts; a bigger one ends the connection. */
export const MAX_FRAME = 128 * 1024;
/** The most bytes one read(2), write(2) or ioctl carries; a longer read or write is short. */
export const MAX_IO = 64 * 1024;
export const MAX_WORDS = (MAX_FRAME - HEADER) / 8;
export const REPLY = 0x8000;

export const Op = {
  HELLO: 1,
  OPEN: 2,
  CLOSE: 3,
  READ: 4,
  WRITE: 5,
  IOCTL: 6,
  MMAP: 7,
  MUNMAP: 8,
  MPROTECT: 9,
  FORK: 10,
  ADOPT: 11,
  EXIT: 12,
  /** Real faults (faults.ts): the host answers with its end of a new agent socket pair. */
  AGENT: 13,
  /** [status] (bytes: why userfaultfd is missing): the uffd went with the agent hello; the reply lists REGISTERs. */
  FAULTS: 14,
  /** [off, len, write]: fault [off, off + len) in now, as a touch would (before a system call is given it). */
  PREFAULT: 15,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/** Kinds of reservation change in an mmap/munmap/mprotect reply (six words each). */
export const Change = { MAP: 1, RESERVE: 2, PROTECT: 3, REGISTER: 4 } as const;
/** A REGISTER change's `type`: the UFFDIO_REGISTER mode for the range (its pages' faults go to the host). */
export const UFFDIO_REGISTER_MODE_MINOR = 4;
export const UFFDIO_REGISTER_MODE_WP = 2;
export const CHANGE_WORDS = 6;

/**
 * One reservation change: [kind, off, len, prot | type << 8, fd index (-1: anonymous), file offset].
 * The fd index points into the descriptors that came with the reply.
 */
export interface ReservationChange {
  kind: number;
  off: number;
  len: number;
  prot: number;
  type: number;
  fdIndex: number;
  fileOff: number;
}

export interface Frame {
  op: number;
  words: bigint[];
  bytes: Uint8Array;
}

/** Encodes a frame; words may be numbers (safe integers) or bigints. */
export function encode(op: number, words: readonly (number | bigint)[], bytes?: Uint8Array): Uint8Array {
  const size = HEADER + words.length * 8 + (bytes?.length ?? 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, size, true);
  dv.setUint16(4, op, true);
  dv.setUint16(6, words.length, true);
  for (let i = 0; i < words.length; i++) dv.setBigInt64(HEADER + i * 8, BigInt(words[i]), true);
  if (bytes) out.set(bytes, HEADER + words.length * 8);
  return out;
}

/** Why a frame is refused; the connection ends. */
export class ProtocolError extends Error {
  readonly code = 'ERR_DEVMAP_PROTOCOL';
}

/** The size a frame starting at `buf[at]` declares, after checking its header; null if the header is incomplete. */
export function frameSize(buf: Uint8Array, at: number): number | null {
  if (buf.length - at < HEADER) return null;
  const dv = new DataView(buf.buffer, buf.byteOffset + at, HEADER);
  const size = dv.getUint32(0, true);
  const words = dv.getUint16(6, true);
  if (size < HEADER || size > MAX_FRAME) throw new ProtocolError(`frame of ${size} bytes (limit ${MAX_FRAME})`);
  if (words > MAX_WORDS || HEADER + words * 8 > size) throw new ProtocolError(`frame of ${size} bytes cannot hold ${words} words`);
  return size;
}

/** Decodes one whole frame of `size` bytes at `buf[at]` (frameSize() checked the header). */
export function decode(buf: Uint8Array, at: number, size: number): Frame {
  const dv = new DataView(buf.buffer, buf.byteOffset + at, size);
  const n = dv.getUint16(6, true);
  const words: bigint[] = [];
  for (let i = 0; i < n; i++) words.push(dv.getBigInt64(HEADER + i * 8, true));
  return { op: dv.getUint16(4, true), words, bytes: buf.slice(at + HEADER + n * 8, at + size) };
}

/** The word at `i` as a safe integer in [min, max], or a ProtocolError naming it. */
export function word(f: Frame, i: number, name: string, min: number, max: number): number {
  const w = f.words[i];
  if (w === undefined || w < BigInt(min) || w > BigInt(max)) throw new ProtocolError(`${name} missing or out of range`);
  return Number(w);
}

export function encodeChanges(changes: readonly ReservationChange[]): number[] {
  const out: number[] = [];
  for (const c of changes) out.push(c.kind, c.off, c.len, c.prot | (c.type << 8), c.fdIndex, c.fileOff);
  return out;
}

export function decodeChanges(words: readonly bigint[], from: number, count: number): ReservationChange[] {
  const out: ReservationChange[] = [];
  for (let i = 0; i < count; i++) {
    const w = words.slice(from + i * CHANGE_WORDS, from + (i + 1) * CHANGE_WORDS).map(Number);
    out.push({ kind: w[0], off: w[1], len: w[2], prot: w[3] & 0xff, type: w[3] >> 8, fdIndex: w[4], fileOff: w[5] });
  }
  return out;
}

/** The Linux ioctl command encoding: direction (2 bits), size (14 bits), type (8), number (8). */
export const IOC_NONE = 0;
export const IOC_WRITE = 1;
export const IOC_READ = 2;
export const iocDir = (cmd: number): number => (cmd >>> 30) & 3;
export const iocSize = (cmd: number): number => (cmd >>> 16) & 0x3fff;
