// rmalloc_wait: SPEC C.5 row by row, aborts, rmfreemap with waiters, the too-large warning, the fifo option.
import { describe, expect, it } from 'vitest';
import { ResourceMapPanic, rmalloc, rmalloc_wait, rmallocmap, rmfree, rmfreemap } from '../../lib/rmap';
import type { ResourceMapWarning } from '../../lib/rmap';

/** Tracks a promise's outcome so a test can assert "still pending" after the microtasks have run. */
function track<T>(p: Promise<T>) {
  const t: { state: 'pending' | 'fulfilled' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  p.then(
    (value) => Object.assign(t, { state: 'fulfilled', value }),
    (error) => Object.assign(t, { state: 'rejected', error }),
  );
  return t;
}
const flush = () => new Promise((r) => setImmediate(r));
/** A map whose too-large warnings (expected in most of these tests) are collected instead of printed. */
const quietMap = (mapsize: number, opts: Parameters<typeof rmallocmap>[1] = {}) => rmallocmap(mapsize, { onWarning: () => undefined, ...opts });
const pairs = (mp: ReturnType<typeof rmallocmap>) => mp.freeRanges().map((r) => [r.index, r.size]);

describe('SPEC C.5 worked example', () => {
  it('broadcast on every rmfree, each waiter retries in wake order', async () => {
    const mp = quietMap(8);
    rmfree(mp, 100, 1);
    expect([rmalloc(mp, 30), rmalloc(mp, 30), rmalloc(mp, 40)]).toEqual([1, 31, 61]);
    const t1 = track(rmalloc_wait(mp, 50)); // t=1: nothing fits, sleeps
    const t2 = track(rmalloc_wait(mp, 20)); // t=2: sleeps
    await flush();
    expect([t1.state, t2.state, mp.waiting]).toEqual(['pending', 'pending', 2]);
    rmfree(mp, 30, 1); // t=3: (1,30), both wake; t=4 T2 gets 1; t=5 T1 sleeps again
    expect(pairs(mp)).toEqual([[21, 10]]);
    await flush();
    expect([t1.state, t2.state, t2.value]).toEqual(['pending', 'fulfilled', 1]);
    rmfree(mp, 30, 31); // t=6: (21,40), T1 retries, 40 < 50
    await flush();
    expect(pairs(mp)).toEqual([[21, 40]]);
    expect(t1.state).toBe('pending');
    rmfree(mp, 40, 61); // t=7: (21,80), T1 gets 21
    await flush();
    expect([t1.state, t1.value]).toEqual(['fulfilled', 21]);
    expect(pairs(mp)).toEqual([[71, 30]]);
    expect(mp.waiting).toBe(0);
    expect(mp.stats()).toMatchObject({ waits: 2, wakeups: 4, allocs: 5, failures: 0 });
  });

  it('succeeds at once when space fits: the allocation happens in the call', async () => {
    const mp = quietMap(2);
    rmfree(mp, 10, 1);
    const p = rmalloc_wait(mp, 4);
    expect(pairs(mp)).toEqual([[5, 6]]);
    await expect(p).resolves.toBe(1);
    expect(mp.stats().waits).toBe(0);
  });
});

describe('cancelling and destroying', () => {
  it('an AbortSignal cancels a wait and leaves no waiter behind', async () => {
    const mp = quietMap(2);
    rmfree(mp, 10, 1);
    const ac = new AbortController();
    const p = rmalloc_wait(mp, 20, { signal: ac.signal });
    expect(mp.waiting).toBe(1);
    ac.abort(new Error('user gave up'));
    await expect(p).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: { message: 'user gave up' } });
    expect(mp.waiting).toBe(0);
    rmfree(mp, 20, 100);
    expect(pairs(mp)).toEqual([[1, 10], [100, 20]]); // nobody took the 20 units
    expect(mp.stats()).toMatchObject({ aborts: 1, waits: 1 });
  });

  it('an already aborted signal rejects without allocating', async () => {
    const mp = quietMap(2);
    rmfree(mp, 10, 1);
    await expect(rmalloc_wait(mp, 2, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(mp.freeUnits).toBe(10);
  });

  it('a signal that fires after the wait succeeded changes nothing', async () => {
    const mp = quietMap(2);
    rmfree(mp, 10, 1);
    const ac = new AbortController();
    const p = rmalloc_wait(mp, 20, { signal: ac.signal });
    rmfree(mp, 10, 11);
    await expect(p).resolves.toBe(1);
    ac.abort();
    expect(mp.stats().aborts).toBe(0);
  });

  it('rmfreemap rejects every waiter with ERR_DEVMAP_RMAP_FREED', async () => {
    const mp = quietMap(2, { name: 'xx_mp' });
    rmfree(mp, 10, 1);
    const ac = new AbortController();
    const a = rmalloc_wait(mp, 50, { signal: ac.signal });
    const b = rmalloc_wait(mp, 60);
    rmfreemap(mp);
    await expect(a).rejects.toMatchObject({ code: 'ERR_DEVMAP_RMAP_FREED', message: 'rmfreemap(xx_mp) freed the map while rmalloc_wait(50) was waiting' });
    await expect(b).rejects.toMatchObject({ code: 'ERR_DEVMAP_RMAP_FREED' });
    ac.abort(); // the listener was removed: nothing else happens
    expect(mp.waiting).toBe(0);
  });
});

describe('the too-large warning', () => {
  it('warns the first time a request larger than the whole resource waits, once', async () => {
    const w: [string, ResourceMapWarning][] = [];
    const mp = rmallocmap(4, { onWarning: (m, x) => w.push([m, x]) });
    rmfree(mp, 100, 1);
    const big = track(rmalloc_wait(mp, 150));
    const small = track(rmalloc_wait(mp, 120 - 20)); // fits now: no warning
    expect(w).toEqual([
      [
        'rmalloc_wait(rmallocmap, 150): the request is larger than the whole resource (100 units); it can only succeed after more space is added with rmfree',
        { code: 'DEVMAP_RMAP_WAIT_TOO_LARGE', map: 'rmallocmap', index: 0, size: 150 },
      ],
    ]);
    rmfree(mp, 100, 1); // small's space back: big retries, still too small, no new warning
    rmfree(mp, 100, 101);
    await flush();
    expect([small.state, big.state, big.value]).toEqual(['fulfilled', 'fulfilled', 1]);
    expect(w).toHaveLength(1);
  });

  it('illumos measures the largest span (spans never coalesce)', () => {
    const w: string[] = [];
    const il = rmallocmap(0, { policy: 'illumos', onWarning: (m) => w.push(m) });
    rmfree(il, 50, 1);
    rmfree(il, 50, 51);
    void rmalloc_wait(il, 60).catch(() => undefined);
    expect(w).toEqual([
      'rmalloc_wait(rmap, 60): the request is larger than the whole resource (50 units); it can only succeed after more space is added with rmfree',
    ]);
    rmfreemap(il);
  });

  it('an empty map warns for any wait', () => {
    const w: string[] = [];
    const mp = rmallocmap(1, { onWarning: (m) => w.push(m) });
    void rmalloc_wait(mp, 1).catch(() => undefined);
    expect(w[0]).toMatch(/larger than the whole resource \(0 units\)/);
    rmfreemap(mp);
  });
});

describe('fifo option', () => {
  it('later requests queue behind earlier ones; a wake stops at the first that does not fit', async () => {
    const mp = quietMap(4, { fifo: true });
    rmfree(mp, 100, 1);
    expect(rmalloc(mp, 100)).toBe(1);
    const big = track(rmalloc_wait(mp, 50));
    rmfree(mp, 10, 1);
    const small = track(rmalloc_wait(mp, 5)); // 10 units are free, but big came first
    expect(pairs(mp)).toEqual([[1, 10]]);
    rmfree(mp, 10, 11); // (1,20): big still does not fit; small must not overtake
    await flush();
    expect([big.state, small.state]).toEqual(['pending', 'pending']);
    rmfree(mp, 30, 21); // (1,50): big first, then small
    expect(pairs(mp)).toEqual([]);
    await flush();
    expect([big.value, small.state]).toEqual([1, 'pending']);
    rmfree(mp, 5, 200);
    await flush();
    expect(small.value).toBe(200);
  });

  it('aborting the head lets the next waiter in', async () => {
    const mp = quietMap(4, { fifo: true });
    rmfree(mp, 10, 1);
    expect(rmalloc(mp, 10)).toBe(1);
    const ac = new AbortController();
    const head = rmalloc_wait(mp, 50, { signal: ac.signal });
    const next = track(rmalloc_wait(mp, 5));
    rmfree(mp, 10, 1);
    await flush();
    expect(next.state).toBe('pending');
    ac.abort();
    await expect(head).rejects.toMatchObject({ code: 'ABORT_ERR' });
    await flush();
    expect(next.value).toBe(1);
  });

  it('without fifo a small request overtakes a large one (no fairness, as in the kernels)', async () => {
    const mp = quietMap(4);
    rmfree(mp, 10, 1);
    expect(rmalloc(mp, 10)).toBe(1);
    const big = track(rmalloc_wait(mp, 50));
    rmfree(mp, 10, 1);
    await expect(rmalloc_wait(mp, 5)).resolves.toBe(1);
    expect(big.state).toBe('pending');
    rmfreemap(mp);
  });
});

describe('errors reject the promise', () => {
  it.each([
    ['bad size', () => rmalloc_wait(quietMap(1), -1), { name: 'RangeError' }],
    ['classic size 0', () => rmalloc_wait(quietMap(1), 0), { name: 'RangeError' }],
    ['illumos size 0', () => rmalloc_wait(quietMap(0, { policy: 'illumos' }), 0), { code: 'ERR_DEVMAP_RMAP_ZERO_SIZE' }],
    ['not a map', () => rmalloc_wait(null as never, 1), { name: 'TypeError' }],
    ['bad signal', () => rmalloc_wait(quietMap(1), 1, { signal: {} as never }), { message: /an AbortSignal for options.signal/ }],
    ['unknown option', () => rmalloc_wait(quietMap(1), 1, { signl: 1 } as never), { message: /did you mean "signal"/ }],
    [
      'a freed map',
      () => {
        const mp = quietMap(1);
        rmfreemap(mp);
        return rmalloc_wait(mp, 1);
      },
      { code: 'ERR_DEVMAP_RMAP_FREED' },
    ],
  ])('%s', async (_what, call, shape) => {
    const p = call();
    expect(p).toBeInstanceOf(Promise);
    await expect(p).rejects.toMatchObject(shape);
  });

  it('an illumos size-0 wait is a panic', async () => {
    await expect(rmalloc_wait(quietMap(0, { policy: 'illumos' }), 0)).rejects.toBeInstanceOf(ResourceMapPanic);
  });
});
