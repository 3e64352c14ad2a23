// The comparison both property tests make: an engine call against the reference's, step by step.
import { expect } from 'vitest';
import { ResourceMapPanic, rmalloc, rmfree, type ResourceMap } from '../../lib/rmap';
import { RefPanic } from './reference';

/** Runs `fn` on both sides; both must return the same value or panic with the same code and message. */
export function same<T>(engine: () => T, reference: () => T): { ok: true; value: T } | { ok: false } {
  let want: { ok: true; value: T } | { ok: false; code: string; message: string };
  try {
    want = { ok: true, value: reference() };
  } catch (err) {
    if (!(err instanceof RefPanic)) throw err;
    want = { ok: false, code: err.code, message: err.message };
  }
  try {
    const value = engine();
    expect(want).toEqual({ ok: true, value });
    return { ok: true, value };
  } catch (err) {
    if (!(err instanceof ResourceMapPanic)) throw err;
    expect({ ok: false, code: err.code, message: err.message }).toEqual(want);
    return { ok: false };
  }
}

/** Runs `fn`, which must panic; returns the ResourceMapPanic. */
export function panicOf(fn: () => unknown): ResourceMapPanic {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ResourceMapPanic);
    return err as ResourceMapPanic;
  }
  throw new Error('expected a ResourceMapPanic');
}

/**
 * SPEC C.8's first ten rows on a map made with rmallocmap(3) (Solaris rules): each call, then its return, the free
 * list and the free slots. Row 11 (a panic) is left to the caller.
 */
export function playC8(mp: ResourceMap): void {
  const pairs = () => mp.freeRanges().map((r) => [r.index, r.size]);
  const rows: [() => number | void, number | undefined, number[][], number][] = [
    [() => rmfree(mp, 100, 1), undefined, [[1, 100]], 2],
    [() => rmalloc(mp, 10), 1, [[11, 90]], 2],
    [() => rmalloc(mp, 20), 11, [[31, 70]], 2],
    [() => rmalloc(mp, 5), 31, [[36, 65]], 2],
    [() => rmalloc(mp, 65), 36, [], 3],
    [() => rmalloc(mp, 1), 0, [], 3],
    [() => rmfree(mp, 10, 1), undefined, [[1, 10]], 2],
    [() => rmfree(mp, 5, 31), undefined, [[1, 10], [31, 5]], 1],
    [() => rmalloc(mp, 8), 1, [[9, 2], [31, 5]], 1],
    [() => rmfree(mp, 20, 11), undefined, [[9, 27]], 2],
  ];
  rows.forEach(([call, ret, list, slots], i) => {
    expect(call(), `row ${i + 1} return`).toBe(ret);
    expect(pairs(), `row ${i + 1} list`).toEqual(list);
    expect(mp.slotsFree, `row ${i + 1} slots`).toBe(slots);
  });
}
