/*
 * Which processes hold /dev/shm segments: one pass over /proc, reading each process's open descriptors
 * (/proc/<pid>/fd/*, whose links read "/dev/shm/<name>") and its mappings (/proc/<pid>/maps, whose lines end in
 * "/dev/shm/<name>", with " (deleted)" once unlinked). A process of another user is skipped unless we are
 * root: its fd and maps entries are not readable, so holders are "those visible to this user".
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const PREFIX = '/dev/shm/';

/** Segment name → pids (ascending) that have it open or mapped. The calling process is left out. */
export function shmHolders(): Map<string, number[]> {
  const holders = new Map<string, Set<number>>();
  const add = (name: string, pid: number) => {
    let set = holders.get(name);
    if (set === undefined) holders.set(name, (set = new Set()));
    set.add(pid);
  };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    for (const path of openPaths(pid)) if (path.startsWith(PREFIX) && !path.endsWith(' (deleted)')) add(path.slice(PREFIX.length), pid);
    for (const path of mappedPaths(pid)) add(path.slice(PREFIX.length), pid);
  }
  return new Map([...holders].map(([name, set]) => [name, [...set].sort((a, b) => a - b)]));
}

function openPaths(pid: number): string[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return []; // gone, or another user's
  }
  const paths: string[] = [];
  for (const fd of fds) {
    try {
      paths.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed between readdir and readlink
    }
  }
  return paths;
}

function mappedPaths(pid: number): string[] {
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return [];
  }
  const paths = new Set<string>();
  for (const line of maps.split('\n')) {
    const at = line.indexOf(PREFIX);
    // Only segments still linked: an unlinked one ends in " (deleted)" and no longer has its name.
    if (at >= 0 && !line.endsWith(' (deleted)')) paths.add(line.slice(at));
  }
  return [...paths];
}
