/*
 * The VMA budget: devmap never takes the last entries of the process's mapping table.
 *
 * The kernel lets a process hold at most vm.max_map_count mappings (VMAs; 65530 by default). When the table is
 * full, every mmap fails with ENOMEM — devmap's own, which it reports as a coded error, but also V8's, which
 * must map a page for its heap, a thread stack or compiled code, and aborts the process when it cannot ("Fatal
 * process out of memory"). So a program that fills the table through devmap would not get an error it can
 * handle: it would die at its next allocation. devmap therefore keeps a reserve of the table free for
 * everything else in the process: a call that would make a new mapping (an mmap, an alias of a simulated
 * process, a placement that splits a reservation) throws ERR_DEVMAP_MAP_COUNT once fewer than RESERVE entries
 * would be left. Calls that only change mappings that exist (protect, a partial unmap, trash pages over
 * taken pages) are left to the kernel: they split a VMA at most in two or three, and the reserve absorbs that;
 * they spend from the budget all the same, so that the next new mapping counts the table again soon enough.
 *
 * Counting the table means reading /proc/self/maps, about a third of a microsecond per entry, so it is not done
 * per call. After a count, the table has `room` entries left above the reserve; every new mapping spends its
 * worst case from that budget (a process-wide word the addon keeps, shared by the main thread and every
 * Worker, which take from one table), and only a call that finds the budget spent counts again. Mappings given
 * back never add to the budget (a range in the middle of a merged VMA can split it), so the budget only ever
 * understates devmap's own use, and the next count puts it right. Mappings made outside devmap (V8's, another
 * addon's) are seen only at a count, so only half the room found is spent before the next one. A program far
 * from the limit counts once per tens of thousands of mappings; one that sits at the reserve counts at every new
 * mapping, which is the price of not guessing.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { DevmapError } from '../errors';
import { processWords } from './tables';

/** The word of processWords() that holds the budget. */
const BUDGET = 1;

function readLimit(): number {
  try {
    const n = Number.parseInt(readFileSync('/proc/sys/vm/max_map_count', 'latin1'), 10);
    return Number.isSafeInteger(n) && n > 0 ? n : 65530;
  } catch {
    return 65530; // the kernel's default (DEFAULT_MAX_MAP_COUNT)
  }
}

/** vm.max_map_count, read once at load. */
export const MAP_COUNT_LIMIT = readLimit();

/**
 * Entries of the table devmap leaves to the rest of the process (V8's heap and code, thread stacks, libraries):
 * an eighth of it, at least 256. With the default limit that is 8191 entries, several gigabytes of V8 heap.
 */
export const MAP_COUNT_RESERVE = Math.max(256, Math.floor(MAP_COUNT_LIMIT / 8));

const chunk = Buffer.allocUnsafe(64 * 1024);

/** The process's mappings now: the lines of /proc/self/maps (0 where /proc is not mounted: nothing to go by). */
export function mapCount(): number {
  let fd: number;
  try {
    fd = openSync('/proc/self/maps', 'r');
  } catch {
    return 0;
  }
  let lines = 0;
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      for (let at = chunk.indexOf(10); at !== -1 && at < n; at = chunk.indexOf(10, at + 1)) lines++;
    }
  } finally {
    closeSync(fd);
  }
  return lines;
}

/**
 * Takes `need` entries of the table for a new mapping (its worst case: 1 for an mmap anywhere, 2 for a
 * placement that may split what it lands in). False when that would leave fewer than MAP_COUNT_RESERVE entries.
 */
export function takeMapSlots(need: number): boolean {
  const words = processWords();
  if (Atomics.sub(words, BUDGET, need) >= need) return true;
  // Spent (or never counted: the word starts at 0): count the table. Another environment may count at the
  // same moment; each stores what it saw, and both figures are true at their time.
  // Only half the room is spent before the next count: mappings made outside devmap meanwhile (V8's, another
  // addon's) are not seen until then.
  const room = MAP_COUNT_LIMIT - MAP_COUNT_RESERVE - mapCount();
  Atomics.store(words, BUDGET, room > 2 * need ? Math.ceil(room / 2) : Math.max(0, room));
  return Atomics.sub(words, BUDGET, need) >= need;
}

/**
 * Spends `need` entries for a call that may split mappings that exist (mprotect, madvise, mlock, trash pages
 * over part of a mapping): never refused (the reserve absorbs a split), but the next new mapping counts sooner.
 */
export function spendMapSlots(need: number): void {
  Atomics.sub(processWords(), BUDGET, need);
}

/** The error a new mapping gets when takeMapSlots() said no. */
export function mapCountError(what: string): DevmapError {
  return new DevmapError(
    'ERR_DEVMAP_MAP_COUNT',
    `${what} would leave fewer than ${MAP_COUNT_RESERVE} of the process's ${MAP_COUNT_LIMIT} mappings ` +
      '(vm.max_map_count) to the rest of the process; unmap mappings (or let views be collected) first',
  );
}

/** Takes `need` entries for `what`, or throws ERR_DEVMAP_MAP_COUNT. */
export function assertMapSlots(need: number, what: string): void {
  if (!takeMapSlots(need)) throw mapCountError(what);
}
