/*
 * checkStore(): the whole structure of a store verified, as fsck verifies a file system — for a store that
 * another process wrote (a shared segment), before this process trusts it.
 *
 * The engines keep the invariants of map.ts's essay (3); they never verify them, because in process nothing
 * else writes the store. A shared segment can hold anything: a peer with a stray write, a flipped bit, a
 * hostile process of the same user. The engines' walks are bounded (store.ts brokenLinks), so a broken
 * store costs an error, not a hang; this check goes further and finds, in O(capacity) and without following
 * any link twice, every break of the invariants the engines rely on to stay in bounds and to hand out no
 * unit twice: node numbers inside the pool, trees without cycles or shared nodes, keys in order, ranges
 * disjoint, chains that tile their span, lists and hash chains that hold what their tags say, counters that
 * match what the walk counted. It reads only, and returns the first problem found (null: none).
 */
import { H32, H64, LISTS, NIL, type RmapStore } from './store';
import { highbit } from './vmem';

const FREE = -1; // vmem.ts segment tags
const ALLOC = -2;
const MAX_DEPTH = 96; // tree.ts

const isUnits = (v: number) => Number.isSafeInteger(v) && v >= 1;

/** The first break of the store's invariants, described; null when the structure holds. */
export function checkStore(s: RmapStore): string | null {
  const n = s.lo.length;
  const h32 = s.h32;
  const inPool = (x: number) => x >= 0 && x < n;
  if (h32[H32.CAPACITY] !== n) return `capacity ${h32[H32.CAPACITY]} instead of ${n}`;
  const next = h32[H32.NEXT_NODE];
  if (!(next >= 0 && next <= n)) return `next-node counter ${next} outside 0..${n}`;
  if (!(h32[H32.STATE] >= 0 && h32[H32.STATE] <= 2)) return `state ${h32[H32.STATE]}`;
  const seen = new Uint8Array(n);
  const used = (x: number) => x < next; // nodes at or above NEXT_NODE were never handed out

  // The tree (classic: free ranges; illumos: spans), in key order, without recursion.
  const root = h32[H32.ROOT];
  const tree: number[] = [];
  const stack: number[] = [];
  for (let t = root; t !== NIL || stack.length > 0; ) {
    while (t !== NIL) {
      if (!inPool(t) || !used(t)) return `tree node ${t} outside the pool`;
      if (seen[t]) return `tree node ${t} reached twice (a cycle or a shared subtree)`;
      if (stack.length > MAX_DEPTH) return 'the tree is deeper than any AVL tree';
      seen[t] = 1;
      stack.push(t);
      t = s.lt[t];
    }
    t = stack.pop()!;
    tree.push(t);
    t = s.rt[t];
  }
  let units = 0;
  for (let i = 0; i < tree.length; i++) {
    const x = tree[i];
    if (!isUnits(s.lo[x]) || !isUnits(s.sz[x]) || !Number.isSafeInteger(s.lo[x] + s.sz[x])) return `tree node ${x} holds [${s.lo[x]}, +${s.sz[x]})`;
    if (i > 0) {
      const p = tree[i - 1];
      const gap = s.lo[x] - (s.lo[p] + s.sz[p]);
      // Classic free ranges never touch (they would have coalesced); illumos spans may.
      if (gap < 0 || (s.policy === 'classic' && gap === 0)) return `tree nodes ${p} and ${x} overlap or are out of order`;
    }
    units += s.sz[x];
  }
  let nodes = tree.length;

  if (s.policy === 'classic') {
    if (tree.length !== s.h64[H64.RANGES]) return `${tree.length} free ranges, the header counts ${s.h64[H64.RANGES]}`;
    if (units !== s.h64[H64.FREE_UNITS]) return `${units} free units, the header counts ${s.h64[H64.FREE_UNITS]}`;
    if (s.h64[H64.RANGES] + s.h64[H64.FREE_SLOTS] !== s.h64[H64.MAPSIZE]) return 'ranges + free slots differ from mapsize';
  } else {
    const problem = checkSegments(s, tree, seen, used);
    if (typeof problem === 'string') return problem;
    nodes += problem;
  }

  // The released nodes, chained through lt[].
  let released = 0;
  for (let x = h32[H32.FREE_NODE]; x !== NIL; x = s.lt[x]) {
    if (!inPool(x) || !used(x)) return `released node ${x} outside the pool`;
    if (seen[x]) return `released node ${x} is also in use, or listed twice`;
    seen[x] = 1;
    released++;
  }
  if (h32[H32.NODES] !== nodes) return `${nodes} nodes in use, the header counts ${h32[H32.NODES]}`;
  if (nodes + released !== next) return `${next - nodes - released} nodes neither in use nor released`;
  return null;
}

/** illumos: each span's segment chain, the free lists, the bitmap and the hash. Returns the segment count. */
function checkSegments(s: RmapStore, spans: number[], seen: Uint8Array, used: (x: number) => boolean): number | string {
  const n = s.lo.length;
  const inPool = (x: number) => x >= 0 && x < n;
  const onList = new Uint8Array(n); // 1: a free segment of some chain; 2: found on its free list
  const hashed = new Uint8Array(n); // 1: an allocated segment; 2: found in the hash
  let segments = 0;
  let free = 0;
  let freeUnits = 0;
  let allocatedUnits = 0;
  let allocated = 0;
  for (const span of spans) {
    if (s.ht[span] < 1) return `span ${span} carries a segment tag`;
    let at = s.lo[span];
    let prev = span;
    for (let x = s.an[span]; x !== NIL; x = s.an[x]) {
      if (!inPool(x) || !used(x)) return `segment ${x} of span ${span} outside the pool`;
      if (seen[x]) return `segment ${x} reached twice`;
      seen[x] = 1;
      segments++;
      if (s.ap[x] !== prev) return `segment ${x}: its back link is ${s.ap[x]}, not ${prev}`;
      if (s.lo[x] !== at || !isUnits(s.sz[x])) return `segment ${x} does not continue span ${span} at ${at}`;
      if (s.ht[x] === FREE) {
        if (prev !== span && s.ht[prev] === FREE) return `free segments ${prev} and ${x} are neighbours`;
        onList[x] = 1;
        free++;
        freeUnits += s.sz[x];
      } else if (s.ht[x] === ALLOC) {
        hashed[x] = 1;
        allocated++;
        allocatedUnits += s.sz[x];
      } else return `segment ${x} has tag ${s.ht[x]}`;
      at += s.sz[x];
      prev = x;
    }
    if (at !== s.lo[span] + s.sz[span]) return `the segments of span ${span} do not tile it`;
  }
  if (free !== s.h64[H64.RANGES]) return `${free} free segments, the header counts ${s.h64[H64.RANGES]}`;
  if (freeUnits !== s.h64[H64.FREE_UNITS]) return `${freeUnits} free units, the header counts ${s.h64[H64.FREE_UNITS]}`;
  if (allocatedUnits !== s.h64[H64.ALLOCATED]) return `${allocatedUnits} allocated units, the header counts ${s.h64[H64.ALLOCATED]}`;

  let listed = 0;
  for (let k = 0; k < LISTS; k++) {
    const head = s.h32[H32.LIST + k];
    const word = k < 32 ? s.h32[H32.FREEMAP0] : s.h32[H32.FREEMAP1];
    if (((word >>> (k & 31)) & 1) !== (head === NIL ? 0 : 1)) return `free-list bitmap bit ${k} disagrees with its list`;
    let prev = NIL;
    for (let x = head; x !== NIL; x = s.kn[x]) {
      if (!inPool(x) || onList[x] !== 1) return `free list ${k} holds ${x}, not a free segment (or holds it twice)`;
      if (highbit(s.sz[x]) - 1 !== k) return `free segment ${x} of size ${s.sz[x]} is on list ${k}`;
      if (s.kp[x] !== prev) return `free segment ${x}: its back link is ${s.kp[x]}, not ${prev}`;
      onList[x] = 2;
      listed++;
      prev = x;
    }
  }
  if (listed !== free) return `${free - listed} free segments on no free list`;

  let found = 0;
  const bits = s.h32[H32.BUCKET_BITS];
  if (s.buckets.length !== 2 ** bits) return `hash of ${s.buckets.length} buckets, the header says 2^${bits}`;
  for (let b = 0; b < s.buckets.length; b++) {
    for (let x = s.buckets[b]; x !== NIL; x = s.hn[x]) {
      if (!inPool(x) || hashed[x] !== 1) return `hash bucket ${b} holds ${x}, not an allocated segment (or holds it twice)`;
      hashed[x] = 2;
      found++;
    }
  }
  if (found !== allocated) return `${allocated - found} allocated segments missing from the hash`;
  return segments;
}
