/*
 * Who created a segment, and is that process still alive?
 *
 * devmap records the creator of each segment it creates in an extended attribute of the shm object itself:
 *
 *     user.devmap.creator = "<pid>:<starttime>"
 *
 * where <starttime> is field 22 of /proc/<pid>/stat (clock ticks since boot at which the process started).
 * The pair names one process for the life of the machine (lib/identity.ts), so "the creator is gone" holds
 * even after its pid is reused; the liveness rule is identity.ts's: gone only on the kernel's word. The
 * attribute lives and dies with the inode (tmpfs keeps user xattrs since Linux 6.6), so there is no side
 * table to go stale, and Python or C peers that create segments simply have none ("not recorded").
 */
import { isAlive as processIsAlive, type ProcessIdentity } from '../identity';
import { CREATOR_XATTR } from '../memory/shared-memory';
import { native } from '../native';

export { CREATOR_XATTR };

/** The recorded creator: a pid and its start time in clock ticks since boot (/proc/<pid>/stat field 22). */
export type Creator = ProcessIdentity;

/** Parses an attribute value; null when it is not a well-formed record. */
export function parseCreator(text: string): Creator | null {
  const m = /^(\d{1,10}):(\d{1,20})$/.exec(text);
  if (m === null) return null;
  const pid = Number(m[1]);
  return pid > 0 && pid <= 0x3fffffff ? { pid, startTime: Number(m[2]) } : null;
}

/** True unless the kernel says the recorded process is gone (identity.ts). */
export function isAlive(c: Creator): boolean {
  return processIsAlive(c.pid, c.startTime);
}

/** The creator recorded on an open descriptor: a Creator, or null when the segment has no (valid) record. */
export function readCreator(fd: number): Creator | null {
  const out = new Uint8Array(64);
  const n = native().fgetxattr(fd, CREATOR_XATTR, out);
  if (n < 0) return null; // -ENODATA: no record; -ERANGE: longer than any record we write
  return parseCreator(Buffer.from(out.buffer, out.byteOffset, n).toString('latin1'));
}
