/*
 * The illumos engine: rmalloc/rmfree over a vmem arena with quantum 1, no import source and no quantum
 * caches, as usr/src/uts/common/os/rmap.c builds it (SPEC C.7).
 *
 *   span      a range added by an rmfree that is not inside an existing span (vmem_add). Spans live in an
 *             AVL tree keyed by start (for vmem_contains and overlap checks) and never coalesce.
 *   segment   a piece of a span, free or allocated. The segments of a span form an address-ordered chain
 *             (an[]/ap[]) that starts at the span node itself, so a segment's neighbours are always in its
 *             own span: boundary-tag coalescing can never cross spans.
 *   free list k   free segments with sizes in [2^k, 2^(k+1)), doubly linked (kn[]/kp[]), newest first;
 *             a bitmap of non-empty lists (two Int32 header words) finds the right list in O(1).
 *   hash      allocated segments by start, for exact-match frees in O(1).
 *
 * ht[] is the AVL height (≥ 1) of a span node and a negative tag on a segment: FREE or ALLOC.
 */
import { ResourceMapPanic } from './panic';
import type { Lost } from './classic';
import { H32, H64, LISTS, brokenLinks, type RmapStore } from './store';
import { treeAbove, treeFloor, treeInsert, treeWalk } from './tree';

const NIL = -1; // store.ts NIL; a local constant keeps module-object loads out of the hot loops
const FREE = -1;
const ALLOC = -2;
const TWO32 = 4294967296;

/** y is a node of the pool and a chain walk has not taken more steps than the pool has nodes. */
function step(s: RmapStore, y: number, steps: number, what: string): void {
  if (!(y >= 0 && y < s.lo.length) || steps > s.lo.length) throw brokenLinks(what);
}

/** highbit(): 1 + the index of the highest set bit (vmem's highbit), exact for any safe integer ≥ 1. */
export function highbit(n: number): number {
  return n < TWO32 ? 32 - Math.clz32(n) : 64 - Math.clz32(Math.floor(n / TWO32));
}

export class VmemEngine {
  constructor(
    readonly s: RmapStore,
    readonly name: string,
  ) {}

  /** vmem_alloc(VM_NOSLEEP): instant fit (C.7 item 2); 0 when nothing fits or no segment can be made. */
  alloc(size: number): number {
    const s = this.s;
    if (size === 0) throw new ResourceMapPanic('ERR_DEVMAP_RMAP_ZERO_SIZE', 'vmem_xalloc(): size == 0', 'rmalloc', 0, 0);
    const hb = highbit(size);
    let x = NIL;
    if (size === 2 ** (hb - 1)) {
      // A power of two: every member of list hb − 1 and above is big enough.
      const k = this.lowestList(hb - 1);
      if (k >= 0) x = s.h32[H32.LIST + k];
    } else {
      const k = this.lowestList(hb);
      if (k >= 0) x = s.h32[H32.LIST + k];
      else {
        // vmem_xalloc: all larger lists are empty; search size's own list front to back.
        for (let y = s.h32[H32.LIST + hb - 1], k = 0; y !== NIL; y = s.kn[y], k++) {
          step(s, y, k, 'a free list');
          s.w64(s.h64, H64.SEARCHES, s.h64[H64.SEARCHES] + 1);
          if (s.sz[y] >= size) {
            x = y;
            break;
          }
        }
      }
    }
    if (x === NIL) return 0;
    step(s, x, 0, 'a free list');
    const index = s.lo[x];
    const whole = s.sz[x];
    const rest = whole - size;
    if (rest > 0 && highbit(rest) === highbit(whole)) {
      // vmem_seg_alloc fast path: the remainder stays on its list, in place; a new segment is allocated.
      const a = s.alloc();
      if (a === NIL) return 0;
      s.w64(s.lo, x, index + size);
      s.w64(s.sz, x, rest);
      this.setSegment(a, index, size, ALLOC);
      this.linkBefore(a, x);
      s.hashInsert(a);
    } else if (rest > 0) {
      const r = s.alloc();
      if (r === NIL) return 0;
      this.listDelete(x);
      s.w64(s.sz, x, size);
      s.w32(s.ht, x, ALLOC);
      this.setSegment(r, index + size, rest, FREE);
      this.linkAfter(r, x);
      this.listInsert(r);
      s.hashInsert(x);
    } else {
      this.listDelete(x);
      s.w32(s.ht, x, ALLOC);
      s.hashInsert(x);
    }
    s.w64(s.h64, H64.ALLOCATED, s.h64[H64.ALLOCATED] + size);
    s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] - size);
    return index;
  }

  /**
   * rmfree: vmem_free when [index, index + size) lies inside one span (it must then be exactly an
   * allocation), vmem_add of a new span otherwise (C.7, C.4 illumos column). Panics before any change.
   * Returns the range lost when a fixed store has no node left for a new span ("cannot add segment").
   */
  free(size: number, index: number): Lost | null {
    const s = this.s;
    const x = s.hashFind(index);
    if (x !== NIL && s.sz[x] === size) {
      this.release(x);
      return null;
    }
    const root = s.h32[H32.ROOT];
    const span = treeFloor(s, root, index);
    // vmem_contains: start >= span start && end - 1 < span end (so size 0 at the span's end counts).
    if (span !== NIL && index + size - 1 < s.lo[span] + s.sz[span]) {
      const at = `vmem_hash_delete(${this.name}, ${index.toString(16)}, ${size})`;
      if (x === NIL) throw new ResourceMapPanic('ERR_DEVMAP_RMAP_BAD_FREE', `${at}: bad free`, 'rmfree', size, index);
      throw new ResourceMapPanic('ERR_DEVMAP_RMAP_WRONG_SIZE', `${at}: wrong size (expect ${s.sz[x]})`, 'rmfree', size, index);
    }
    const at = `vmem_add(${this.name}, 0x${index.toString(16)}, ${size})`;
    if (index === 0 || size === 0) {
      const code = index === 0 ? 'ERR_DEVMAP_RMAP_ZERO_INDEX' : 'ERR_DEVMAP_RMAP_ZERO_SIZE';
      throw new ResourceMapPanic(code, `${at}: bad arguments`, 'rmfree', size, index);
    }
    // illumos would add an overlapping span and corrupt itself (C.4); devmap refuses.
    const next = treeAbove(s, root, index);
    if ((span !== NIL && s.lo[span] + s.sz[span] > index) || (next !== NIL && s.lo[next] < index + size)) {
      throw new ResourceMapPanic('ERR_DEVMAP_RMAP_OVERLAP', `${at}: range overlaps an existing span`, 'rmfree', size, index);
    }
    const a = s.alloc();
    const b = a === NIL ? NIL : s.alloc();
    if (b === NIL) {
      if (a !== NIL) s.release(a);
      return { index, size, message: `rmfree(${this.name}, ${size}, ${index}): cannot add segment` };
    }
    s.w64(s.lo, a, index); // the span
    s.w64(s.sz, a, size);
    s.w32(s.h32, H32.ROOT, treeInsert(s, root, a));
    s.w32(s.an, a, NIL);
    this.setSegment(b, index, size, FREE); // its one free segment
    this.linkAfter(b, a);
    this.listInsert(b);
    s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] + size);
    return null;
  }

  /** vmem_xfree: unhash, coalesce with the next then the previous free segment of the span, list it. */
  private release(x: number): void {
    const s = this.s;
    const size = s.sz[x];
    s.hashRemove(x);
    const n = s.an[x];
    if (n !== NIL && s.ht[n] === FREE) {
      this.listDelete(n);
      s.w64(s.sz, x, s.sz[x] + s.sz[n]);
      this.unlinkSegment(n);
    }
    const p = s.ap[x];
    if (s.ht[p] === FREE) {
      this.listDelete(p);
      s.w64(s.sz, p, s.sz[p] + s.sz[x]);
      this.unlinkSegment(x);
      this.listInsert(p);
    } else {
      this.listInsert(x);
    }
    s.w64(s.h64, H64.ALLOCATED, s.h64[H64.ALLOCATED] - size);
    s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] + size);
  }

  /** Calls fn for every free segment in index order. */
  walk(fn: (index: number, size: number) => void): void {
    const s = this.s;
    treeWalk(s, s.h32[H32.ROOT], (span) => {
      for (let x = s.an[span], k = 0; x !== NIL; x = s.an[x], k++) {
        step(s, x, k, 'a span chain');
        if (s.ht[x] === FREE) fn(s.lo[x], s.sz[x]);
      }
    });
  }

  /** Calls fn for every span in index order. */
  spans(fn: (index: number, size: number) => void): void {
    const s = this.s;
    treeWalk(s, s.h32[H32.ROOT], (span) => fn(s.lo[span], s.sz[span]));
  }

  /** The largest free segment: the largest member of the highest non-empty list (O(length of that list)). */
  largest(): number {
    const s = this.s;
    let k = LISTS - 1;
    while (k >= 0 && s.h32[H32.LIST + k] === NIL) k--;
    let best = 0;
    if (k >= 0) {
      for (let x = s.h32[H32.LIST + k], n = 0; x !== NIL; x = s.kn[x], n++) {
        step(s, x, n, 'a free list');
        if (s.sz[x] > best) best = s.sz[x];
      }
    }
    return best;
  }

  /** The largest span: no request above it can ever be satisfied, spans never coalesce. */
  limit(): number {
    const root = this.s.h32[H32.ROOT];
    return root === NIL ? 0 : this.s.mx[root];
  }

  // ---- free lists and bitmap ----

  /** The lowest non-empty list ≥ k, or −1 (vmem's lowbit(P2ALIGN(freemap, 2^k)) − 1). */
  private lowestList(k: number): number {
    const h32 = this.s.h32;
    if (k < 32) {
      const m = h32[H32.FREEMAP0] & (-1 << k);
      if (m !== 0) return 31 - Math.clz32(m & -m);
      k = 32;
    }
    if (k >= LISTS) return -1;
    const m = h32[H32.FREEMAP1] & (-1 << (k - 32));
    return m === 0 ? -1 : 63 - Math.clz32(m & -m);
  }

  private setBit(k: number, on: boolean): void {
    const s = this.s;
    const w = k < 32 ? H32.FREEMAP0 : H32.FREEMAP1;
    const bit = 1 << (k & 31);
    s.w32(s.h32, w, on ? s.h32[w] | bit : s.h32[w] & ~bit);
  }

  private listInsert(x: number): void {
    const s = this.s;
    const k = highbit(s.sz[x]) - 1;
    const head = s.h32[H32.LIST + k];
    s.w32(s.ht, x, FREE);
    s.w32(s.kn, x, head);
    s.w32(s.kp, x, NIL);
    if (head !== NIL) s.w32(s.kp, head, x);
    else this.setBit(k, true);
    s.w32(s.h32, H32.LIST + k, x);
    s.w64(s.h64, H64.RANGES, s.h64[H64.RANGES] + 1);
  }

  private listDelete(x: number): void {
    const s = this.s;
    const k = highbit(s.sz[x]) - 1;
    const n = s.kn[x];
    const p = s.kp[x];
    if (p !== NIL) s.w32(s.kn, p, n);
    else s.w32(s.h32, H32.LIST + k, n);
    if (n !== NIL) s.w32(s.kp, n, p);
    if (p === NIL && n === NIL) this.setBit(k, false);
    s.w64(s.h64, H64.RANGES, s.h64[H64.RANGES] - 1);
  }

  // ---- address chains ----

  private setSegment(x: number, lo: number, size: number, tag: number): void {
    const s = this.s;
    s.w64(s.lo, x, lo);
    s.w64(s.sz, x, size);
    s.w32(s.ht, x, tag);
  }

  private linkAfter(x: number, p: number): void {
    const s = this.s;
    const n = s.an[p];
    s.w32(s.ap, x, p);
    s.w32(s.an, x, n);
    s.w32(s.an, p, x);
    if (n !== NIL) s.w32(s.ap, n, x);
  }

  private linkBefore(x: number, n: number): void {
    this.linkAfter(x, this.s.ap[n]);
  }

  private unlinkSegment(x: number): void {
    const s = this.s;
    const p = s.ap[x];
    const n = s.an[x];
    s.w32(s.an, p, n);
    if (n !== NIL) s.w32(s.ap, n, p);
    s.release(x);
  }
}
