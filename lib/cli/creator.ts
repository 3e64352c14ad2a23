/*
 * Who created a segment, and is that process still alive?
 *
 * devmap records the creator of each segment it creates in an extended attribute of the shm object itself:
 *
 *     user.devmap.creator = "<pid>:<starttime>"
 *
 * where <starttime> is field 22 of /proc/<pid>/stat (clock ticks since boot at which the process started).
 * The pair names one process for the life of the machine: a pid can be reused, a (pid, start time) pair
 * cannot, so "the creator is alive" is exact — the process with that pid exists *and* started at that tick.
 * The attribute lives and dies with the inode (tmpfs keeps user xattrs since Linux 6.6), so there is no
 * side table to go stale, and Python or C peers that create segments simply have none ("unknown").
 *
 * Reading an xattr needs fgetxattr(2), which Node's fs does not offer; the addon provides it as
 * native().fgetxattr when built with it. Without it the creator reads as unknown, and `devmap ls` still
 * shows who holds each segment open or mapped (holders.ts), which needs nothing but /proc.
 */
import { readFileSync } from 'node:fs';
import { CREATOR_XATTR } from '../memory/shared-memory';
import { native } from '../native';

export { CREATOR_XATTR };

export interface Creator {
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22). */
  startTime: bigint;
}

/** The value stored in the attribute. */
export function formatCreator(c: Creator): string {
  return `${c.pid}:${c.startTime}`;
}

/** Parses an attribute value; null when it is not a well-formed record. */
export function parseCreator(text: string): Creator | null {
  const m = /^(\d{1,10}):(\d{1,20})$/.exec(text);
  if (m === null) return null;
  const pid = Number(m[1]);
  return pid > 0 && pid <= 0x3fffffff ? { pid, startTime: BigInt(m[2]) } : null;
}

/** The start time of process `pid`, or null if there is no such process (or it cannot be read). */
export function processStartTime(pid: number): bigint | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')': cut at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[22 - 3];
  return start !== undefined && /^\d+$/.test(start) ? BigInt(start) : null;
}

/** The creator record of the calling process. */
export function self(): Creator {
  const startTime = processStartTime(process.pid);
  if (startTime === null) throw new Error('cannot read /proc/self/stat');
  return { pid: process.pid, startTime };
}

/** True when the recorded process still runs (same pid, same start time). */
export function isAlive(c: Creator): boolean {
  return processStartTime(c.pid) === c.startTime;
}

/** Whether this build of the addon can read extended attributes. */
export function canReadCreators(): boolean {
  return typeof (native() as unknown as Record<string, unknown>).fgetxattr === 'function';
}

/**
 * The creator recorded on an open descriptor: a Creator, null when the segment has no (valid) record, or
 * undefined when this build cannot read extended attributes at all.
 */
export function readCreator(fd: number): Creator | null | undefined {
  if (!canReadCreators()) return undefined;
  const fgetxattr = (native() as unknown as { fgetxattr(fd: number, name: string, out: Uint8Array): number }).fgetxattr;
  const out = new Uint8Array(64);
  const n = fgetxattr(fd, CREATOR_XATTR, out);
  if (n < 0) return null; // -ENODATA: no record; -ERANGE: longer than any record we write
  return parseCreator(Buffer.from(out.buffer, out.byteOffset, n).toString('latin1'));
}
