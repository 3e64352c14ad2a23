// Introspection: free ranges, units, largest range, slots, counters, the one-line picture, toString.
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { rmalloc, rmallocmap, rmfree } from '../../lib/rmap';

describe('introspection', () => {
  it('reports ranges, units, largest range, slots and counters as the map changes', () => {
    const mp = rmallocmap(3);
    expect([mp.ranges, mp.freeUnits, mp.largestFree, mp.slots, mp.slotsFree]).toEqual([0, 0, 0, 3, 3]);
    rmfree(mp, 100, 1);
    expect(rmalloc(mp, 30)).toBe(1);
    expect(rmalloc(mp, 25)).toBe(31);
    rmfree(mp, 10, 11);
    expect(mp.freeRanges()).toEqual([{ index: 11, size: 10 }, { index: 56, size: 45 }]);
    expect([mp.ranges, mp.freeUnits, mp.largestFree, mp.slots, mp.slotsFree]).toEqual([2, 55, 45, 3, 1]);
    expect(rmalloc(mp, 50)).toBe(0);
    expect(mp.stats()).toEqual({
      allocs: 2, frees: 2, failures: 1, overflows: 0, lostUnits: 0, waits: 0, wakeups: 0, aborts: 0, panics: 0, searches: 0, allocatedUnits: 0,
    });
  });

  it('draws a one-line picture: . free, # in use, : partly free', () => {
    const mp = rmallocmap(3);
    expect(mp.picture()).toBe('[]');
    rmfree(mp, 100, 1);
    expect(mp.picture(10)).toBe('[..........]');
    rmalloc(mp, 30);
    expect(mp.picture(10)).toBe('[###.......]');
    rmalloc(mp, 25);
    expect(mp.picture(10)).toBe('[#####:....]');
    rmfree(mp, 10, 11);
    expect(mp.picture(10)).toBe('[#.###:....]');
    expect(mp.picture()).toHaveLength(52); // 100 units at 2 per cell: 50 cells and the brackets
    expect(mp.picture(1000)).toHaveLength(102);
    expect(() => mp.picture(0)).toThrow(RangeError);
  });

  it('shows the gaps between illumos spans as blanks', () => {
    const il = rmallocmap(0, { policy: 'illumos' });
    rmfree(il, 10, 1);
    rmfree(il, 10, 21);
    expect(rmalloc(il, 4)).toBe(21);
    expect(il.picture(30)).toBe('[..........          ####......]');
    expect([il.ranges, il.freeUnits, il.largestFree]).toEqual([2, 16, 10]);
  });

  it('toString and util.inspect give a one-line summary', () => {
    const mp = rmallocmap(3, { name: 'xx_mp', overflow: 'bsd' });
    rmfree(mp, 8, 1);
    rmalloc(mp, 2);
    const line = 'ResourceMap xx_mp (classic/bsd): 1 free ranges, 6 free units, largest 6, 2/3 slots free, 0 waiting [##......]';
    expect(String(mp)).toBe(line);
    expect(inspect(mp)).toBe(line);
    const il = rmallocmap(0, { policy: 'illumos' });
    expect(String(il)).toBe('ResourceMap rmap (illumos): 0 free ranges, 0 free units, largest 0, 0 waiting []');
  });
});
