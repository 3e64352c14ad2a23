/*
 * An AVL tree of ranges inside an RmapStore, keyed by start (lo[]), each node carrying in mx[] the largest
 * size (sz[]) in its subtree. Keys are distinct integers. Heights stay within 1.44·log2(n), so every walk
 * below is logarithmic and the recursion shallow (< 64 levels for any pool an Int32 can index).
 *
 * The functions take the store and a subtree root and return the new subtree root; callers store roots in
 * the header through w32(). All writes go through the store's write primitives and are skipped when the
 * value does not change (fewer words for a later undo journal to record).
 */
import type { RmapStore } from './store';

const NIL = -1; // store.ts NIL; a local constant keeps module-object loads out of the hot loops

/** Recomputes mx[t] from sz[t] and the children; true when it changed. */
export function pullMax(s: RmapStore, t: number): boolean {
  const l = s.lt[t];
  const r = s.rt[t];
  let m = s.sz[t];
  if (l !== NIL && s.mx[l] > m) m = s.mx[l];
  if (r !== NIL && s.mx[r] > m) m = s.mx[r];
  if (s.mx[t] === m) return false;
  s.w64(s.mx, t, m);
  return true;
}

function height(s: RmapStore, t: number): number {
  return t === NIL ? 0 : s.ht[t];
}

function pull(s: RmapStore, t: number): void {
  const hl = height(s, s.lt[t]);
  const hr = height(s, s.rt[t]);
  const h = (hl > hr ? hl : hr) + 1;
  if (s.ht[t] !== h) s.w32(s.ht, t, h);
  pullMax(s, t);
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
export function treeInsert(s: RmapStore, t: number, x: number): number {
  if (t === NIL) {
    s.w32(s.lt, x, NIL);
    s.w32(s.rt, x, NIL);
    s.w32(s.ht, x, 1);
    s.w64(s.mx, x, s.sz[x]);
    return x;
  }
  if (s.lo[x] < s.lo[t]) setLeft(s, t, treeInsert(s, s.lt[t], x));
  else setRight(s, t, treeInsert(s, s.rt[t], x));
  return balance(s, t);
}

/** Removes the node whose key is `key` (it must be present); the node itself is not released. */
export function treeRemove(s: RmapStore, t: number, key: number): number {
  const k = s.lo[t];
  if (key < k) {
    setLeft(s, t, treeRemove(s, s.lt[t], key));
    return balance(s, t);
  }
  if (key > k) {
    setRight(s, t, treeRemove(s, s.rt[t], key));
    return balance(s, t);
  }
  const l = s.lt[t];
  const r = s.rt[t];
  if (l === NIL) return r;
  if (r === NIL) return l;
  let m = r;
  while (s.lt[m] !== NIL) m = s.lt[m];
  setRight(s, m, removeMin(s, r));
  setLeft(s, m, l);
  return balance(s, m);
}

function removeMin(s: RmapStore, t: number): number {
  const l = s.lt[t];
  if (l === NIL) return s.rt[t];
  setLeft(s, t, removeMin(s, l));
  return balance(s, t);
}

/** After sz[] of the node keyed `key` changed in place (or its lo[] moved without passing a neighbour). */
export function treeRefresh(s: RmapStore, t: number, key: number): void {
  const k = s.lo[t];
  if (key < k) treeRefresh(s, s.lt[t], key);
  else if (key > k) treeRefresh(s, s.rt[t], key);
  pullMax(s, t);
}

/** The node with the largest key ≤ key, or NIL. */
export function treeFloor(s: RmapStore, t: number, key: number): number {
  let best = NIL;
  while (t !== NIL) {
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
  while (t !== NIL) {
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
  while (s.rt[t] !== NIL) t = s.rt[t];
  return t;
}

/** Calls fn(node) for every node in key order. */
export function treeWalk(s: RmapStore, t: number, fn: (x: number) => void): void {
  const stack: number[] = [];
  while (t !== NIL || stack.length > 0) {
    while (t !== NIL) {
      stack.push(t);
      t = s.lt[t];
    }
    t = stack.pop()!;
    fn(t);
    t = s.rt[t];
  }
}
