/*
 * Mutex.inspect(): what the 16 words of a Mutex say, decoded read-only — from its Mapping, or from a snapshot
 * of the bytes (`devmap inspect` reads segments with pread and never maps them). Nothing here locks, writes
 * or calls the C library on the words: they may belong to a process that is using them, or be hostile.
 *
 * The words (mutex.ts, open-or-create.ts): the C library's robust mutex first — its futex word at the
 * offset native mutex_layout() reports — and the marker "MUTX" in word 15, written last by an initializer.
 * The futex word of a robust mutex is the kernel's protocol (futex(2), "Robust futexes"): the owner's
 * thread id in the low 30 bits (FUTEX_TID_MASK), FUTEX_OWNER_DIED (bit 30) once the kernel found the owner
 * dead, FUTEX_WAITERS (bit 31) while a thread sleeps on it.
 */
import { DevmapError, integer, rangeError, typeError } from '../errors';
import { Mapping } from '../memory/mapping';
import { native } from '../native';
import { MARKER, MARKER_WORD } from './open-or-create';

const FUTEX_WAITERS = 0x80000000;
const FUTEX_OWNER_DIED = 0x40000000;
const FUTEX_TID_MASK = 0x3fffffff;
/** Bytes a Mutex occupies (Mutex.WORDS words). */
const MUTEX_BYTES = 64;

/** What Mutex.inspect() reads. */
export interface MutexInfo {
  /** The futex word as it was read. */
  lockWord: number;
  /** The kernel thread id of the holder (a process's pid for its main thread); 0 when free. */
  owner: number;
  locked: boolean;
  /** The kernel found the holder dead (FUTEX_OWNER_DIED): the next lock() returns { ownerDied: true }. */
  ownerDied: boolean;
  /** A thread sleeps, or slept, on the word (FUTEX_WAITERS). */
  waiters: boolean;
}

/** The bytes of a Mapping (it must be mapped), an ArrayBuffer, or a view's range: for read-only decoders. */
export function bytesOf(target: unknown): Uint8Array {
  if (target instanceof Mapping) {
    if (!target.mapped) throw new DevmapError('ERR_DEVMAP_UNMAPPED', 'The mapping has been unmapped');
    return new Uint8Array(target.buffer);
  }
  // A detached buffer (byteLength 0) cannot back a new view: it reads as no bytes at all.
  if (target instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && target instanceof SharedArrayBuffer)) {
    return target.byteLength === 0 ? new Uint8Array(0) : new Uint8Array(target);
  }
  if (ArrayBuffer.isView(target)) {
    return target.byteLength === 0 ? new Uint8Array(0) : new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  }
  throw typeError('a Mapping, an ArrayBuffer or a Uint8Array', 'target', target);
}

/** Decodes the Mutex at byte `offset` (a multiple of 8) of `target`; ERR_DEVMAP_MUTEX_UNINITIALIZED when there is none. */
export function inspectMutex(target: unknown, offset: unknown): MutexInfo {
  const bytes = bytesOf(target);
  const at = integer(offset, 'offset');
  if (at % 8 !== 0 || at + MUTEX_BYTES > bytes.length) {
    throw rangeError(`a multiple of 8 from 0 to ${Math.max(0, bytes.length - MUTEX_BYTES)}`, 'offset', offset);
  }
  // Copy the 64 bytes once: a snapshot, aligned, that a writer elsewhere cannot change half-way through.
  const words = new DataView(bytes.slice(at, at + MUTEX_BYTES).buffer);
  if (words.getUint32(4 * MARKER_WORD, true) !== MARKER) {
    throw new DevmapError('ERR_DEVMAP_MUTEX_UNINITIALIZED', `No Mutex at offset ${at}: the marker "MUTX" is missing from its word ${MARKER_WORD}`);
  }
  const [, , lockWordOffset] = native().mutex_layout();
  const lockWord = words.getUint32(lockWordOffset, true);
  const owner = lockWord & FUTEX_TID_MASK;
  return {
    lockWord,
    owner,
    locked: owner !== 0,
    ownerDied: (lockWord & FUTEX_OWNER_DIED) !== 0,
    waiters: (lockWord & FUTEX_WAITERS) !== 0,
  };
}
