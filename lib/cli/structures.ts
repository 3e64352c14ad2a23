/*
 * What `devmap inspect` recognizes inside a segment: a small registry of formats, each known by magic bytes
 * at a fixed place from the structure's start. Structures live at any 8-byte aligned offset (the README puts
 * a Mutex at word 16, a map may follow a header of the application's own), so recognize() looks for each
 * magic at every aligned offset of the snapshot. A format decodes a *snapshot* of the segment (pread, no
 * mapping, no lock taken, nothing written) through the structure's own read-only decoder — Mutex.inspect(),
 * SharedResourceMap.inspect() — so inspecting is safe while other processes use the segment, and the bytes,
 * which may be mid-update or hostile, are checked by the module that knows them.
 *
 * To teach inspect a new structure: give its module a static inspect(bytes, offset), and add a format here
 * with its magic, the magic's place and a describe() over that. The dependency goes cli → structure.
 */
import { readFileSync } from 'node:fs';
import { isAlive } from '../identity';
import { Channel } from '../channel';
import { SharedResourceMap } from '../rmap/shared';
import { Mutex } from '../sync/mutex';
import { escapeText } from './format';

/** One line of a description: a label and its value. */
export type Field = [label: string, value: string];

export interface StructureFormat {
  /** What it is, e.g. "devmap Mutex". */
  readonly name: string;
  /** Bytes that identify it, found `magicAt` bytes after the structure's start. */
  readonly magic: Uint8Array;
  readonly magicAt: number;
  /** The state of the structure at byte `offset` of the snapshot; throws if the bytes do not make sense (reported, not fatal). */
  describe(bytes: Uint8Array, offset: number): Field[];
}

export interface Recognized {
  format: StructureFormat;
  offset: number;
  fields?: Field[];
  error?: string;
}

/** Structures are 8-byte aligned: the offsets recognize() tries. */
const ALIGN = 8;

/** Every structure whose magic is found at an aligned offset of `bytes`, in offset order, with its description. */
export function recognize(bytes: Uint8Array, formats: readonly StructureFormat[] = FORMATS): Recognized[] {
  const found: Recognized[] = [];
  for (let offset = 0; offset < bytes.length; offset += ALIGN) {
    for (const format of formats) {
      const at = offset + format.magicAt;
      if (at + format.magic.length > bytes.length || !format.magic.every((b, i) => bytes[at + i] === b)) continue;
      try {
        found.push({ format, offset, fields: format.describe(bytes, offset) });
      } catch (err) {
        found.push({ format, offset, error: (err as Error).message });
      }
    }
  }
  return found;
}

const ascii = (text: string) => new TextEncoder().encode(text);

/** A devmap Mutex (lib/sync/mutex.ts): its marker "MUTX" (0x4d555458 little-endian) is in its word 15. */
export const mutexFormat: StructureFormat = {
  name: 'devmap Mutex',
  magic: ascii('XTUM'),
  magicAt: 15 * 4,
  describe(bytes, offset) {
    const m = Mutex.inspect(bytes, offset);
    const fields: Field[] = [['lock word', `0x${m.lockWord.toString(16).padStart(8, '0')}`]];
    fields.push(['state', m.locked ? `locked by ${thread(m.owner)}` : 'unlocked']);
    if (m.ownerDied) fields.push(['owner died', 'yes: the next lock() returns { ownerDied: true } and must call consistent()']);
    fields.push(['waiters', m.waiters ? 'yes (FUTEX_WAITERS set)' : 'none recorded']);
    return fields;
  },
};

/**
 * "thread T of process P (name), alive" from /proc/<tid>/status. A thread gone by the kernel's word
 * (lib/identity.ts) is said to be gone; one this user cannot see in /proc (hidepid) is "alive, not visible".
 */
function thread(tid: number): string {
  if (!isAlive(tid, null)) return `thread ${tid}, which no longer exists (the kernel marks the lock owner-died when it notices)`;
  let status: string;
  try {
    status = readFileSync(`/proc/${tid}/status`, 'utf8');
  } catch {
    return `thread ${tid}, alive (not visible to this user in /proc)`;
  }
  const tgid = /^Tgid:\s*(\d+)/m.exec(status)?.[1];
  const name = /^Name:\s*(.*)$/m.exec(status)?.[1];
  return `thread ${tid} of process ${tgid ?? '?'}${name ? ` (${escapeText(name)})` : ''}, alive`;
}

/** A SharedResourceMap (magic "SRMP" at its start); read from the snapshot, without its lock. */
export const sharedResourceMapFormat: StructureFormat = {
  name: 'devmap shared resource map',
  magic: ascii('SRMP'),
  magicAt: 0,
  describe(bytes, offset) {
    const info = SharedResourceMap.inspect(bytes, offset);
    const fields: Field[] = [
      ['name', escapeText(info.name)],
      ['policy', info.overflow ? `${info.policy} (overflow: ${info.overflow})` : info.policy],
      ['state', `${info.state}${info.ready ? '' : ' (not ready: creation did not finish)'}`],
    ];
    if (info.corrupt) fields.push(['corrupt', 'yes: a process found its structure broken; every operation throws ERR_DEVMAP_CORRUPT']);
    fields.push(
      ['free', `${info.freeUnits} units in ${info.ranges} ranges (mapsize ${info.mapsize})`],
      ['owners', `${info.ownersInUse} of ${info.owners} allocation records in use`],
      ['journal', info.journalEntries === 0 ? 'empty (no update in progress)' : `${info.journalEntries} entries: an update in progress, or a crashed one the next user will roll back`],
      ['recoveries', String(info.recoveries)],
      ['counters', Object.entries(info.stats).filter(([, v]) => typeof v === 'number').map(([k, v]) => `${k} ${v}`).join(', ')],
    );
    return fields;
  },
};

/** A Channel (magic "DMCH" at its start): cursors, counters and the parties, read from the snapshot. */
export const channelFormat: StructureFormat = {
  name: 'devmap channel',
  magic: ascii('DMCH'),
  magicAt: 0,
  describe(bytes, offset) {
    const info = Channel.inspect(bytes.subarray(offset));
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

/** The formats inspect knows. */
export const FORMATS: readonly StructureFormat[] = [mutexFormat, sharedResourceMapFormat, channelFormat];
