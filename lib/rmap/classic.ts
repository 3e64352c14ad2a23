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
import { H32, H64, brokenLinks, type RmapStore } from './store';
import { DIRTY, markDirty, treeClean, treeFloor, treeInsert, treeLast, treeRefresh, treeRemove, treeWalk } from './tree';

const NIL = -1; // store.ts NIL; a local constant keeps module-object loads out of the hot loops
/** The search path's room: deeper than any AVL tree (tree.ts MAX_DEPTH); a longer descent means looping links. */
const PATH = 96;

export type OverflowRule = 'solaris' | 'bsd' | 'svr4';
export const OVERFLOW_RULES: readonly OverflowRule[] = ['solaris', 'bsd', 'svr4'];

/** A range an rmfree could not keep, and the historical log line that reports it. */
export interface Lost {
  index: number;
  size: number;
  message: string;
}

/** The historical log line of each overflow rule (SPEC C.3). */
function lostMessage(rule: OverflowRule, name: string, index: number, size: number): string {
  if (rule === 'solaris') return `${name}: rmap overflow, lost [${index}, ${index + size}]`;
  if (rule === 'bsd') return `${name}: rmap ovflo, lost [${index},${index + size})`;
  return `rmfree map overflow ${name}.  Lost ${size} item(s) at ${index}`;
}

export class ClassicEngine {
  private readonly path = new Int32Array(PATH); // scratch: the search path of the last descent
  private depth = 0; // scratch: the depth of the node search() found

  constructor(
    readonly s: RmapStore,
    readonly name: string,
  ) {}

  get rule(): OverflowRule {
    return OVERFLOW_RULES[this.s.h32[H32.OVERFLOW]];
  }

  /**
   * First fit by lowest index (SPEC C.2 rmalloc); 0 when no range is large enough. size ≥ 1.
   *
   * Shrinking a range does not walk its maxima up to the root: the node's own mx is fixed when its
   * children are exact, and its ancestors are only marked dirty, up to the first one already dirty (tree.ts).
   * A free that grows the range back then finds the ancestors' bounds still high and stops at once. The
   * search below treats a dirty bound as "maybe": a dirty left subtree whose bound admits the request is
   * searched, and if it holds no fit after all it is cleaned on the way out, so the same bound never
   * misleads twice. Every node a search cleans was dirtied by an earlier rmalloc, one per node and rmalloc
   * at most: O(log n) amortized per call. A single call after many shrinks can cost more.
   */
  alloc(size: number): number {
    const s = this.s;
    const { lt, rt, sz, mx, ht } = s;
    const root = s.h32[H32.ROOT];
    if (root === NIL || mx[root] < size) return 0;
    const path = this.path;
    let d = 0;
    let x = root;
    // Invariant: if any range fits, the lowest-index one is in x's subtree.
    const n = s.lo.length;
    for (;;) {
      if (x === NIL || mx[x] < size) return 0;
      if (!(x >= 0 && x < n) || d >= PATH) throw brokenLinks('the free-range tree');
      path[d] = x;
      const l = lt[x];
      if (l !== NIL && mx[l] >= size) {
        if ((ht[l] & DIRTY) === 0) {
          x = l; // exact: a fit is certain on the left
          d++;
          continue;
        }
        const found = this.search(l, size, d + 1);
        if (found !== NIL) {
          x = found;
          d = this.depth;
          break;
        }
      }
      if (sz[x] >= size) break;
      x = rt[x];
      d++;
    }
    const index = s.lo[x];
    const rest = sz[x] - size;
    if (rest === 0) {
      this.unlink(x); // C.2 step 3: the emptied entry goes, its slot comes back
    } else {
      s.w64(s.lo, x, index + size); // C.2 step 2: taken from the low end; order is preserved
      s.w64(sz, x, rest);
      if ((ht[x] & DIRTY) === 0) {
        const l = lt[x];
        const r = rt[x];
        let m = rest;
        if (l !== NIL && mx[l] > m) m = mx[l];
        if (r !== NIL && mx[r] > m) m = mx[r];
        if (m !== mx[x]) {
          s.w64(mx, x, m);
          for (let i = d - 1; i >= 0 && (ht[path[i]] & DIRTY) === 0; i--) markDirty(s, path[i]);
        }
      }
    }
    s.w64(s.h64, H64.FREE_UNITS, s.h64[H64.FREE_UNITS] - size);
    return index;
  }

  /**
   * First fit inside the subtree of the dirty node t, whose path position is `depth`. Returns the node (its
   * depth in this.depth, the path filled in) or NIL, in which case the subtree has been cleaned.
   */
  private search(t: number, size: number, depth: number): number {
    const s = this.s;
    if (t === NIL || s.mx[t] < size) return NIL;
    const n = s.lo.length;
    if (!(t >= 0 && t < n) || depth >= PATH) throw brokenLinks('the free-range tree');
    this.path[depth] = t;
    if ((s.ht[t] & DIRTY) === 0) {
      // Exact from here down, and mx[t] ≥ size: the fit is certain.
      for (;;) {
        const l = s.lt[t];
        if (l !== NIL && s.mx[l] >= size) t = l;
        else if (s.sz[t] >= size) break;
        else t = s.rt[t];
        if (!(t >= 0 && t < n) || depth + 1 >= PATH) throw brokenLinks('the free-range tree');
        this.path[++depth] = t;
      }
      this.depth = depth;
      return t;
    }
    let found = this.search(s.lt[t], size, depth + 1);
    if (found !== NIL) return found;
    if (s.sz[t] >= size) {
      this.path[depth] = t;
      this.depth = depth;
      return t;
    }
    found = this.search(s.rt[t], size, depth + 1);
    if (found !== NIL) return found;
    treeClean(s, t); // nothing fits here: make the bound exact (now below size)
    return NIL;
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
    // Each retry follows a discarded range (Solaris' rule): fewer retries than the pool has nodes.
    for (let retries = s.lo.length; ; retries--) {
      if (retries < 0) throw brokenLinks('the free-range tree');
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
        if (!(x >= 0 && x < lo.length) || d >= PATH) throw brokenLinks('the free-range tree');
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
            lost = this.discard(victim, 'solaris');
            continue;
          }
          if (rule === 'svr4') {
            // The range being freed is dropped.
            this.extend(index, end);
            return { index, size, message: lostMessage('svr4', this.name, index, size) };
          }
          // bsd: 4.3BSD inserts, then drops the second-to-last entry of the now too long list. Computed
          // without the transient extra entry: that entry is the old last range if the new one lies above
          // it, the new range itself if it lies between the last two, and the old second-to-last otherwise.
          if (index > s.lo[last]) lost = this.discard(last, 'bsd');
          else if (prev === NIL || index > s.lo[prev]) {
            this.extend(index, end);
            return { index, size, message: lostMessage('bsd', this.name, index, size) };
          } else lost = this.discard(prev, 'bsd');
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
    treeWalk(s, s.h32[H32.ROOT], (x) => fn(s.lo[x], s.sz[x]));
  }

  /** The largest free range: the root's mx once the tree is clean. */
  largest(): number {
    const root = this.s.h32[H32.ROOT];
    if (root === NIL) return 0;
    treeClean(this.s, root);
    return this.s.mx[root];
  }

  /** The span of units ever given to the map: [low, high). No request above high − low can ever fit. */
  extent(): [number, number] {
    return [this.s.h64[H64.LOW], this.s.h64[H64.HIGH]];
  }

  /**
   * The node at path[to] grew to `size`: it and its ancestors need mx ≥ size. Bottom-up, stopping at the
   * first node already there (an ancestor's mx is never below a descendant's).
   */
  private raisePath(to: number, size: number): void {
    const s = this.s;
    const mx = s.mx;
    const path = this.path;
    for (let i = to; i >= 0 && mx[path[i]] < size; i--) s.w64(mx, path[i], size);
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

  private discard(x: number, rule: OverflowRule): Lost {
    const s = this.s;
    const lost = { index: s.lo[x], size: s.sz[x], message: lostMessage(rule, this.name, s.lo[x], s.sz[x]) };
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
