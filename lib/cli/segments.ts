/*
 * The POSIX shm segments of this machine: the regular files of /dev/shm (named semaphores, "sem.<name>",
 * are left out), with what stat(2), the creator record (creator.ts) and /proc (holders.ts) say about each.
 */
import * as fs from 'node:fs';
import { validateShmName } from '../memory/shared-memory';
import { UsageError } from './args';
import { type Creator, isAlive, readCreator } from './creator';
import { shmHolders } from './holders';

export const SHM_DIR = '/dev/shm';

export interface Segment {
  name: string;
  path: string;
  size: number;
  /** Permission bits, e.g. 0o600. */
  mode: number;
  uid: number;
  gid: number;
  modified: Date;
  /** The recorded creator; null: none recorded. */
  creator: Creator | null;
  /** Whether the recorded creator still runs; null when there is no record to go by. */
  creatorAlive: boolean | null;
  /** Processes (other than this one) that have the segment open or mapped. */
  holders: number[];
}

/** Every segment, sorted by name. */
export function listSegments(): Segment[] {
  const holders = shmHolders();
  const out: Segment[] = [];
  for (const name of fs.readdirSync(SHM_DIR).sort()) {
    if (name.startsWith('sem.')) continue;
    const seg = describe(name, holders);
    if (seg !== null) out.push(seg);
  }
  return out;
}

/** One segment by name; a UsageError for an invalid name, null when it does not exist. */
export function findSegment(name: string, command: string): Segment | null {
  checkName(name, command);
  return describe(name, shmHolders());
}

export function checkName(name: string, command: string): void {
  if (name.startsWith(`${SHM_DIR}/`) && name.length > SHM_DIR.length + 1) {
    const bare = name.slice(SHM_DIR.length + 1);
    throw new UsageError(`'${name}' is a path: name the segment without the "${SHM_DIR}/" prefix (devmap ${command} ${bare})`, command);
  }
  try {
    validateShmName(name);
  } catch (err) {
    throw new UsageError(`'${name}' is not a segment name: ${(err as Error).message}`, command);
  }
}

function describe(name: string, holders: Map<string, number[]>): Segment | null {
  const path = `${SHM_DIR}/${name}`;
  let fd: number;
  try {
    // O_NOFOLLOW | O_NONBLOCK: never follow a planted symlink, never block on a FIFO someone put there.
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') return null;
    if (code === 'EACCES') return describeUnopened(name, path, holders);
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return null;
    const creator = readCreator(fd);
    return {
      name, path, size: st.size, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, modified: st.mtime,
      creator, creatorAlive: creator ? isAlive(creator) : null, holders: holders.get(name) ?? [],
    };
  } finally {
    fs.closeSync(fd);
  }
}

/** A segment we may not open (another user's, mode 0600): what stat says, no creator record. */
function describeUnopened(name: string, path: string, holders: Map<string, number[]>): Segment | null {
  const st = fs.lstatSync(path, { throwIfNoEntry: false });
  if (st === undefined || !st.isFile()) return null;
  return {
    name, path, size: st.size, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, modified: st.mtime,
    creator: null, creatorAlive: null, holders: holders.get(name) ?? [],
  };
}

/** The calling user's uid. */
export function myUid(): number {
  return process.getuid?.() ?? -1;
}
