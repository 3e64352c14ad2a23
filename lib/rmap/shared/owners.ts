/*
 * The owner table (map.ts's essay, 4): one (index, size, pid, start time) record per allocation, so that
 * reclaim() can return what a dead process held. Every function here runs inside Region.run(), and every
 * write is journaled.
 */
import { isAlive, selfIdentityOf } from '../../identity';
import { ResourceMapPanic } from '../panic';
import type { ClassicEngine } from '../classic';
import type { VmemEngine } from '../vmem';
import { F, W, corrupt } from './layout';
import type { Region } from './locked';

/**
 * The engine's allocation plus its owner record; 0 when nothing fits, or when the table is full (then
 * `onFull` runs, after the refusal was counted).
 */
export function take(r: Region, engine: ClassicEngine | VmemEngine, size: number, onFull: (cap: number) => void): number {
  const i32 = r.i32;
  const cap = i32[W.OWNERS_CAP];
  if (cap > 0 && i32[W.OWNERS_USED] >= cap) {
    r.w32(W.OWNERS_FULL, i32[W.OWNERS_FULL] + 1);
    onFull(cap);
    return 0;
  }
  const index = engine.alloc(size);
  if (index !== 0 && cap > 0) {
    const n = i32[W.OWNERS_USED];
    const at = r.ownersAt + 4 * n;
    r.w64(at, index);
    r.w64(at + 1, size);
    const me = selfIdentityOf();
    r.w64(at + 2, me.pid);
    r.w64(at + 3, me.startTime);
    r.w32(W.OWNERS_USED, n + 1);
  }
  return index;
}

/** Removes record `rec` of `n` by moving the last one into its place. */
function dropRecord(r: Region, rec: number, n: number): void {
  const f = r.f64;
  const at = r.ownersAt + 4 * rec;
  const last = r.ownersAt + 4 * (n - 1);
  if (rec !== n - 1) for (let k = 0; k < 4; k++) r.w64(at + k, f[last + k]);
  r.w64(last, 0);
  r.w32(W.OWNERS_USED, n - 1);
}

/** [index, index + size) was freed: trim, split or drop every record it covers. */
export function release(r: Region, index: number, size: number): void {
  const i32 = r.i32;
  const cap = i32[W.OWNERS_CAP];
  if (cap === 0) return;
  const f = r.f64;
  const end = index + size;
  for (let rec = 0; rec < i32[W.OWNERS_USED]; ) {
    const at = r.ownersAt + 4 * rec;
    const a = f[at];
    const b = a + f[at + 1];
    if (b <= index || a >= end) {
      rec++;
      continue;
    }
    if (a >= index && b <= end) {
      dropRecord(r, rec, i32[W.OWNERS_USED]); // record rec is now the former last: look at it again
      continue;
    }
    if (a < index && b > end) {
      // A hole in the middle: the low piece stays in place, the high piece needs a record of its own.
      r.w64(at + 1, index - a);
      const n = i32[W.OWNERS_USED];
      if (n < cap) {
        const nr = r.ownersAt + 4 * n;
        r.w64(nr, end);
        r.w64(nr + 1, b - end);
        r.w64(nr + 2, f[at + 2]);
        r.w64(nr + 3, f[at + 3]);
        r.w32(W.OWNERS_USED, n + 1);
      } else {
        r.w64(F.UNTRACKED, f[F.UNTRACKED] + (b - end));
      }
    } else if (a < index) {
      r.w64(at + 1, index - a); // the tail was freed
    } else {
      r.w64(at, end); // the head was freed
      r.w64(at + 1, b - end);
    }
    rec++;
  }
}

/**
 * Frees (through `free`, the engine's rmfree) every recorded range whose owner no longer runs; returns the
 * units reclaimed. Each record is its own transaction. "No longer runs" is the kernel's word only
 * (identity.ts): a process this one may not signal or whose /proc entry it cannot read is alive, so its
 * units stay where they are.
 */
export function reclaimDead(r: Region, free: (size: number, index: number) => void): number {
  const i32 = r.i32;
  const f = r.f64;
  const alive = new Map<string, boolean>(); // "pid:start" → the answer, asked once per owner and call
  let units = 0;
  for (let rec = 0; rec < i32[W.OWNERS_USED]; ) {
    const at = r.ownersAt + 4 * rec;
    const pid = f[at + 2];
    const start = f[at + 3];
    const key = `${pid}:${start}`;
    let live = alive.get(key);
    if (live === undefined) alive.set(key, (live = isAlive(pid, start)));
    if (live) {
      rec++;
      continue;
    }
    const index = f[at];
    const size = f[at + 1];
    if (!(Number.isSafeInteger(index) && index >= 1 && Number.isSafeInteger(size) && size >= 1 && Number.isSafeInteger(index + size))) {
      throw corrupt(`owner record ${rec} holds [${index}, +${size})`);
    }
    let freed = 0;
    try {
      free(size, index);
      freed = size;
    } catch (err) {
      if (!(err instanceof ResourceMapPanic)) throw err; // a record the map disagrees with: drop it
    }
    dropRecord(r, rec, i32[W.OWNERS_USED]);
    if (freed > 0) {
      r.w64(F.RECLAIMED, f[F.RECLAIMED] + freed);
      if (units === 0) r.w32(W.RECLAIMS, i32[W.RECLAIMS] + 1);
      units += freed;
      r.bump = true;
    }
    // Each record is its own transaction: the map is consistent here, so commit (the journal then only
    // ever holds one record's worth, however many a reclaim returns).
    i32[W.JCOUNT] = 0;
  }
  return units;
}

/** The records in table order (for tests). */
export function records(r: Region): { index: number; size: number; pid: number; start: number }[] {
  const out = [];
  for (let rec = 0; rec < r.i32[W.OWNERS_USED]; rec++) {
    const at = r.ownersAt + 4 * rec;
    out.push({ index: r.f64[at], size: r.f64[at + 1], pid: r.f64[at + 2], start: r.f64[at + 3] });
  }
  return out;
}
