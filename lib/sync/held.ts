/*
 * The Mutexes this thread holds, and the one rule they impose on the object under them: it must not shrink
 * past them.
 *
 * A held Mutex's words are on the thread's robust list: the C library follows the list's pointers on every
 * lock and unlock of any robust mutex, and the kernel follows them when the thread dies. A page of the list
 * that vanishes faults the C library (SIGBUS inside glibc) or silently cuts the kernel's walk. unmap() and
 * protect() of the mapping are refused through its pin count (lib/memory/mapping.ts); a shrinking
 * SharedMemory#resize() is checked here, through the guard hook lib/memory/shared-memory.ts runs first: a
 * held Mutex whose words lie in that object at or past the new size refuses the resize (ERR_DEVMAP_BUSY).
 *
 * Which object and offset an address belongs to is the kernel's record, /proc/self/maps (inode, device,
 * file offset of each mapping). It is read only when a resize meets a held Mutex, so lock and unlock pay
 * only for keeping the list: a push, and a short scan by address (a thread holds few Mutexes at once).
 */
import * as fs from 'node:fs';
import { DevmapError } from '../errors';
import { pin, unpin, type Mapping } from '../memory/mapping';
import { addShrinkGuard } from '../memory/shared-memory';

interface HeldEntry {
  /** Address of the Mutex's first byte. */
  addr: number;
  /** The Mapping pinned for it (the one the locking Mutex object was in). */
  mapping: Mapping;
}

/** In locking order; a thread holds few Mutexes at once, so a scan is the cheapest lookup. */
const held: HeldEntry[] = [];

/** Records that this thread now holds the Mutex at `addr`, and pins `mapping` for it. */
export function hold(addr: number, mapping: Mapping): void {
  pin(mapping);
  held.push({ addr, mapping });
}

/**
 * Records that this thread no longer holds the Mutex at `addr` and unpins the Mapping that was pinned for it,
 * whichever Mutex object (of however many over those words) locked it. Nothing, if it was not held here.
 */
export function release(addr: number): void {
  for (let i = held.length - 1; i >= 0; i--) {
    if (held[i].addr === addr) {
      unpin(held[i].mapping);
      held[i] = held[held.length - 1];
      held.pop();
      return;
    }
  }
}

/** st_dev as Linux encodes it (new_encode_dev / glibc's makedev) from the major:minor /proc/self/maps prints. */
function encodeDev(major: number, minor: number): number {
  return (minor & 0xff) + (major & 0xfff) * 2 ** 8 + Math.floor(minor / 256) * 2 ** 20 + Math.floor(major / 4096) * 2 ** 32;
}

interface Backing {
  dev: number;
  ino: number;
  offset: number;
  /** A shared mapping (every mapping of the object sees the same bytes), not a private copy-on-write one. */
  shared: boolean;
}

/** The (device, inode, file offset) behind each address, from /proc/self/maps; null for anonymous private memory. */
function backingOf(addrs: number[]): (Backing | null)[] {
  const out: (Backing | null)[] = addrs.map(() => null);
  for (const line of fs.readFileSync('/proc/self/maps', 'latin1').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S\S\S(\S) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)/.exec(line);
    if (m === null || m[7] === '0') continue;
    const start = parseInt(m[1], 16);
    const end = parseInt(m[2], 16);
    for (let i = 0; i < addrs.length; i++) {
      if (addrs[i] >= start && addrs[i] < end) {
        const dev = encodeDev(parseInt(m[5], 16), parseInt(m[6], 16));
        out[i] = { dev, ino: Number(m[7]), offset: parseInt(m[4], 16) + (addrs[i] - start), shared: m[3] === 's' };
      }
    }
  }
  return out;
}

/**
 * The address at which this thread holds the Mutex whose words are at `addr`: `addr` itself, or another mapping
 * of the same bytes (a second map() of the object, another alias of a simulated process's pages), which is
 * where the C library linked it into the robust list and where its unlock must go. undefined: not held here.
 */
export function heldAt(addr: number): number | undefined {
  if (held.length === 0) return undefined;
  for (const e of held) if (e.addr === addr) return addr;
  // Rare (a Mutex unlocked through a mapping other than the one that locked it): ask the kernel's record.
  const [mine, ...others] = backingOf([addr, ...held.map((e) => e.addr)]);
  if (mine === null || !mine.shared) return undefined;
  const i = others.findIndex((b) => b !== null && b.shared && b.dev === mine.dev && b.ino === mine.ino && b.offset === mine.offset);
  return i < 0 ? undefined : held[i].addr;
}

addShrinkGuard((fd, size) => {
  if (held.length === 0) return;
  const st = fs.fstatSync(fd);
  const addrs = held.map((e) => e.addr);
  for (const b of backingOf(addrs)) {
    if (b !== null && b.ino === st.ino && b.dev === st.dev && b.offset + 64 > size) {
      throw new DevmapError(
        'ERR_DEVMAP_BUSY',
        `resize: a Mutex this thread holds lives at byte ${b.offset} of this object, past the new size ${size}; ` +
          'unlock it first (its words are on the thread\'s robust list, which the C library and the kernel read)',
      );
    }
  }
});
