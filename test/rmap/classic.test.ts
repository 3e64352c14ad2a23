// classic policy: SPEC C.8 row by row, the C.3 overflow table for every rule, the C.4 panics, argument errors.
import { describe, expect, it } from 'vitest';
import { ResourceMap, ResourceMapPanic, rmalloc, rmallocmap, rmallocmap_wait, rmfree, rmfreemap } from '../../lib/rmap';
import type { ResourceMapWarning } from '../../lib/rmap';
import { panicOf, playC8 } from './same';

const pairs = (mp: ResourceMap) => mp.freeRanges().map((r) => [r.index, r.size]);

function quiet(opts: Record<string, unknown> = {}) {
  const warnings: [string, ResourceMapWarning][] = [];
  return { warnings, opts: { onWarning: (m: string, w: ResourceMapWarning) => warnings.push([m, w]), ...opts } };
}

describe('SPEC C.8 worked example (rmallocmap(3), Solaris rules)', () => {
  it('matches every row: return, free list, free slots', () => {
    const mp = rmallocmap(3);
    playC8(mp);
    // Row 11: rmfree(3, 10) overlaps (9,27): panic "bad rmfree", map unchanged.
    const p = panicOf(() => rmfree(mp, 3, 10));
    expect(p.message).toBe('bad rmfree');
    expect(p.code).toBe('ERR_DEVMAP_RMAP_OVERLAP');
    expect(pairs(mp)).toEqual([[9, 27]]);
    expect(mp.slotsFree).toBe(2);
    expect(mp.stats()).toMatchObject({ allocs: 5, failures: 1, frees: 4, panics: 1 });
  });
});

describe('SPEC C.8 overflow table (2 slots, (1,100), 10 units at 1, 11, 21, 31)', () => {
  function setup(overflow: 'solaris' | 'bsd' | 'svr4') {
    const q = quiet({ overflow });
    const mp = rmallocmap(2, q.opts);
    rmfree(mp, 100, 1);
    expect([1, 11, 21, 31].map(() => rmalloc(mp, 10))).toEqual([1, 11, 21, 31]);
    expect(pairs(mp)).toEqual([[41, 60]]);
    expect(mp.slotsFree).toBe(1);
    rmfree(mp, 10, 1);
    expect(pairs(mp)).toEqual([[1, 10], [41, 60]]);
    expect(mp.slotsFree).toBe(0);
    return { mp, warnings: q.warnings };
  }

  it('solaris: discards the smaller of the last two, logs, retries', () => {
    const { mp, warnings } = setup('solaris');
    rmfree(mp, 10, 21);
    expect(pairs(mp)).toEqual([[21, 10], [41, 60]]);
    expect(warnings).toEqual([
      ['rmallocmap: rmap overflow, lost [1, 11]', { code: 'DEVMAP_RMAP_OVERFLOW', map: 'rmallocmap', index: 1, size: 10 }],
    ]);
    rmfree(mp, 10, 11);
    expect(pairs(mp)).toEqual([[11, 20], [41, 60]]); // [1,11) stays lost
    expect(mp.stats()).toMatchObject({ overflows: 1, lostUnits: 10 });
    expect(mp.freeUnits).toBe(80);
  });

  it('bsd: inserts, then drops the second-to-last entry (here the range just freed)', () => {
    const { mp, warnings } = setup('bsd');
    rmfree(mp, 10, 21);
    expect(pairs(mp)).toEqual([[1, 10], [41, 60]]);
    expect(warnings.map((w) => w[0])).toEqual(['rmallocmap: rmap ovflo, lost [21,31)']);
    rmfree(mp, 10, 11);
    expect(pairs(mp)).toEqual([[1, 20], [41, 60]]);
  });

  it('svr4: drops the range being freed', () => {
    const { mp, warnings } = setup('svr4');
    rmfree(mp, 10, 21);
    expect(pairs(mp)).toEqual([[1, 10], [41, 60]]);
    expect(warnings.map((w) => w[0])).toEqual(['rmfree map overflow rmallocmap.  Lost 10 item(s) at 21']);
    expect(warnings[0][1]).toMatchObject({ index: 21, size: 10 });
    rmfree(mp, 10, 11);
    expect(pairs(mp)).toEqual([[1, 20], [41, 60]]);
  });

  it('solaris with one slot discards the single existing range (C.3 edge case); ties drop the last', () => {
    const q = quiet({ name: 'xx' });
    const one = rmallocmap(1, q.opts);
    rmfree(one, 5, 10);
    rmfree(one, 5, 20);
    expect(pairs(one)).toEqual([[20, 5]]);
    expect(q.warnings[0][0]).toBe('xx: rmap overflow, lost [10, 15]');
    const two = rmallocmap(2, q.opts);
    rmfree(two, 5, 10);
    rmfree(two, 5, 20);
    rmfree(two, 3, 30); // last two (10,5) (20,5) tie: the last goes
    expect(pairs(two)).toEqual([[10, 5], [30, 3]]);
  });

  it('bsd drops the old last range when the new one lies above it, the old second-to-last when below both', () => {
    const q = quiet({ overflow: 'bsd' });
    const mp = rmallocmap(2, q.opts);
    rmfree(mp, 5, 10);
    rmfree(mp, 5, 20);
    rmfree(mp, 5, 30);
    expect(pairs(mp)).toEqual([[10, 5], [30, 5]]);
    rmfree(mp, 2, 1);
    expect(pairs(mp)).toEqual([[1, 2], [30, 5]]);
    expect(q.warnings.map((w) => w[0])).toEqual(['rmallocmap: rmap ovflo, lost [20,25)', 'rmallocmap: rmap ovflo, lost [10,15)']);
  });

  it('reports overflows through process.emitWarning with a code by default', () => {
    const seen: Error[] = [];
    const orig = process.emitWarning;
    process.emitWarning = ((w: string | Error, o?: unknown) => seen.push(Object.assign(new Error(String(w)), o))) as typeof process.emitWarning;
    try {
      const mp = rmallocmap(1, { overflow: 'svr4' });
      rmfree(mp, 1, 1);
      rmfree(mp, 1, 5);
    } finally {
      process.emitWarning = orig;
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ message: 'rmfree map overflow rmallocmap.  Lost 1 item(s) at 5', code: 'DEVMAP_RMAP_OVERFLOW', type: 'ResourceMapWarning' });
  });
});

describe('SPEC C.4 panics (Solaris ≤ 7 column) leave the map unchanged', () => {
  const cases: [string, number, number, string][] = [
    ['rmfree(0, i)', 0, 50, 'ERR_DEVMAP_RMAP_ZERO_SIZE'],
    ['rmfree(n, 0)', 5, 0, 'ERR_DEVMAP_RMAP_ZERO_INDEX'],
    ['double free', 10, 20, 'ERR_DEVMAP_RMAP_OVERLAP'],
    ['overlap from below', 5, 17, 'ERR_DEVMAP_RMAP_OVERLAP'],
    ['overlap into the next range', 16, 35, 'ERR_DEVMAP_RMAP_OVERLAP'],
    ['covering a whole range', 40, 15, 'ERR_DEVMAP_RMAP_OVERLAP'],
    ['inside a range', 2, 22, 'ERR_DEVMAP_RMAP_OVERLAP'],
  ];
  for (const [what, size, index, code] of cases) {
    it(`${what} panics "bad rmfree"`, () => {
      const mp = rmallocmap(4);
      rmfree(mp, 10, 20);
      rmfree(mp, 10, 50);
      const before = { list: pairs(mp), slots: mp.slotsFree, units: mp.freeUnits };
      const p = panicOf(() => rmfree(mp, size, index));
      expect([p.message, p.code, p.operation, p.size, p.index]).toEqual(['bad rmfree', code, 'rmfree', size, index]);
      expect({ list: pairs(mp), slots: mp.slotsFree, units: mp.freeUnits }).toEqual(before);
      expect(mp.stats().panics).toBe(1);
    });
  }

  it('a partial return and new space outside the map are accepted', () => {
    const mp = rmallocmap(4);
    rmfree(mp, 100, 1);
    expect(rmalloc(mp, 50)).toBe(1);
    rmfree(mp, 10, 21);
    rmfree(mp, 7, 1000);
    expect(pairs(mp)).toEqual([[21, 10], [51, 50], [1000, 7]]);
  });

  it('rmallocmap(0) panics "mapinit: map too small"', () => {
    const p = panicOf(() => rmallocmap(0));
    expect([p.code, p.message, p.operation]).toEqual(['ERR_DEVMAP_RMAP_MAP_TOO_SMALL', 'mapinit: map too small', 'rmallocmap']);
  });

  it('rmalloc(0) is an argument error (devmap decision; Solaris DEBUG asserted)', () => {
    const mp = rmallocmap(2);
    rmfree(mp, 10, 1);
    expect(() => rmalloc(mp, 0)).toThrow(RangeError);
    expect(pairs(mp)).toEqual([[1, 10]]);
  });
});

describe('arguments', () => {
  const mp = rmallocmap_wait(8);
  rmfree(mp, 1000, 1);
  it.each([
    ['size', () => rmalloc(mp, '1' as never), TypeError, /Expected a number for size but received "1" of type string/],
    ['size', () => rmalloc(mp, 1.5), RangeError, /for size but received 1.5/],
    ['size', () => rmalloc(mp, -1), RangeError, /for size/],
    ['size', () => rmalloc(mp, NaN), RangeError, /for size but received NaN/],
    ['size', () => rmalloc(mp, 2 ** 53), RangeError, /for size/],
    ['size', () => rmfree(mp, 2n as never, 5), TypeError, /for size but received 2n of type bigint/],
    ['index', () => rmfree(mp, 5, -3), RangeError, /for index but received -3/],
    ['index', () => rmfree(mp, 5, Infinity), RangeError, /for index but received Infinity/],
    ['index + size', () => rmfree(mp, 10, Number.MAX_SAFE_INTEGER - 5), RangeError, /index \+ size must stay/],
    ['mp', () => rmalloc({} as never, 1), TypeError, /Expected a ResourceMap for mp/],
    ['mapsize', () => rmallocmap(-1), RangeError, /for mapsize/],
    ['mapsize', () => rmallocmap('3' as never), TypeError, /for mapsize/],
    ['policy', () => rmallocmap(3, { policy: 'vmem' as never }), RangeError, /one of 'classic', 'illumos' for options.policy/],
    ['overflow', () => rmallocmap(3, { overflow: 'linux' as never }), RangeError, /'solaris', 'bsd', 'svr4'/],
    ['overflow', () => rmallocmap(3, { policy: 'illumos', overflow: 'bsd' }), RangeError, /classic policy only/],
    ['name', () => rmallocmap(3, { name: 7 as never }), TypeError, /for options.name/],
    ['onWarning', () => rmallocmap(3, { onWarning: 'log' as never }), TypeError, /a function for options.onWarning/],
    ['fifo', () => rmallocmap(3, { fifo: 1 as never }), TypeError, /a boolean for options.fifo/],
    ['misspelt option', () => rmallocmap(3, { polcy: 'classic' } as never), TypeError, /did you mean "policy"/],
  ])('%s', (_what, fn, Ctor, message) => {
    expect(fn).toThrow(Ctor);
    expect(fn).toThrow(message);
    expect(pairs(mp)).toEqual([[1, 1000]]);
  });

  it('indices up to 2^53 − 1 work (an index is often an address)', () => {
    const big = rmallocmap(4);
    const base = 2 ** 52 + 12345;
    const size = 2 ** 52 - 20000;
    rmfree(big, size, base);
    expect(rmalloc(big, 3)).toBe(base);
    expect(rmalloc(big, size - 3)).toBe(base + 3);
    expect(big.freeUnits).toBe(0);
    rmfree(big, size, base);
    expect(pairs(big)).toEqual([[base, size]]);
    rmfree(big, 1, Number.MAX_SAFE_INTEGER - 1);
    expect(big.freeRanges().at(-1)).toEqual({ index: Number.MAX_SAFE_INTEGER - 1, size: 1 });
  });

  it('never hands out index 0', () => {
    const z = rmallocmap(2);
    expect(rmalloc(z, 1)).toBe(0);
    expect(() => rmfree(z, 4, 0)).toThrow(ResourceMapPanic);
    expect(z.freeUnits).toBe(0);
  });
});

describe('a freed map', () => {
  it('throws ERR_DEVMAP_RMAP_FREED on every operation', () => {
    const mp = rmallocmap(2, { name: 'gone' });
    rmfree(mp, 10, 1);
    rmfreemap(mp);
    expect(mp.freed).toBe(true);
    for (const fn of [() => rmalloc(mp, 1), () => rmfree(mp, 1, 20), () => rmfreemap(mp), () => mp.freeRanges(), () => mp.freeUnits, () => mp.picture()]) {
      expect(fn).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_RMAP_FREED', message: 'resource map gone has been freed (rmfreemap)' }));
    }
    expect(String(mp)).toBe('ResourceMap gone (classic/solaris, freed)');
  });
});
