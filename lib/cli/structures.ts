/*
 * What `devmap inspect` recognizes inside a segment: a small registry of formats, each known by magic bytes
 * at a fixed offset. A format reads a *snapshot* of the segment (pread, no mapping, no lock taken, nothing
 * written), so inspecting is safe while other processes use the segment; the bytes may be mid-update or
 * hostile, so describe() checks every number it reads before trusting it.
 *
 * To teach inspect a new structure (the shared resource map, say): export from its module the magic, the
 * offset of the magic and a describe() over a SegmentReader, and add it to FORMATS below. The dependency
 * goes cli → structure, never the other way.
 */
import { readFileSync } from 'node:fs';
import { native } from '../native';
import { Channel } from '../channel';
import { SharedResourceMap } from '../rmap/shared';

/** Read-only access to a snapshot of a segment. */
export interface SegmentReader {
  readonly size: number;
  /** Up to `length` bytes at `offset` (fewer at the end of the segment). */
  read(offset: number, length: number): Uint8Array;
}

/** One line of a description: a label and its value. */
export type Field = [label: string, value: string];

export interface StructureFormat {
  /** What it is, e.g. "devmap Mutex". */
  readonly name: string;
  /** Bytes that identify it, found at `offset`. */
  readonly magic: Uint8Array;
  readonly offset: number;
  /** The state of the structure; throws if the bytes do not make sense (reported, not fatal). */
  describe(segment: SegmentReader): Field[];
}

export interface Recognized {
  format: StructureFormat;
  fields?: Field[];
  error?: string;
}

/** Every format whose magic matches, with its description. */
export function recognize(segment: SegmentReader, formats: readonly StructureFormat[] = FORMATS): Recognized[] {
  const found: Recognized[] = [];
  for (const format of formats) {
    const at = segment.read(format.offset, format.magic.length);
    if (at.length !== format.magic.length || !at.every((b, i) => b === format.magic[i])) continue;
    try {
      found.push({ format, fields: format.describe(segment) });
    } catch (err) {
      found.push({ format, error: (err as Error).message });
    }
  }
  return found;
}

const u32le = (v: number) => new Uint8Array(new Uint32Array([v]).buffer);
const readU32 = (segment: SegmentReader, offset: number) => {
  const b = segment.read(offset, 4);
  if (b.length !== 4) throw new Error(`the segment ends before byte ${offset + 4}`);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
};

/*
 * A devmap Mutex (lib/sync/mutex.ts) at the start of a segment: 16 words, a process-shared robust glibc
 * mutex followed by the marker "MUTX" (0x4d555458) that Mutex.init writes last, in word 15. The futex word
 * of a robust mutex holds the owner's thread id (FUTEX_TID_MASK), FUTEX_WAITERS and FUTEX_OWNER_DIED.
 */
const MUTEX_MARKER = 0x4d555458;
const FUTEX_WAITERS = 0x80000000;
const FUTEX_OWNER_DIED = 0x40000000;
const FUTEX_TID_MASK = 0x3fffffff;

export const mutexFormat: StructureFormat = {
  name: 'devmap Mutex (at offset 0)',
  magic: u32le(MUTEX_MARKER),
  offset: 15 * 4,
  describe(segment) {
    const [, , lockWordOffset] = native().mutex_layout();
    const word = readU32(segment, lockWordOffset);
    const tid = word & FUTEX_TID_MASK;
    const fields: Field[] = [['lock word', `0x${word.toString(16).padStart(8, '0')}`]];
    if (tid === 0) fields.push(['state', 'unlocked']);
    else fields.push(['state', `locked by ${thread(tid)}`]);
    if (word & FUTEX_OWNER_DIED) fields.push(['owner died', 'yes: the next lock() returns { ownerDied: true } and must call consistent()']);
    fields.push(['waiters', word & FUTEX_WAITERS ? 'yes (FUTEX_WAITERS set)' : 'none recorded']);
    return fields;
  },
};

/** "thread T of process P (alive)" from /proc/<tid>/status, which exists for every live thread id. */
function thread(tid: number): string {
  let status: string;
  try {
    status = readFileSync(`/proc/${tid}/status`, 'utf8');
  } catch {
    return `thread ${tid}, which no longer exists (the kernel marks the lock owner-died when it notices)`;
  }
  const tgid = /^Tgid:\s*(\d+)/m.exec(status)?.[1];
  const name = /^Name:\s*(.*)$/m.exec(status)?.[1];
  return `thread ${tid} of process ${tgid ?? '?'}${name ? ` (${name})` : ''}, alive`;
}

/** The formats inspect knows. */
/** A SharedResourceMap at the start of the segment (magic "SRMP"); read from the snapshot, without its lock. */
export const sharedResourceMapFormat: StructureFormat = {
  name: 'devmap shared resource map',
  magic: new TextEncoder().encode('SRMP'),
  offset: 0,
  describe(segment) {
    const info = SharedResourceMap.inspect(segment.read(0, segment.size), 0);
    return [
      ['name', info.name],
      ['policy', info.overflow ? `${info.policy} (overflow: ${info.overflow})` : info.policy],
      ['state', `${info.state}${info.ready ? '' : ' (not ready: creation did not finish)'}`],
      ['free', `${info.freeUnits} units in ${info.ranges} ranges (mapsize ${info.mapsize})`],
      ['owners', `${info.ownersInUse} of ${info.owners} allocation records in use`],
      ['journal', info.journalEntries === 0 ? 'empty (no update in progress)' : `${info.journalEntries} entries: an update in progress, or a crashed one the next user will roll back`],
      ['recoveries', String(info.recoveries)],
      ['counters', Object.entries(info.stats).filter(([, v]) => typeof v === 'number').map(([k, v]) => `${k} ${v}`).join(', ')],
    ];
  },
};

/** A Channel at the start of the segment (magic "DMCH"): cursors, counters and the parties, from the snapshot. */
export const channelFormat: StructureFormat = {
  name: 'devmap channel',
  magic: new TextEncoder().encode('DMCH'),
  offset: 0,
  describe(segment) {
    const info = Channel.inspect(segment.read(0, segment.size));
    const party = (p: { slot: number; pid: number; alive: boolean }) => `slot ${p.slot}: pid ${p.pid === -1 ? '(being claimed)' : p.pid}${p.alive ? '' : ' (gone)'}`;
    return [
      ['mode', `${info.mode}, overflow ${info.overflow}${info.closed ? ', closed' : ''}`],
      ['ring', `${info.capacity} bytes, messages up to ${info.maxMessage} bytes`],
      ['cursors', `tail ${info.tail}, head ${info.head}${info.mode === 'mpmc' ? `, release ${info.release}` : ''}`],
      ['messages', `${info.sent} sent (${info.bytesSent} bytes), ${info.received} received, ${info.skipped} skipped, ${info.lost} lost to overwrite, ${info.dropped} refused, ${info.aborted} aborted`],
      ['writers', info.writers.map((w) => `${party(w)}, ${w.sent} sent`).join('; ') || 'none'],
      ['readers', info.readers.map((r) => `${party(r)}, cursor ${r.cursor}, lag ${r.lag} bytes, ${r.received} received`).join('; ') || 'none'],
    ];
  },
};

export const FORMATS: readonly StructureFormat[] = [mutexFormat, sharedResourceMapFormat, channelFormat];
