/*
 * The VMA budget: devmap never takes the last entries of the process's mapping table.
 *
 * The kernel lets a process hold at most vm.max_map_count mappings (VMAs; 65530 by default). When the table is
 * full, every mmap fails with ENOMEM — devmap's own, which it reports as a coded error, but also V8's, which
 * must map a page for its heap, a thread stack or compiled code, and aborts the process when it cannot ("Fatal
 * process out of memory"). So a program that fills the table through devmap would not get an error it can
 * handle: it would die at its next allocation. devmap therefore keeps a reserve of the table free for
 * everything else in the process: a call that may add mappings — an mmap, an alias (a simulated process's view,
 * a pending waitAsync or lockAsync), a placement in a reservation, and every call that may split a mapping
 * (protect, a partial unmap, advice, mlock) — throws ERR_DEVMAP_MAP_COUNT once fewer than RESERVE entries could
 * be left. (A whole unmap never splits anything and is never refused.) What devmap does on its own to keep a
 * promise — trash pages over the part of an alias a call took away, the release of a range that waited for
 * its views — is never refused: the call that caused it paid for it, and a release that would split merged
 * trash pages while the table is more than half full leaves them in place as trash (quarantine.ts).
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

/** The words of processWords() that hold the budget and the most mappings devmap lets the table hold. */
const BUDGET = 1;
const FLOOR = 2;

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

/**
 * The process's mappings now: the lines of /proc/self/maps. 0 where /proc is not mounted (nothing to go by:
 * the kernel's own limit is all there is); -1 when it cannot be read now (no descriptor left, say).
 */
export function mapCount(): number {
  let fd: number;
  try {
    fd = openSync('/proc/self/maps', 'r');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 0 : -1;
  }
  let lines = 0;
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      for (let at = chunk.indexOf(10); at !== -1 && at < n; at = chunk.indexOf(10, at + 1)) lines++;
    }
  } catch {
    return -1;
  } finally {
    closeSync(fd);
  }
  return lines;
}

/** Until when a refused call is refused again without counting (see takeMapSlots). */
let quietUntil = 0;

/** Called when a whole mapping is given back: the next refused call counts the table again at once. */
export function roomMade(): void {
  quietUntil = 0;
}

/**
 * Takes `need` entries of the table for a call that may add mappings (its worst case: 1 for an mmap anywhere, 2
 * for a placement or a change of protection that may split a mapping in three). False when that would leave
 * fewer than MAP_COUNT_RESERVE entries, or when the table cannot be counted now.
 */
export function takeMapSlots(need: number, recount = false): boolean {
  const words = processWords();
  for (let tries = 0; ; tries++) {
    const have = Atomics.load(words, BUDGET);
    if (have >= need && !(recount && tries === 0)) {
      if (Atomics.compareExchange(words, BUDGET, have, have - need) === have) return true;
      continue;
    }
    // Spent (or never counted: the word starts at 0): count the table. Only half the room found is given out
    // before the next count, as mappings made outside devmap meanwhile (V8's, another addon's) are not seen.
    // At the reserve every call would count, and a count of a full table takes milliseconds: after a count
    // that found no room, calls are refused without counting for a while (five times what the count took),
    // unless this environment gave a mapping back meanwhile (roomMade()).
    const t0 = performance.now();
    if (t0 < quietUntil) return false;
    const count = mapCount();
    if (count < 0) return false;
    publishFloor();
    const room = MAP_COUNT_LIMIT - MAP_COUNT_RESERVE - count;
    const fresh = room > 2 * need ? Math.ceil(room / 2) : Math.max(0, room);
    if (fresh < need) quietUntil = t0 + 5 * (performance.now() - t0);
    // Installed only if no other environment spent or counted since `have` was read: if one did, its figure is
    // as new as ours and already spent from, so ours would hand out the same room twice. Look again.
    if (Atomics.compareExchange(words, BUDGET, have, fresh >= need ? fresh - need : fresh) !== have && tries < 16) continue;
    return fresh >= need;
  }
}

/** The addon's SIGBUS handler counts the table itself once the budget is spent: it needs the floor (regions.cc). */
function publishFloor(): void {
  Atomics.store(processWords(), FLOOR, MAP_COUNT_LIMIT - MAP_COUNT_RESERVE);
}

/** A quarter of the entries devmap may use: see spareMapSlots(). */
const SPARE = Math.floor((MAP_COUNT_LIMIT - MAP_COUNT_RESERVE) / 4);

/**
 * Takes `need` entries for something devmap does for itself that may split a mapping (unmapping released trash
 * pages out of the middle of merged ones), only while more than half of what devmap may use is free (the budget
 * is half the room at each count): devmap's housekeeping never takes the room a program's own mappings need.
 */
export function spareMapSlots(need: number): boolean {
  const words = processWords();
  if (Atomics.load(words, BUDGET) >= SPARE + need) return takeMapSlots(need);
  // The word may be low from spending alone: count the table before calling it half full (at most every so
  // often: between half full and the reserve every release would count otherwise).
  const t0 = performance.now();
  if (t0 < spareQuietUntil) return false;
  if (takeMapSlots(need, true) && Atomics.load(words, BUDGET) >= SPARE) return true;
  spareQuietUntil = t0 + 5 * (performance.now() - t0);
  return false;
}

/** Until when spareMapSlots() does not count the table again. */
let spareQuietUntil = 0;

/**
 * Spends `need` entries for a change devmap makes on its own to keep a promise (trash pages over part of an
 * alias or a mapping, pages taken away that the calling operation already paid for): never refused, but the
 * next call that takes entries counts sooner.
 */
export function spendMapSlots(need: number): void {
  Atomics.sub(processWords(), BUDGET, need);
}

/**
 * True when `need` entries could be taken now, without taking them: for a call made of several steps that each
 * take their own (a simulated munmap over several mappings), which must be refused before its first step.
 */
export function haveMapSlots(need: number): boolean {
  if (!takeMapSlots(need)) return false;
  Atomics.add(processWords(), BUDGET, need);
  return true;
}

/** The error a call gets when takeMapSlots() said no. */
export function mapCountError(what: string): DevmapError {
  return new DevmapError(
    'ERR_DEVMAP_MAP_COUNT',
    `${what} could leave fewer than ${MAP_COUNT_RESERVE} of the process's ${MAP_COUNT_LIMIT} mappings ` +
      '(vm.max_map_count) to the rest of the process (or the table cannot be counted now); unmap mappings ' +
      '(or let views be collected) first',
  );
}

/** Takes `need` entries for `what`, or throws ERR_DEVMAP_MAP_COUNT. */
export function assertMapSlots(need: number, what: string): void {
  if (!takeMapSlots(need)) throw mapCountError(what);
}
