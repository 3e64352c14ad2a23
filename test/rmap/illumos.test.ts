// illumos policy: SPEC C.7 row by row, the illumos column of C.8 and C.4, spans, LIFO lists, fixed stores.
import { describe, expect, it } from 'vitest';
import { ResourceMap, ResourceMapPanic, RmapStore, rmalloc, rmallocmap, rmfree, rmfreemap } from '../../lib/rmap';
import type { ResourceMapWarning } from '../../lib/rmap';
import { panicOf } from './same';

const pairs = (mp: ResourceMap) => mp.freeRanges().map((r) => [r.index, r.size]);

function illumos(warnings: [string, ResourceMapWarning][] = [], store?: RmapStore) {
  return rmallocmap(0, { policy: 'illumos', onWarning: (m, w) => warnings.push([m, w]), store });
}

describe('SPEC C.7 worked difference (one span [1,101))', () => {
  it('matches the illumos column row by row, and classic the classic column', () => {
    const il = illumos();
    const cl = rmallocmap(8);
    rmfree(il, 100, 1);
    rmfree(cl, 100, 1);
    const rows: [number, number, number, number[][], number[][]][] = [
      // size, classic return, illumos return, classic list, illumos free segments
      [3, 1, 1, [[4, 97]], [[4, 97]]],
      [17, 4, 4, [[21, 80]], [[21, 80]]],
    ];
    for (const [size, cRet, iRet, cList, iList] of rows) {
      expect(rmalloc(cl, size)).toBe(cRet);
      expect(rmalloc(il, size)).toBe(iRet);
      expect(pairs(cl)).toEqual(cList);
      expect(pairs(il)).toEqual(iList);
    }
    rmfree(cl, 3, 1);
    rmfree(il, 3, 1);
    expect(pairs(cl)).toEqual([[1, 3], [21, 80]]);
    expect(pairs(il)).toEqual([[1, 3], [21, 80]]); // [1,4) on list 2..3, [21,101) on list 64..127
    expect(rmalloc(cl, 3)).toBe(1); // c: lowest index that fits
    expect(rmalloc(il, 3)).toBe(21); // c: only lists holding ≥ 4 are searched first
    expect(pairs(cl)).toEqual([[21, 80]]);
    expect(pairs(il)).toEqual([[1, 3], [24, 77]]);
    expect(rmalloc(cl, 2)).toBe(21); // d
    expect(rmalloc(il, 2)).toBe(1); // d: a power of two, list 2..3 qualifies
    expect(pairs(cl)).toEqual([[23, 78]]);
    expect(pairs(il)).toEqual([[3, 1], [24, 77]]);
  });

  it('1000 units come from the ≥ 1024 list, not the 512..1023 list (the vmem.c example)', () => {
    const il = illumos();
    rmfree(il, 1020, 1);
    rmfree(il, 2000, 10_000);
    expect(rmalloc(il, 1000)).toBe(10_000);
    const cl = rmallocmap(4);
    rmfree(cl, 1020, 1);
    rmfree(cl, 2000, 10_000);
    expect(rmalloc(cl, 1000)).toBe(1);
  });

  it('lists are LIFO; a non-power-of-two request with no larger list searches its own list front to back', () => {
    const il = illumos();
    rmfree(il, 5, 10);
    rmfree(il, 6, 20);
    rmfree(il, 7, 30); // all on list 4..7, newest first: [30,37) [20,26) [10,15)
    expect(rmalloc(il, 4)).toBe(30); // power of two: head of list 4..7
    expect(rmalloc(il, 5)).toBe(20); // own list: [20,26) is the first member that fits
    expect(rmalloc(il, 5)).toBe(10);
    expect(rmalloc(il, 5)).toBe(0);
    expect(pairs(il)).toEqual([[25, 1], [34, 3]]);
    expect(il.stats()).toMatchObject({ allocs: 3, failures: 1 });
  });

  it('spans never coalesce: adjacent rmfrees make two spans an allocation cannot straddle', () => {
    const il = illumos();
    rmfree(il, 50, 1);
    rmfree(il, 50, 51);
    expect(pairs(il)).toEqual([[1, 50], [51, 50]]);
    expect(rmalloc(il, 60)).toBe(0);
    expect(il.largestFree).toBe(50);
    expect(rmalloc(il, 50)).not.toBe(0);
    expect(il.slots).toBe(Infinity);
    expect(il.slotsFree).toBe(Infinity);
  });
});

describe('SPEC C.8 overflow table, illumos column (mapsize ignored)', () => {
  it('keeps every range: [1,11) [21,31) [41,101), then [1,31) [41,101)', () => {
    const w: [string, ResourceMapWarning][] = [];
    const il = rmallocmap(2, { policy: 'illumos', onWarning: (m, x) => w.push([m, x]) });
    rmfree(il, 100, 1);
    expect([1, 11, 21, 31].map(() => rmalloc(il, 10))).toEqual([1, 11, 21, 31]);
    expect(pairs(il)).toEqual([[41, 60]]);
    rmfree(il, 10, 1);
    expect(pairs(il)).toEqual([[1, 10], [41, 60]]);
    rmfree(il, 10, 21);
    expect(pairs(il)).toEqual([[1, 10], [21, 10], [41, 60]]);
    rmfree(il, 10, 11);
    expect(pairs(il)).toEqual([[1, 30], [41, 60]]);
    expect(w).toEqual([]);
    expect(il.stats()).toMatchObject({ overflows: 0, allocatedUnits: 10 });
  });
});

describe('SPEC C.4 panics (illumos column) leave the map unchanged', () => {
  function setup() {
    const il = illumos();
    rmfree(il, 100, 1);
    expect(rmalloc(il, 10)).toBe(1);
    expect(rmalloc(il, 10)).toBe(11);
    return il;
  }
  const cases: [string, (il: ResourceMap) => unknown, string, string][] = [
    ['rmalloc(0)', (il) => rmalloc(il, 0), 'ERR_DEVMAP_RMAP_ZERO_SIZE', 'vmem_xalloc(): size == 0'],
    ['rmfree(0, i) inside a span, no allocation at i', (il) => rmfree(il, 0, 50), 'ERR_DEVMAP_RMAP_BAD_FREE', 'vmem_hash_delete(rmap, 32, 0): bad free'],
    ['rmfree(0, i) at an allocation', (il) => rmfree(il, 0, 11), 'ERR_DEVMAP_RMAP_WRONG_SIZE', 'vmem_hash_delete(rmap, b, 0): wrong size (expect 10)'],
    ['rmfree(0, i) outside every span', (il) => rmfree(il, 0, 500), 'ERR_DEVMAP_RMAP_ZERO_SIZE', 'vmem_add(rmap, 0x1f4, 0): bad arguments'],
    ['rmfree(n, 0)', (il) => rmfree(il, 5, 0), 'ERR_DEVMAP_RMAP_ZERO_INDEX', 'vmem_add(rmap, 0x0, 5): bad arguments'],
    ['double free of free space', (il) => rmfree(il, 10, 21), 'ERR_DEVMAP_RMAP_BAD_FREE', 'vmem_hash_delete(rmap, 15, 10): bad free'],
    ['partial return', (il) => rmfree(il, 5, 1), 'ERR_DEVMAP_RMAP_WRONG_SIZE', 'vmem_hash_delete(rmap, 1, 5): wrong size (expect 10)'],
    ['return from the middle of an allocation', (il) => rmfree(il, 5, 6), 'ERR_DEVMAP_RMAP_BAD_FREE', 'vmem_hash_delete(rmap, 6, 5): bad free'],
    ['a range straddling the end of a span (devmap refuses; illumos corrupts)', (il) => rmfree(il, 10, 95), 'ERR_DEVMAP_RMAP_OVERLAP', 'vmem_add(rmap, 0x5f, 10): range overlaps an existing span'],
  ];
  for (const [what, call, code, message] of cases) {
    it(what, () => {
      const il = setup();
      const before = { list: pairs(il), units: il.freeUnits, stats: { ...il.stats(), panics: 0 } };
      const p = panicOf(() => call(il));
      expect([p.code, p.message]).toEqual([code, message]);
      expect({ list: pairs(il), units: il.freeUnits, stats: { ...il.stats(), panics: 0 } }).toEqual(before);
      expect(il.stats().panics).toBe(1);
    });
  }

  it('new space outside every span becomes a span, even next to one', () => {
    const il = setup();
    rmfree(il, 10, 101);
    expect(pairs(il)).toEqual([[21, 80], [101, 10]]);
    rmfree(il, 10, 1);
    expect(pairs(il)).toEqual([[1, 10], [21, 80], [101, 10]]);
  });

  it('rmfreemap with allocations outstanding warns as vmem_destroy does', () => {
    const w: [string, ResourceMapWarning][] = [];
    const il = illumos(w);
    rmfree(il, 100, 1);
    rmalloc(il, 7);
    rmfreemap(il);
    expect(w).toEqual([["vmem_destroy('rmap'): leaked 7 bytes", { code: 'DEVMAP_RMAP_LEAKED', map: 'rmap', index: 0, size: 7 }]]);
  });
});

describe('fixed stores (a map inside a caller-supplied buffer)', () => {
  it('illumos: rmalloc returns 0 and rmfree warns "cannot add segment" when the pool is full', () => {
    const w: [string, ResourceMapWarning][] = [];
    const buffer = new SharedArrayBuffer(RmapStore.bytesFor('illumos', 4) + 64);
    const store = RmapStore.fixed('illumos', buffer, 64);
    expect(store.capacity).toBe(4);
    const il = illumos(w, store);
    rmfree(il, 100, 1); // span + segment
    expect(rmalloc(il, 10)).toBe(1);
    expect(rmalloc(il, 10)).toBe(11);
    expect(rmalloc(il, 10)).toBe(0); // would need a fifth node
    expect(rmalloc(il, 80)).toBe(21); // an exact fit needs no new node
    rmfree(il, 10, 1000);
    expect(w).toEqual([['rmfree(rmap, 10, 1000): cannot add segment', { code: 'DEVMAP_RMAP_NO_SEGMENT', map: 'rmap', index: 1000, size: 10 }]]);
    expect(il.stats()).toMatchObject({ failures: 1, overflows: 1, lostUnits: 10 });
    rmfree(il, 10, 1);
    rmfree(il, 80, 21);
    expect(pairs(il)).toEqual([[1, 10], [21, 80]]);
  });

  it('classic: the store must hold mapsize ranges; a store serves one map; policies must match', () => {
    const store = RmapStore.fixed('classic', new ArrayBuffer(RmapStore.bytesFor('classic', 3)));
    expect(() => rmallocmap(4, { store })).toThrow(/room for 4 ranges/);
    expect(() => rmallocmap(3, { store, policy: 'illumos' })).toThrow(/made for the illumos policy/);
    const lost: string[] = [];
    const mp = rmallocmap(3, { store, onWarning: (m) => lost.push(m) });
    for (const i of [1, 11, 21, 31]) rmfree(mp, 5, i);
    expect(pairs(mp)).toEqual([[1, 5], [11, 5], [31, 5]]);
    expect(lost).toEqual(['rmallocmap: rmap overflow, lost [21, 26]']);
    expect(() => rmallocmap(3, { store })).toThrow(/a store no map has used yet/);
    expect(() => RmapStore.fixed('classic', new ArrayBuffer(16))).toThrow(RangeError);
    expect(() => RmapStore.fixed('classic', new ArrayBuffer(4096), 3)).toThrow(/multiple of 8/);
  });
});
