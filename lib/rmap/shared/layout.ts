/*
 * The region's byte layout and its codec: the control header's words, the sections' offsets, and the one
 * check that turns a header read from shared memory (untrusted: another process wrote it) into a layout this
 * process may index with. map.ts's essay (2) draws the layout; the numbers live here.
 */
import { DevmapError } from '../../errors';
import { countersOf, type ResourceMapStats } from '../map';
import { RmapStore, type Policy } from '../store';

/** The control header's magic: the bytes "SRMP" at the region's offset. */
export const SRMAP_MAGIC = 0x504d5253;
export const SRMAP_VERSION = 1;

/** Int32 words of the control header. */
export const enum W {
  MAGIC = 0,
  VERSION = 1,
  READY = 2,
  POLICY = 3,
  OVERFLOW = 4,
  GENERATION = 5,
  SLEEPERS = 6,
  JCOUNT = 7,
  JCAP = 8,
  OWNERS_CAP = 9,
  OWNERS_USED = 10,
  CAPACITY = 11,
  MUTEX_OFF = 12,
  JOURNAL_OFF = 13,
  OWNERS_OFF = 14,
  STORE_OFF = 15,
  TOTAL = 16,
  RECOVERIES = 17,
  OWNERS_FULL = 18,
  RECLAIMS = 19,
  NAME_LEN = 20,
  /** Non-zero once a process found the region corrupt (map.ts's essay, 8): every operation then refuses. */
  CORRUPT = 21,
  /** Words 22..23: the open-or-create claim (open-or-create.ts), one 64-bit value. */
  CLAIM = 22,
}
/** Float64 header words (index in the region's Float64Array: byte 128 / 8 = 16). */
export const enum F {
  RECLAIMED = 16,
  UNTRACKED = 17,
}
export const READY = 1;
export const NAME_AT = 192;
export const NAME_MAX = 64;
export const MUTEX_AT = 256;
export const JOURNAL_AT = 320;
/** Bytes of one journal entry and of one owner record. */
export const ENTRY = 16;
export const RECORD = 32;
export const DEFAULT_OWNERS = 1024;
export const DEFAULT_ILLUMOS_CAPACITY = 256;
export const MAX_OWNERS = 1 << 24;

export interface Layout {
  journalCap: number;
  owners: number;
  ownersAt: number;
  storeAt: number;
  storeBytes: number;
  total: number;
}

/** Where each section of a map of this policy and these capacities lies. */
export function layoutOf(policy: Policy, capacity: number, owners: number): Layout {
  // classic: a search may clean every dirty bound (2 words a node) on top of its path; illumos never cleans.
  // An rmfree may also drop, trim or split every owner record (at most 6 writes each).
  const journalCap = (policy === 'classic' ? 2 * capacity : 0) + 8 * owners + 512;
  const ownersAt = JOURNAL_AT + ENTRY * journalCap;
  const storeAt = ownersAt + RECORD * owners;
  const storeBytes = RmapStore.bytesFor(policy, capacity);
  const total = storeAt + Math.ceil(storeBytes / 8) * 8;
  return { journalCap, owners, ownersAt, storeAt, storeBytes, total };
}

export function corrupt(what: string, cause?: unknown): DevmapError {
  return new DevmapError('ERR_DEVMAP_CORRUPT', `shared resource map: ${what}`, cause === undefined ? undefined : { cause });
}

/** Checks a header's magic, version and layout against `room` bytes; returns the layout it describes. */
export function readHeader(i32: Int32Array, room: number, requireReady: boolean): Layout & { policy: Policy; capacity: number } {
  if (i32[W.MAGIC] !== SRMAP_MAGIC) {
    throw new DevmapError('ERR_DEVMAP_SRMAP_BAD_MAGIC', 'No shared resource map here: the magic "SRMP" is missing at this offset');
  }
  if (i32[W.VERSION] !== SRMAP_VERSION) {
    throw new DevmapError('ERR_DEVMAP_SRMAP_VERSION', `The shared resource map here has layout version ${i32[W.VERSION]}; this devmap reads version ${SRMAP_VERSION}`);
  }
  if (requireReady && Atomics.load(i32, W.READY) !== READY) {
    throw new DevmapError('ERR_DEVMAP_SRMAP_NOT_READY', 'The shared resource map here is not ready: create() has not finished formatting it');
  }
  const p = i32[W.POLICY];
  if (p !== 1 && p !== 2) throw corrupt(`bad policy ${p}`);
  const policy: Policy = p === 1 ? 'classic' : 'illumos';
  const capacity = i32[W.CAPACITY];
  const owners = i32[W.OWNERS_CAP];
  if (!(capacity >= 1 && capacity <= 0x3fffffff) || !(owners >= 0 && owners <= MAX_OWNERS)) throw corrupt('bad capacities');
  const l = layoutOf(policy, capacity, owners);
  if (
    i32[W.JCAP] !== l.journalCap || i32[W.MUTEX_OFF] !== MUTEX_AT || i32[W.JOURNAL_OFF] !== JOURNAL_AT ||
    i32[W.OWNERS_OFF] !== l.ownersAt || i32[W.STORE_OFF] !== l.storeAt || i32[W.TOTAL] !== l.total
  ) {
    throw corrupt('the section offsets do not match the capacities');
  }
  if (l.total > room) throw corrupt(`the region needs ${l.total} bytes, only ${room} are mapped`);
  const jc = i32[W.JCOUNT];
  const used = i32[W.OWNERS_USED];
  if (!(jc >= 0 && jc <= l.journalCap) || !(used >= 0 && used <= owners)) throw corrupt('bad journal or owner count');
  if (i32[W.OVERFLOW] < 0 || i32[W.OVERFLOW] > 2) throw corrupt('bad overflow rule');
  if (!(i32[W.NAME_LEN] >= 0 && i32[W.NAME_LEN] <= NAME_MAX)) throw corrupt('bad name length');
  return { ...l, policy, capacity };
}

/** The map's name as stored in the header. */
export function nameOf(buffer: ArrayBuffer, base: number, i32: Int32Array): string {
  return Buffer.from(buffer, base + NAME_AT, i32[W.NAME_LEN]).toString('utf8');
}

export interface SharedResourceMapStats extends ResourceMapStats {
  /** Crashed operations rolled back (by any process). */
  recoveries: number;
  /** Owner records in use. */
  ownersInUse: number;
  /** rmalloc calls refused because the owner table was full. */
  ownersFull: number;
  /** Units returned by reclaim(). */
  reclaimedUnits: number;
  /** Units of allocations left without an owner record (see the essay, 4). */
  untrackedUnits: number;
}

/** The store's counters and the region's own, as stats() and inspect() report them. */
export function statsOf(h: Float64Array, i32: Int32Array, f64: Float64Array): SharedResourceMapStats {
  return {
    ...countersOf(h),
    recoveries: i32[W.RECOVERIES],
    ownersInUse: i32[W.OWNERS_USED],
    ownersFull: i32[W.OWNERS_FULL],
    reclaimedUnits: f64[F.RECLAIMED],
    untrackedUnits: f64[F.UNTRACKED],
  };
}
