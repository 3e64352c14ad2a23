/*
 * Aliases: second mappings of a simulated process's shared pages, which its views are made over.
 *
 * Inside a simulated address space a view stands for a translation of the simulated process: when its pages
 * are unmapped, protected below read+write or unloaded by a driver, the view must reach them no more. It cannot
 * be detached (a Node API may hold it: zlib aborts on that), and the pages cannot be replaced under it (they
 * stay the process's, at their address). So a view is made not over the pages but over an alias of them: the
 * same pages mapped a second time elsewhere (mremap with old size 0 on a shared mapping), and taking pages away
 * from the views is replacing that part of the alias with trash pages (private zeros, read+write). A request
 * running on a stale view finishes on harmless memory; the pages themselves are protected or re-reserved at
 * once, since no view is over them.
 *
 * An alias covers one protection run of its Mapping (the run the first view over it lies in), so one alias
 * serves every later view of those pages until part of it is taken away; a view over a part already trash gets
 * a new alias. Its views count on a lineage of its own (quarantine.ts): once every store is freed the whole
 * alias is unmapped. While a Mutex of its Mapping is held the alias stays (the Mutex's words, at the alias's
 * address, are on the thread's robust list, which the C library and the kernel write through).
 *
 * Addresses here are absolute: `base` is the address of the mirrored pages in the reservation, so the pieces
 * of a partial unmap share an alias without converting offsets.
 */
import { check } from '../errors';
import { native } from '../native';
import { makeBuffer } from './buffer';
import { assertMapSlots } from './map-count';
import { pageSize } from './page';
import { ROW_LIVE, ROW_TRASH, counterOf, newLineage, quarantine, settle, storeCounts, takeAway, type Lineage } from './quarantine';

/** mremap(2)'s MREMAP_MAYMOVE. */
const MREMAP_MAYMOVE = 1;

export interface Alias {
  /** Address of the first mirrored page, in the reservation, and the alias's own address and length. */
  base: number;
  addr: number;
  len: number;
  row: number;
  lineage: Lineage;
  /** Mirrored ranges already trash, flat [start, end) pairs in base addresses. */
  dead: number[];
  /** Unmapped: every view's store was freed. */
  gone: boolean;
  /** Mappings (pieces may share an alias) holding it for a held Mutex; while any does, lineage.objects counts one. */
  pinned: number;
  views: { ref: WeakRef<ArrayBuffer>; at: number; len: number }[];
}

/** An alias of [base, base + len); a system error when the kernel refuses. */
export function makeAlias(base: number, len: number, pinned: boolean): Alias {
  const n = native();
  assertMapSlots(1, 'A view of a simulated process (an alias of its pages)');
  // The alias and its row in one call: a Worker terminated between the two would leave the alias unknown to
  // its teardown.
  const addr = check(n.mremap_row(base, 0, len, MREMAP_MAYMOVE, ROW_LIVE), 'mremap');
  const row = storeCounts()[0];
  const alias: Alias = { base, addr, len, row, lineage: newLineage(), dead: [], gone: false, pinned: pinned ? 1 : 0, views: [] };
  alias.lineage.give = (r, a, l) => {
    alias.gone = true;
    n.row_release(r, a, l);
  };
  if (pinned) alias.lineage.objects++;
  quarantine(alias.lineage, row, addr, len);
  return alias;
}

/** True when [from, to) (base addresses) is mirrored by the alias and none of it is trash. */
export function covers(a: Alias, from: number, to: number): boolean {
  if (a.gone || from < a.base || to > a.base + a.len) return false;
  for (let i = 0; i < a.dead.length; i += 2) if (a.dead[i] < to && a.dead[i + 1] > from) return false;
  return true;
}

/** A view of the mirrored bytes [at, at + length) (base addresses; covers() said yes). */
export function aliasView(a: Alias, at: number, length: number): ArrayBuffer {
  let ab: ArrayBuffer;
  try {
    ab = makeBuffer(a.addr + (at - a.base), length, counterOf(a.lineage));
  } finally {
    settle(a.lineage); // (an alias whose first view was refused has no store: it goes at once)
  }
  if (a.views.length >= 64 && (a.views.length & 63) === 0) a.views = a.views.filter((v) => v.ref.deref() !== undefined);
  a.views.push({ ref: new WeakRef(ab), at, len: length });
  return ab;
}

/**
 * Takes the mirrored [from, to) away from the alias's views: that part becomes trash, and each view touching
 * it is handed to `stale`.
 */
export function trash(a: Alias, from: number, to: number, stale: (ab: ArrayBuffer) => void): void {
  const s = Math.max(from, a.base);
  const e = Math.min(to, a.base + a.len);
  if (a.gone || s >= e) return;
  // Only pages a live view covers: nothing else reaches the alias there (a new view needs read+write, which
  // the pages lack until a later call gives it back), so the alias stays whole — no VMA split — elsewhere.
  // Unless a store no attached view accounts for is alive (a BYOB read or a transfer() moved it into an
  // ArrayBuffer the alias never saw): then all of [s, e), as its pages are unknown.
  a.views = a.views.filter((v) => v.ref.deref() !== undefined);
  const attached = a.views.reduce((n, v) => n + ((v.ref.deref()?.byteLength ?? 0) > 0 ? 1 : 0), 0);
  if (a.lineage.counter !== 0 && storeCounts()[a.lineage.counter] > attached && !covered(a.dead, s, e)) {
    check(takeAway(a.addr + (s - a.base), e - s), 'mmap');
    a.dead = merged(a.dead, s, e);
  }
  for (const v of a.views) {
    const vs = Math.max(s, v.at - ((v.at - a.base) % pageSize));
    const ve = Math.min(e, a.base + Math.ceil((v.at + v.len - a.base) / pageSize) * pageSize);
    if (vs >= ve || covered(a.dead, vs, ve)) continue;
    check(takeAway(a.addr + (vs - a.base), ve - vs), 'mmap');
    a.dead = merged(a.dead, vs, ve);
  }
  if (a.dead.length === 2 && a.dead[0] === a.base && a.dead[1] === a.base + a.len) native().row_set(a.row, a.addr, a.len, ROW_TRASH);
  for (const v of a.views) {
    const ab = v.ref.deref();
    if (ab !== undefined && v.at < e && v.at + v.len > s) stale(ab);
  }
}

/** True when the flat merged ranges cover all of [s, e). */
function covered(ranges: number[], s: number, e: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) if (ranges[i] <= s && ranges[i + 1] >= e) return true;
  return false;
}

/** Flat [start, end) pairs with [s, e) added, sorted and merged. */
function merged(ranges: number[], s: number, e: number): number[] {
  const all: [number, number][] = [[s, e]];
  for (let i = 0; i < ranges.length; i += 2) all.push([ranges[i], ranges[i + 1]]);
  all.sort((x, y) => x[0] - y[0]);
  const out: number[] = [];
  for (const [a, b] of all) {
    if (out.length > 0 && a <= out[out.length - 1]) out[out.length - 1] = Math.max(out[out.length - 1], b);
    else out.push(a, b);
  }
  return out;
}

/** One more Mapping holds the alias for a held Mutex (`on`), or one fewer: the last lets it go with its views. */
export function pinAlias(a: Alias, on: boolean): void {
  if (a.gone) return;
  if (on && a.pinned++ === 0) a.lineage.objects++;
  else if (!on && a.pinned > 0 && --a.pinned === 0) {
    a.lineage.objects--;
    settle(a.lineage);
  }
}

/** The views wholly inside [from, to) (base addresses), for a piece of a partial unmap to take over. */
export function viewsInside(a: Alias, from: number, to: number): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const v of a.views) {
    const ab = v.ref.deref();
    if (ab !== undefined && v.at >= from && v.at + v.len <= to) out.push(ab);
  }
  return out;
}
