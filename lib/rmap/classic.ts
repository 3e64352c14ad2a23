/*
 * The classic engine: first fit by lowest index over free ranges, mapsize slots, coalescing with both
 * neighbours, and a per-map overflow rule (SPEC C.2, C.3, C.4 Solaris ≤ 7 column).
 *
 * The free ranges are the nodes of an AVL tree keyed by start, each node knowing the largest size below it
 * (tree.ts). The historical array walk returns the LOWEST-index range with size ≥ request; the descent below
 * finds the same range: go left whenever the left subtree holds a fit (every range there has a lower index),
 * else take this node if it fits, else go right. Same answer, O(log n) instead of O(n).
 */
import { ResourceMapPanic } from './panic';
import { H32, H64, type RmapStore } from './store';
import { treeFloor, treeInsert, treeLast, treeRefresh, treeRemove } from './tree';

const NIL = -1; // store.ts NIL; a local constant keeps module-object loads out of the hot loops

export type OverflowRule = 'solaris' | 'bsd' | 'svr4';
export const OVERFLOW_RULES: readonly OverflowRule[] = ['solaris', 'bsd', 'svr4'];

/** A range an rmfree could not keep, and the historical log line that reports it. */
export interface Lost {
  index: number;
  size: number;
  message: string;
}

export class ClassicEngine {
  private readonly path = new Int32Array(96); // scratch: the search path of the last descent

  constructor(
    readonly s: RmapStore,
    readonly name: string,
  ) {}

  get rule(): OverflowRule {
    return OVERFLOW_RULES[this.s.h32[H32.OVERFLOW]];
  }

  /** First fit by lowest index (SPEC C.2 rmalloc); 0 when no range is large enough. size ≥ 1. */
  alloc(size: number): number {
    const s = this.s;
    const { lt, rt, sz, mx } = s;
    const root = s.h32[H32.ROOT];
    if (root === NIL || mx[root] < size) return 0;
    const path = this.path;
    let d = 0;
    let x = root;
    for (;;) {
      path[d++] = x;
      const l = lt[x];
      if (l !== NIL && mx[l] >= size) x = l;
      else if (sz[x] >= size) break;
      else x = rt[x];
    }
    const index = s.lo[x];
    const rest = sz[x] - size;
    if (rest === 0) {
      this.unlink(x); // C.2 step 3: the emptied entry goes, its slot comes back
    } else {
      s.w64(s.lo, x, index + size); // C.2 step 2: taken from the low end; order is preserved
      s.w64(sz, x, rest);
      this.pullPath(d - 1);
    }
    s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] - size);
    return index;
  }

  /**
   * Returns [index, index + size) to the map (SPEC C.2 rmfree). Panics "bad rmfree" (before any change) on
   * size 0, index 0 or any overlap with free space (C.4). Returns the range lost to an overflow, or null.
   */
  free(size: number, index: number): Lost | null {
    const s = this.s;
    if (size === 0) throw this.panic('ERR_DEVMAP_RMAP_ZERO_SIZE', size, index);
    if (index === 0) throw this.panic('ERR_DEVMAP_RMAP_ZERO_INDEX', size, index);
    const end = index + size;
    let lost: Lost | null = null;
    for (;;) {
      // One descent finds L (last range starting at or below index) and R (first range above it): both lie
      // on the search path for index, which is kept for the size updates below.
      const root = s.h32[H32.ROOT];
      const { lo, lt, rt } = s;
      const path = this.path;
      let d = 0;
      let L = NIL;
      let R = NIL;
      let dL = -1;
      let dR = -1;
      for (let x = root; x !== NIL; ) {
        path[d] = x;
        if (lo[x] <= index) {
          L = x;
          dL = d++;
          x = rt[x];
        } else {
          R = x;
          dR = d++;
          x = lt[x];
        }
      }
      // C.4: checking the two neighbours catches every overlap with free space.
      if (L !== NIL && s.lo[L] + s.sz[L] > index) throw this.panic('ERR_DEVMAP_RMAP_OVERLAP', size, index);
      if (R !== NIL && end > s.lo[R]) throw this.panic('ERR_DEVMAP_RMAP_OVERLAP', size, index);
      const joinL = L !== NIL && s.lo[L] + s.sz[L] === index;
      const joinR = R !== NIL && end === s.lo[R];
      if (joinL) {
        let grown = s.sz[L] + size;
        if (joinR) {
          grown += s.sz[R];
          this.unlink(R);
        }
        s.w64(s.sz, L, grown);
        if (joinR) treeRefresh(s, s.h32[H32.ROOT], s.lo[L]); // the tree changed shape: walk again
        else this.raisePath(dL, grown);
      } else if (joinR) {
        const grown = s.sz[R] + size;
        s.w64(s.lo, R, index); // moves down into the gap above L: order is preserved
        s.w64(s.sz, R, grown);
        this.raisePath(dR, grown);
      } else {
        if (s.h64[H64.FREE_SLOTS] === 0) {
          // C.3: no slot for a new range.
          const rule = this.rule;
          const last = treeLast(s, root);
          const prev = treeFloor(s, root, s.lo[last] - 1);
          if (rule === 'solaris') {
            // Discard the smaller of the last two ranges (tie: the last), log, retry the whole rmfree. With a
            // single range, that range is discarded (C.3 edge case). The retry cannot panic: the discarded
            // range was not adjacent to [index, end), so the neighbours left behind are not either.
            const victim = prev !== NIL && s.sz[prev] < s.sz[last] ? prev : last;
            lost = this.discard(victim, (a, n) => `${this.name}: rmap overflow, lost [${a}, ${a + n}]`);
            continue;
          }
          if (rule === 'svr4') {
            // The range being freed is dropped.
            this.extend(index, end);
            return { index, size, message: `rmfree map overflow ${this.name}.  Lost ${size} item(s) at ${index}` };
          }
          // bsd: 4.3BSD inserts, then drops the second-to-last entry of the now too long list. Computed
          // without the transient extra entry: that entry is the old last range if the new one lies above
          // it, the new range itself if it lies between the last two, and the old second-to-last otherwise.
          const message = (a: number, n: number) => `${this.name}: rmap ovflo, lost [${a},${a + n})`;
          if (index > s.lo[last]) lost = this.discard(last, message);
          else if (prev === NIL || index > s.lo[prev]) {
            this.extend(index, end);
            return { index, size, message: message(index, size) };
          } else lost = this.discard(prev, message);
        }
        this.insert(size, index);
      }
      s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] + size);
      this.extend(index, end);
      return lost;
    }
  }

  /** Calls fn for every free range in index order. */
  walk(fn: (index: number, size: number) => void): void {
    const s = this.s;
    const stack: number[] = [];
    let t = s.h32[H32.ROOT];
    while (t !== NIL || stack.length > 0) {
      while (t !== NIL) {
        stack.push(t);
        t = s.lt[t];
      }
      t = stack.pop()!;
      fn(s.lo[t], s.sz[t]);
      t = s.rt[t];
    }
  }

  largest(): number {
    const root = this.s.h32[H32.ROOT];
    return root === NIL ? 0 : this.s.mx[root];
  }

  /** The span of units ever given to the map: [low, high). No request above high − low can ever fit. */
  extent(): [number, number] {
    return [this.s.h64[H64.LOW], this.s.h64[H64.HIGH]];
  }

  /**
   * The size of path[from] changed in place: recompute mx from there to the root. Stops at the first node
   * whose mx does not change (no ancestor's can then change either).
   */
  private pullPath(from: number): void {
    const s = this.s;
    const { lt, rt, sz, mx } = s;
    const path = this.path;
    for (let i = from; i >= 0; i--) {
      const t = path[i];
      const l = lt[t];
      const r = rt[t];
      let m = sz[t];
      if (l !== NIL && mx[l] > m) m = mx[l];
      if (r !== NIL && mx[r] > m) m = mx[r];
      if (mx[t] === m) return;
      s.w64(mx, t, m);
    }
  }

  /** A node at path[to] grew to `size`: its mx and its ancestors' can only rise to it. */
  private raisePath(to: number, size: number): void {
    const s = this.s;
    const mx = s.mx;
    const path = this.path;
    for (let i = 0; i <= to; i++) if (mx[path[i]] < size) s.w64(mx, path[i], size);
  }

  private insert(size: number, index: number): void {
    const s = this.s;
    const x = s.alloc(); // never NIL: a classic store holds at least mapsize nodes
    s.w64(s.lo, x, index);
    s.w64(s.sz, x, size);
    s.w32(s.h32, H32.ROOT, treeInsert(s, s.h32[H32.ROOT], x));
    s.w64(s.h64, H64.FREE_SLOTS, s.h64[H64.FREE_SLOTS] - 1);
    s.w64(s.h64, H64.RANGES, s.h64[H64.RANGES] + 1);
  }

  private unlink(x: number): void {
    const s = this.s;
    s.w32(s.h32, H32.ROOT, treeRemove(s, s.h32[H32.ROOT], s.lo[x]));
    s.release(x);
    s.w64(s.h64, H64.FREE_SLOTS, s.h64[H64.FREE_SLOTS] + 1);
    s.w64(s.h64, H64.RANGES, s.h64[H64.RANGES] - 1);
  }

  private discard(x: number, message: (index: number, size: number) => string): Lost {
    const s = this.s;
    const lost = { index: s.lo[x], size: s.sz[x], message: message(s.lo[x], s.sz[x]) };
    s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] - lost.size);
    this.unlink(x);
    return lost;
  }

  private extend(index: number, end: number): void {
    const s = this.s;
    if (s.h64[H64.LOW] === 0 || index < s.h64[H64.LOW]) s.w64(s.h64, H64.LOW, index);
    if (end > s.h64[H64.HIGH]) s.w64(s.h64, H64.HIGH, end);
  }

  private panic(code: ResourceMapPanic['code'], size: number, index: number): ResourceMapPanic {
    return new ResourceMapPanic(code, 'bad rmfree', 'rmfree', size, index);
  }
}
