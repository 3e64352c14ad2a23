// Property tests: long random sequences of rmalloc / rmfree / rmalloc_wait / aborts (with overflows and
// panics) against the plain references of test/rmap/reference.ts — same returns, same panics, same lost
// ranges, same free list after every step, same waiter outcomes; plus the engines' own invariants.
// FUZZ_RUNS=n raises the number of sequences per configuration (default keeps the suite fast).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ResourceMap, ResourceMapPanic, rmalloc, rmalloc_wait, rmallocmap, rmfree } from '../../lib/rmap';
import { H32, H64, LISTS, NIL, RmapStore } from '../../lib/rmap/store';
import { DIRTY } from '../../lib/rmap/tree';
import { ClassicRef, IllumosRef, RefPanic, WaitingRef, highbit, type RefMap } from './reference';
import { same } from './same';

const RUNS = Number(process.env.FUZZ_RUNS ?? 40);

type Op =
  | { t: 'alloc'; size: number }
  | { t: 'free'; size: number; index: number }
  | { t: 'back'; pick: number; part: boolean }
  | { t: 'wait'; size: number }
  | { t: 'abort'; pick: number }
  | { t: 'far'; size: number; k: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 40 }) }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('free' as const), size: fc.integer({ min: 0, max: 30 }), index: fc.integer({ min: 0, max: 300 }) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('back' as const), pick: fc.nat(), part: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('wait' as const), size: fc.integer({ min: 1, max: 60 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('abort' as const), pick: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('far' as const), size: fc.integer({ min: 1, max: 1e6 }), k: fc.integer({ min: 0, max: 50 }) }), weight: 1 },
);

interface Config {
  label: string;
  make: () => { mp: ResourceMap; ref: RefMap };
  fifo: boolean;
}

const configs: Config[] = [];
for (const overflow of ['solaris', 'bsd', 'svr4'] as const) {
  for (const mapsize of [1, 3, 8, 64]) {
    configs.push({
      label: `classic/${overflow} mapsize ${mapsize}`,
      fifo: mapsize === 3,
      make: () => ({
        mp: rmallocmap(mapsize, { overflow, onWarning: () => undefined, fifo: mapsize === 3 }),
        ref: new ClassicRef(mapsize, overflow),
      }),
    });
  }
}
for (const fifo of [false, true]) {
  configs.push({
    label: `illumos${fifo ? ' fifo' : ''}`,
    fifo,
    make: () => ({ mp: rmallocmap(0, { policy: 'illumos', onWarning: () => undefined, fifo }), ref: new IllumosRef() }),
  });
}


async function run(config: Config, ops: Op[]): Promise<void> {
  const { mp, ref: inner } = config.make();
  const ref = new WaitingRef(inner, config.fifo);
  const outstanding: [number, number][] = []; // allocations handed out (engine == reference, checked)
  const waits = new Map<number, { controller: AbortController; outcome: unknown; value?: number; aborted?: boolean }>();
  let nextId = 0;
  const claimGrants = () => {
    for (const [id, index] of ref.granted) {
      const w = waits.get(id)!;
      if (w.value === undefined) {
        w.value = index;
        outstanding.push([index, waitSize.get(id)!]);
      }
    }
  };
  const waitSize = new Map<number, number>();
  for (const op of ops) {
    switch (op.t) {
      case 'alloc': {
        const r = same(() => rmalloc(mp, op.size), () => inner.alloc(op.size));
        if (r.ok && r.value !== 0) outstanding.push([r.value, op.size]);
        break;
      }
      case 'free':
        same(() => rmfree(mp, op.size, op.index), () => void ref.rmfree(op.size, op.index));
        break;
      case 'far':
        same(() => rmfree(mp, op.size, 2 ** 52 + op.k * 1e6), () => void ref.rmfree(op.size, 2 ** 52 + op.k * 1e6));
        break;
      case 'back': {
        if (outstanding.length === 0) break;
        const i = op.pick % outstanding.length;
        const [index, size] = outstanding[i];
        const give = op.part && size > 1 ? Math.floor(size / 2) : size;
        const r = same(() => rmfree(mp, give, index), () => void ref.rmfree(give, index));
        if (r.ok) {
          if (give === size) outstanding.splice(i, 1);
          else outstanding[i] = [index + give, size - give];
        }
        break;
      }
      case 'wait': {
        const id = nextId++;
        const controller = new AbortController();
        const w = { controller, outcome: 'pending' as unknown };
        rmalloc_wait(mp, op.size, { signal: controller.signal }).then(
          (v) => (w.outcome = v),
          (e: { code: string }) => (w.outcome = e.code),
        );
        const now = ref.wait(id, op.size);
        waitSize.set(id, op.size);
        waits.set(id, w);
        if (now !== undefined) {
          ref.granted.set(id, now);
        }
        break;
      }
      case 'abort': {
        const pending = ref.waiters;
        if (pending.length === 0) break;
        const { id } = pending[op.pick % pending.length];
        waits.get(id)!.aborted = true;
        waits.get(id)!.controller.abort();
        ref.abort(id);
        break;
      }
    }
    claimGrants();
    const ranges = inner.ranges();
    expect(mp.freeRanges()).toEqual(ranges);
    if (op.t === 'alloc' && ranges.length % 3 === 0) expect(mp.largestFree).toBe(Math.max(0, ...ranges.map((r) => r.size)));
    expect(mp.slotsFree).toBe(inner.slotsFree);
    expect(mp.waiting).toBe(ref.waiters.length);
    const bad = invariantViolation(mp);
    if (bad !== undefined) expect.fail(bad);
  }
  // Every waiter settled as the reference says: granted the same index, aborted, or still pending.
  await new Promise((r) => setImmediate(r));
  for (const [id, w] of waits) expect(w.outcome).toBe(ref.granted.get(id) ?? (w.aborted ? 'ABORT_ERR' : 'pending'));
}

/** The engines' own invariants (map.ts essay §3), read straight from the store; returns the first violation. */
function invariantViolation(mp: ResourceMap): string | undefined {
  const s: RmapStore = mp.store;
  let units = 0;
  for (const r of mp.freeRanges()) units += r.size;
  if (s.h64[H64.FREE_UNITS] !== units) return `free units ${s.h64[H64.FREE_UNITS]} != ${units}`;
  // AVL: order, balance, heights, subtree maxima (classic free ranges; illumos spans). ht packs the height
  // and a DIRTY bit (tree.ts): a clean node's mx is exact, a dirty node's an upper bound; a dirty node's
  // parent is dirty; mx never grows from parent to child.
  let bad: string | undefined;
  const visit = (t: number, lo: number, hi: number, parentMx: number, parentDirty: boolean): [number, number] => {
    if (t === NIL) return [0, 0];
    const dirty = (s.ht[t] & DIRTY) !== 0;
    const height = s.ht[t] & 0xff;
    if (!(s.lo[t] > lo && s.lo[t] < hi)) bad ??= `node ${t} out of order`;
    if (dirty && !parentDirty) bad ??= `node ${t} dirty under a clean parent`;
    if (s.mx[t] > parentMx) bad ??= `node ${t} mx above its parent's`;
    const [hl, ml] = visit(s.lt[t], lo, s.lo[t], s.mx[t], dirty);
    const [hr, mr] = visit(s.rt[t], s.lo[t], hi, s.mx[t], dirty);
    if (Math.abs(hl - hr) > 1) bad ??= `node ${t} unbalanced`;
    if (height !== Math.max(hl, hr) + 1) bad ??= `node ${t} height`;
    const exact = Math.max(s.sz[t], ml, mr);
    if (dirty ? s.mx[t] < exact : s.mx[t] !== exact) bad ??= `node ${t} max ${s.mx[t]} (true ${exact}, dirty ${dirty})`;
    return [height, exact];
  };
  visit(s.h32[H32.ROOT], -Infinity, Infinity, Infinity, true);
  if (mp.policy === 'illumos') {
    for (let k = 0; k < LISTS; k++) {
      const bit = k < 32 ? (s.h32[H32.FREEMAP0] >>> k) & 1 : (s.h32[H32.FREEMAP1] >>> (k - 32)) & 1;
      if (bit !== (s.h32[H32.LIST + k] === NIL ? 0 : 1)) bad ??= `freemap bit ${k}`;
      for (let x = s.h32[H32.LIST + k]; x !== NIL; x = s.kn[x]) if (highbit(s.sz[x]) - 1 !== k) bad ??= `segment ${x} on list ${k}`;
    }
  }
  return bad;
}

/** Many small allocations and returns over a large resource: hundreds of free ranges, deep trees. */
const deepArb: fc.Arbitrary<Op[]> = fc.array(
  fc.oneof(
    { arbitrary: fc.record({ t: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 6 }) }), weight: 5 },
    { arbitrary: fc.record({ t: fc.constant('back' as const), pick: fc.nat(), part: fc.boolean() }), weight: 4 },
    { arbitrary: fc.record({ t: fc.constant('alloc' as const), size: fc.integer({ min: 7, max: 200 }) }), weight: 1 },
    { arbitrary: fc.record({ t: fc.constant('wait' as const), size: fc.integer({ min: 1, max: 300 }) }), weight: 1 },
  ),
  { minLength: 1500, maxLength: 2500 },
).map((ops) => [{ t: 'free' as const, size: 5000, index: 1 }, ...ops]);

describe('engines match the historical algorithms step by step', () => {
  for (const config of configs) {
    it(config.label, async () => {
      await fc.assert(fc.asyncProperty(fc.array(opArb, { maxLength: 120 }), (ops) => run(config, ops)), { numRuns: RUNS });
    });
  }

  const deep: Config[] = [
    { label: 'classic/solaris mapsize 400', fifo: false, make: () => ({ mp: rmallocmap(400, { onWarning: () => undefined }), ref: new ClassicRef(400) }) },
    { label: 'classic/bsd mapsize 100', fifo: false, make: () => ({ mp: rmallocmap(100, { overflow: 'bsd', onWarning: () => undefined }), ref: new ClassicRef(100, 'bsd') }) },
    { label: 'illumos', fifo: false, make: () => ({ mp: rmallocmap(0, { policy: 'illumos' }), ref: new IllumosRef() }) },
  ];
  for (const config of deep) {
    it(`long sequences, deep trees: ${config.label}`, async () => {
      await fc.assert(fc.asyncProperty(deepArb, (ops) => run(config, ops)), { numRuns: Math.max(2, RUNS >> 4) });
    });
  }
});
