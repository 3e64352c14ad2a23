/*
 * An AVL tree of ranges inside an RmapStore, keyed by start (lo[]), each node carrying in mx[] the largest
 * size (sz[]) in its subtree. Keys are distinct integers. Heights stay within 1.44·log2(n), so every walk
 * below is logarithmic and the recursion shallow (< 64 levels for any pool an Int32 can index).
 *
 * ht[] packs the AVL height (bits 0–7) and a DIRTY bit. A clean node's mx is exact. A dirty node's mx is an
 * upper bound: a size somewhere below it shrank and the maxima above it were left alone (classic.ts explains
 * why). Three invariants hold at all times:
 *   - a dirty node's parent is dirty (so a clean node's whole subtree is clean and its mx exact);
 *   - mx[parent] ≥ mx[child] (bounds included), so a walk up that finds mx ≥ v can stop;
 *   - mx[t] ≥ the true largest size in t's subtree.
 * pull() recomputes a node from its children and is clean exactly when both children are; treeClean() makes
 * a subtree exact again at the cost of its dirty nodes.
 *
 * The functions take the store and a subtree root and return the new subtree root; callers store roots in
 * the header through w32(). All writes go through the store's write primitives and are skipped when the
 * value does not change (fewer words for a later undo journal to record).
 */
import { brokenLinks, type RmapStore } from './store';

const NIL = -1; // store.ts NIL; a local constant keeps module-object loads out of the hot loops
/**
 * No AVL tree an Int32 can index is deeper than 1.44·log2(2^31) + 2 < 48 levels: a deeper recursion means
 * links that loop (a corrupt shared store, store.ts brokenLinks), and stops here.
 */
const MAX_DEPTH = 96;

/** t is a node of the pool and the recursion is not deeper than a tree can be; else the links are broken. */
function enter(s: RmapStore, t: number, depth: number): void {
  if (!(t >= 0 && t < s.lo.length) || depth > MAX_DEPTH) throw brokenLinks('the tree');
}

export const DIRTY = 0x100;
const HEIGHT = 0xff;

/** Marks t dirty (its mx may now be above the truth). */
export function markDirty(s: RmapStore, t: number): void {
  s.w32(s.ht, t, s.ht[t] | DIRTY);
}

function height(s: RmapStore, t: number): number {
  return t === NIL ? 0 : s.ht[t] & HEIGHT;
}

/** Recomputes t's height, mx and dirty bit from sz[t] and its children. */
function pull(s: RmapStore, t: number): void {
  const l = s.lt[t];
  const r = s.rt[t];
  const hl = height(s, l);
  const hr = height(s, r);
  let m = s.sz[t];
  let dirty = 0;
  if (l !== NIL) {
    if (s.mx[l] > m) m = s.mx[l];
    dirty |= s.ht[l] & DIRTY;
  }
  if (r !== NIL) {
    if (s.mx[r] > m) m = s.mx[r];
    dirty |= s.ht[r] & DIRTY;
  }
  const h = ((hl > hr ? hl : hr) + 1) | dirty;
  if (s.ht[t] !== h) s.w32(s.ht, t, h);
  if (s.mx[t] !== m) s.w64(s.mx, t, m);
}

/** Makes every dirty node in t's subtree clean and its mx exact; costs O(dirty nodes in the subtree). */
export function treeClean(s: RmapStore, t: number, depth = 0): void {
  if (t === NIL || (s.ht[t] & DIRTY) === 0) return;
  enter(s, t, depth);
  treeClean(s, s.lt[t], depth + 1);
  treeClean(s, s.rt[t], depth + 1);
  pull(s, t);
}

function setLeft(s: RmapStore, t: number, v: number): void {
  if (s.lt[t] !== v) s.w32(s.lt, t, v);
}

function setRight(s: RmapStore, t: number, v: number): void {
  if (s.rt[t] !== v) s.w32(s.rt, t, v);
}

function rotateRight(s: RmapStore, t: number): number {
  const l = s.lt[t];
  setLeft(s, t, s.rt[l]);
  setRight(s, l, t);
  pull(s, t);
  pull(s, l);
  return l;
}

function rotateLeft(s: RmapStore, t: number): number {
  const r = s.rt[t];
  setRight(s, t, s.lt[r]);
  setLeft(s, r, t);
  pull(s, t);
  pull(s, r);
  return r;
}

function balance(s: RmapStore, t: number): number {
  pull(s, t);
  const l = s.lt[t];
  const r = s.rt[t];
  const bf = height(s, l) - height(s, r);
  if (bf > 1) {
    if (height(s, s.lt[l]) < height(s, s.rt[l])) setLeft(s, t, rotateLeft(s, l));
    return rotateRight(s, t);
  }
  if (bf < -1) {
    if (height(s, s.rt[r]) < height(s, s.lt[r])) setRight(s, t, rotateRight(s, r));
    return rotateLeft(s, t);
  }
  return t;
}

/** Inserts node x (lo[x], sz[x] set; key not present). */
export function treeInsert(s: RmapStore, t: number, x: number, depth = 0): number {
  if (t === NIL) {
    s.w32(s.lt, x, NIL);
    s.w32(s.rt, x, NIL);
    s.w32(s.ht, x, 1);
    s.w64(s.mx, x, s.sz[x]);
    return x;
  }
  enter(s, t, depth);
  if (s.lo[x] < s.lo[t]) setLeft(s, t, treeInsert(s, s.lt[t], x, depth + 1));
  else setRight(s, t, treeInsert(s, s.rt[t], x, depth + 1));
  return balance(s, t);
}

/** Removes the node whose key is `key` (it must be present); the node itself is not released. */
export function treeRemove(s: RmapStore, t: number, key: number, depth = 0): number {
  enter(s, t, depth); // the key is present: the descent never reaches NIL
  const k = s.lo[t];
  if (key < k) {
    setLeft(s, t, treeRemove(s, s.lt[t], key, depth + 1));
    return balance(s, t);
  }
  if (key > k) {
    setRight(s, t, treeRemove(s, s.rt[t], key, depth + 1));
    return balance(s, t);
  }
  const l = s.lt[t];
  const r = s.rt[t];
  if (l === NIL) return r;
  if (r === NIL) return l;
  let m = r;
  for (let d = depth + 1; s.lt[m] !== NIL; d++) {
    enter(s, m, d);
    m = s.lt[m];
  }
  enter(s, m, depth);
  setRight(s, m, removeMin(s, r, depth + 1));
  setLeft(s, m, l);
  return balance(s, m);
}

function removeMin(s: RmapStore, t: number, depth: number): number {
  enter(s, t, depth);
  const l = s.lt[t];
  if (l === NIL) return s.rt[t];
  setLeft(s, t, removeMin(s, l, depth + 1));
  return balance(s, t);
}

/** After sz[] of the node keyed `key` grew in place: recompute the nodes on its path, bottom-up. */
export function treeRefresh(s: RmapStore, t: number, key: number, depth = 0): void {
  enter(s, t, depth);
  const k = s.lo[t];
  if (key < k) treeRefresh(s, s.lt[t], key, depth + 1);
  else if (key > k) treeRefresh(s, s.rt[t], key, depth + 1);
  pull(s, t);
}

/** The node with the largest key ≤ key, or NIL. */
export function treeFloor(s: RmapStore, t: number, key: number): number {
  let best = NIL;
  for (let d = 0; t !== NIL; d++) {
    enter(s, t, d);
    if (s.lo[t] <= key) {
      best = t;
      t = s.rt[t];
    } else t = s.lt[t];
  }
  return best;
}

/** The node with the smallest key > key, or NIL. */
export function treeAbove(s: RmapStore, t: number, key: number): number {
  let best = NIL;
  for (let d = 0; t !== NIL; d++) {
    enter(s, t, d);
    if (s.lo[t] > key) {
      best = t;
      t = s.lt[t];
    } else t = s.rt[t];
  }
  return best;
}

/** The node with the largest key, or NIL. */
export function treeLast(s: RmapStore, t: number): number {
  if (t === NIL) return NIL;
  for (let d = 0; s.rt[t] !== NIL; d++) {
    enter(s, t, d);
    t = s.rt[t];
  }
  enter(s, t, 0);
  return t;
}

/** Calls fn(node) for every node in key order. */
export function treeWalk(s: RmapStore, t: number, fn: (x: number) => void): void {
  const stack: number[] = [];
  let visits = s.lo.length; // a walk that visits more nodes than the pool holds is going round a loop
  while (t !== NIL || stack.length > 0) {
    while (t !== NIL) {
      enter(s, t, stack.length);
      if (--visits < 0) throw brokenLinks('the tree');
      stack.push(t);
      t = s.lt[t];
    }
    t = stack.pop()!;
    fn(t);
    t = s.rt[t];
  }
}
