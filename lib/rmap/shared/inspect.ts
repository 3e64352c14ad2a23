/*
 * SharedResourceMap.inspect(): the header and the store's counters of a map, read WITHOUT the lock and
 * without writing, from the Mapping or from a snapshot of its bytes (`devmap inspect` reads with pread).
 * The numbers may be mid-update; the bytes are validated as attach() validates them before any is used as
 * an offset.
 */
import { integer, rangeError } from '../../errors';
import type { Mapping } from '../../memory/mapping';
import { bytesOf } from '../../sync/inspect';
import { OVERFLOW_RULES, type OverflowRule } from '../classic';
import { H32, H64, H64_WORDS, State, type Policy } from '../store';
import { JOURNAL_AT, MUTEX_AT, NAME_AT, READY, W, readHeader, statsOf, type SharedResourceMapStats } from './layout';

/** What SharedResourceMap.inspect() reads, without the lock. */
export interface SharedResourceMapInfo {
  version: number;
  ready: boolean;
  /** A process found the map's structure broken and marked it: every operation refuses (ERR_DEVMAP_CORRUPT). */
  corrupt: boolean;
  policy: Policy;
  overflow: OverflowRule | undefined;
  name: string;
  bytes: number;
  capacity: number;
  owners: number;
  ownersInUse: number;
  generation: number;
  /** Journal entries of an operation in progress, or of a crashed one not yet recovered. */
  journalEntries: number;
  journalCapacity: number;
  recoveries: number;
  state: 'new' | 'live' | 'freed';
  mapsize: number;
  freeUnits: number;
  ranges: number;
  stats: SharedResourceMapStats;
  /** Offsets of the sections from the region's start. */
  layout: { mutex: number; journal: number; owners: number; store: number };
}

export function inspectRegion(target: Mapping | ArrayBuffer | ArrayBufferView, offset: number): SharedResourceMapInfo {
  const bytes = bytesOf(target);
  const at = integer(offset, 'offset');
  if (at + JOURNAL_AT > bytes.length) throw rangeError(`an offset with ${JOURNAL_AT} bytes after it`, 'offset', offset);
  // Copy: a snapshot, aligned for the typed arrays whatever the caller's alignment.
  const header = new Int32Array(bytes.slice(at, at + JOURNAL_AT).buffer);
  const h = readHeader(header, bytes.length - at, false);
  const region = bytes.slice(at, at + h.total).buffer;
  const i32 = new Int32Array(region);
  const f64 = new Float64Array(region);
  const sh64 = new Float64Array(region, h.storeAt, H64_WORDS);
  const sh32 = new Int32Array(region, h.storeAt + 8 * (H64_WORDS + 3 * h.capacity), H32.LIST);
  const st = sh32[H32.STATE];
  return {
    version: i32[W.VERSION],
    ready: i32[W.READY] === READY,
    corrupt: i32[W.CORRUPT] !== 0,
    policy: h.policy,
    overflow: h.policy === 'classic' ? OVERFLOW_RULES[i32[W.OVERFLOW]] : undefined,
    name: Buffer.from(region, NAME_AT, i32[W.NAME_LEN]).toString('utf8'),
    bytes: h.total,
    capacity: h.capacity,
    owners: h.owners,
    ownersInUse: i32[W.OWNERS_USED],
    generation: i32[W.GENERATION],
    journalEntries: i32[W.JCOUNT],
    journalCapacity: h.journalCap,
    recoveries: i32[W.RECOVERIES],
    state: st === State.LIVE ? 'live' : st === State.FREED ? 'freed' : 'new',
    mapsize: sh64[H64.MAPSIZE],
    freeUnits: sh64[H64.FREE_UNITS],
    ranges: sh64[H64.RANGES],
    stats: statsOf(sh64, i32, f64),
    layout: { mutex: MUTEX_AT, journal: JOURNAL_AT, owners: h.ownersAt, store: h.storeAt },
  };
}
