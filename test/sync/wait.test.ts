import { promises as fsp } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mapping, SharedMemory, mapAnonymous, pageSize } from '../../lib';
import { DEFAULT_SPIN_ITERATIONS, getSpin, notify, setSpin, wait, waitAsync } from '../../lib/sync';
import { waiterThreads } from '../../lib/sync/futex';
import { fixture, runNode } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import { segment, spawnLines, threadCount, until } from './lines';

trackLeaks();


// At most one waiter thread stays, idle, once waits have settled.
const settled = () => until(() => waiterThreads() <= 1);

let baselineThreads = 0;
beforeAll(async () => {
  // Start the lazily created threads (libuv's pool, the first waiter) before taking the baseline.
  await Promise.all([fsp.stat(__filename), fsp.readFile(__filename)]);
  const m = mapAnonymous(pageSize);
  const a = new Int32Array(m.buffer);
  expect(await waitAsync(a, 0, 0, { timeout: 1 })).toBe('timed-out');
  await settled();
  m.unmap();
  baselineThreads = threadCount();
});
afterAll(async () => {
  await settled();
  expect(threadCount(), 'threads back at baseline').toBe(baselineThreads);
});

describe('wait / notify across processes', () => {
  it('wakes a child asleep in the kernel, and notify counts it', async () => {
    const s = segment('sync');
    try {
      const child = spawnLines('sync-child.cjs', ['sleep', s.name]);
      let woken = 0;
      await until(() => (woken = notify(s.a, 0)) > 0); // 0 until the child is asleep; the word never changes
      expect(woken).toBe(1);
      expect(await child.next()).toEqual({ result: 'ok' });
      expect(await child.exited).toMatchObject({ code: 0, signal: null });
    } finally {
      s.done();
    }
  });

  it('ping-pongs 2000 rounds: sync waits in the child, waitAsync in this process', async () => {
    const s = segment('sync');
    try {
      const rounds = 2000;
      const child = spawnLines('sync-child.cjs', ['pong-sync', s.name, String(rounds)]);
      for (let i = 0; i < rounds; i++) {
        Atomics.store(s.a, 0, 1);
        notify(s.a, 0);
        while (Atomics.load(s.a, 0) === 1) await waitAsync(s.a, 0, 1);
      }
      expect(await child.next()).toEqual({ count: rounds });
      expect(s.a[1]).toBe(rounds);
      expect((await child.exited).code).toBe(0);
    } finally {
      s.done();
    }
  });

  it('ping-pongs 2000 rounds: waitAsync in the child, sync waits here', async () => {
    const s = segment('sync');
    try {
      const rounds = 2000;
      const child = spawnLines('sync-child.cjs', ['pong-async', s.name, String(rounds)]);
      for (let i = 0; i < rounds; i++) {
        Atomics.store(s.a, 0, 1);
        notify(s.a, 0);
        while (Atomics.load(s.a, 0) === 1) wait(s.a, 0, 1);
      }
      expect(await child.next()).toEqual({ count: rounds });
      expect((await child.exited).code).toBe(0);
    } finally {
      s.done();
    }
  });
});

describe('wait and signals', () => {
  it('resumes after EINTR with the time that remains', async () => {
    const s = segment('sync');
    try {
      const child = spawnLines('sync-child.cjs', ['eintr', s.name]);
      expect(await child.next()).toEqual({ ready: true });
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 20));
        child.proc.kill('SIGUSR2');
      }
      const r = await child.next();
      expect(r.result).toBe('timed-out');
      expect(r.elapsed).toBeGreaterThanOrEqual(299);
      expect(r.signals).toBeGreaterThan(0);
      expect((await child.exited).code).toBe(0);
    } finally {
      s.done();
    }
  });
});

describe('the waiters option: notify skips the system call when nobody sleeps', () => {
  it.each(['pong-sync', 'pong-async'])('ping-pongs 2000 rounds with a sleeper count and no spinning (%s child)', async (mode) => {
    const s = segment('sync');
    try {
      const rounds = 2000;
      const w = { waiters: 2 };
      const child = spawnLines('sync-child.cjs', [mode, s.name, String(rounds), 'counted']);
      setSpin({ iterations: 0 });
      for (let i = 0; i < rounds; i++) {
        Atomics.store(s.a, 0, 1);
        notify(s.a, 0, 1, w);
        while (Atomics.load(s.a, 0) === 1) {
          if (i % 2 === 0) wait(s.a, 0, 1, w);
          else await waitAsync(s.a, 0, 1, w);
        }
      }
      expect(await child.next()).toEqual({ count: rounds });
      expect((await child.exited).code).toBe(0);
      expect(s.a[2]).toBe(0); // every sleeper uncounted itself
    } finally {
      setSpin({ iterations: DEFAULT_SPIN_ITERATIONS });
      s.done();
    }
  });

  it('counts a waitAsync while it is pending and returns 0 from notify when nobody is counted', async () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    expect(notify(a, 0, 1, { waiters: 1 })).toBe(0);
    const p = waitAsync(a, 0, 0, { waiters: 1 });
    expect(a[1]).toBe(1);
    a[0] = 1;
    notify(a, 0, 1, { waiters: 1 });
    expect(await p).toBe('ok');
    expect(a[1]).toBe(0);
    const ac = new AbortController();
    const q = waitAsync(a, 0, 1, { waiters: 1, signal: ac.signal }).catch((e: Error) => e.name);
    ac.abort();
    expect(await q).toBe('AbortError');
    expect(a[1]).toBe(0);
    expect(wait(a, 0, 1, { timeout: 1, waiters: 1 })).toBe('timed-out');
    expect(a[1]).toBe(0);
    expect(() => wait(a, 0, 1, { waiters: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => notify(a, 0, 1, { waiters: a.length })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => notify(a, 0, 1, { waiter: 1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    await settled();
    m.unmap();
  });
});

describe('wait / notify between worker threads', () => {
  it('resolves a waitAsync of the main thread when a worker stores and notifies', async () => {
    const s = segment('sync');
    try {
      const p = waitAsync(s.a, 0, 0);
      const w = new Worker(fixture('sync-worker.cjs'), { workerData: { name: s.name, mode: 'notify' } });
      const msg = await new Promise<{ woken: number }>((resolve) => w.once('message', resolve));
      expect(await p).toBe('ok');
      expect(s.a[0]).toBe(7);
      expect(msg.woken).toBeLessThanOrEqual(1);
      await w.terminate();
    } finally {
      s.done();
    }
  });

  it('wakes a worker asleep in wait()', async () => {
    const s = segment('sync');
    try {
      const w = new Worker(fixture('sync-worker.cjs'), { workerData: { name: s.name, mode: 'sleep' } });
      const msg = new Promise<{ result: string; value: number }>((resolve) => w.once('message', resolve));
      await until(() => notify(s.a, 0) === 1); // it is asleep (and goes back to sleep: the word is still 0)
      Atomics.store(s.a, 0, 5);
      notify(s.a, 0);
      expect(await msg).toEqual({ result: 'ok', value: 5 });
      await w.terminate();
    } finally {
      s.done();
    }
  });
});

describe('wait', () => {
  it("returns 'not-equal' at once and 'timed-out' after the timeout, spinning or not", () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    a[3] = -5;
    for (const iterations of [0, DEFAULT_SPIN_ITERATIONS]) {
      setSpin({ iterations });
      expect(wait(a, 3, 4)).toBe('not-equal');
      expect(wait(a, 3, -5, 0)).toBe('timed-out');
      const t0 = performance.now();
      expect(wait(a, 3, -5, 20)).toBe('timed-out');
      expect(performance.now() - t0).toBeGreaterThanOrEqual(19);
    }
    setSpin({ iterations: DEFAULT_SPIN_ITERATIONS });
    m.unmap();
  });

  it('has a bounded, configurable spin', () => {
    expect(getSpin()).toEqual({ iterations: DEFAULT_SPIN_ITERATIONS });
    setSpin({ iterations: 0 });
    expect(getSpin()).toEqual({ iterations: 0 });
    setSpin({ iterations: DEFAULT_SPIN_ITERATIONS });
    expect(() => setSpin({ iterations: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => setSpin({ iterations: 1e7 })).toThrow(RangeError);
    expect(() => setSpin({ iteratons: 3 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => setSpin(undefined as never)).toThrow(TypeError);
  });
});

describe('waitAsync', () => {
  it("resolves 'not-equal' and 'timed-out' like Atomics.waitAsync", async () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    expect(await waitAsync(a, 0, 1)).toBe('not-equal');
    expect(await waitAsync(a, 0, 0, { timeout: 0 })).toBe('timed-out');
    const t0 = performance.now();
    expect(await waitAsync(a, 0, 0, { timeout: 25 })).toBe('timed-out');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(24);
    await settled();
    m.unmap();
  });

  it('keeps 1000 pending waits on ceil(1000 / 127) threads of its own, and fs keeps working', async () => {
    expect(waiterThreads()).toBe(1); // the idle one, started in beforeAll
    const m = mapAnonymous(1000 * 4);
    const a = new Int32Array(m.buffer);
    const waits = Array.from({ length: 1000 }, (_, i) => waitAsync(a, i, 0));
    expect(waiterThreads()).toBe(Math.ceil(1000 / 127));
    expect(threadCount()).toBe(baselineThreads + 7);
    // libuv's pool (4 threads) is untouched: 200 fs calls complete while the 1000 waits are pending.
    const fsCalls = Array.from({ length: 100 }, () => [fsp.stat(__filename), fsp.readFile(__filename)]).flat();
    await Promise.all(fsCalls);
    for (let i = 0; i < 1000; i++) {
      Atomics.store(a, i, 1);
      notify(a, i);
    }
    expect(new Set(await Promise.all(waits))).toEqual(new Set(['ok']));
    // The threads exit with their last wait and are joined before the last completion is delivered; one
    // stays, idle, for the next wait.
    expect(waiterThreads()).toBe(1);
    expect(threadCount()).toBe(baselineThreads);
    m.unmap();
  });

  it('shares one kernel wait among the waits of this thread on one word: one notify ends them all', async () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    const waits = Array.from({ length: 300 }, () => waitAsync(a, 5, 0));
    expect(waiterThreads()).toBe(1);
    await until(() => notify(a, 5, 1) === 1); // the word never changes: only the wake ends them
    expect(new Set(await Promise.all(waits))).toEqual(new Set(['ok']));
    m.unmap();
  });

  it('rejects with signal.reason on abort and leaves no thread or entry behind', async () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    const ac = new AbortController();
    const reason = new Error('stop');
    const p = waitAsync(a, 0, 0, { signal: ac.signal });
    const other = waitAsync(a, 0, 0, { timeout: 1e6 });
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    expect(waiterThreads()).toBe(1); // `other` still waits on the word
    Atomics.store(a, 0, 1);
    notify(a, 0);
    expect(await other).toBe('ok');
    await settled();
    await expect(waitAsync(a, 0, 1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(threadCount()).toBe(baselineThreads);
    m.unmap();
  });

  it('settles exactly once when an abort races the wake', async () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      Atomics.store(a, 0, 0);
      const ac = new AbortController();
      const p = waitAsync(a, 0, 0, { signal: ac.signal }).then(
        (r) => r,
        (e: Error) => e.name,
      );
      Atomics.store(a, 0, 1);
      notify(a, 0);
      for (let k = 0; k < i % 7; k++) await Promise.resolve();
      ac.abort();
      const r = await p;
      outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
    }
    expect([...outcomes.keys()].every((k) => k === 'ok' || k === 'AbortError')).toBe(true);
    expect([...outcomes.values()].reduce((x, y) => x + y)).toBe(300);
    await settled();
    m.unmap();
  });

  it('is safe when the mapping is unmapped while the wait is pending: the wait is on the object', async () => {
    const s = segment('sync');
    try {
      const shm = SharedMemory.open(s.name);
      const mine = shm.map();
      shm.close();
      const a = new Int32Array(mine.buffer);
      const woken = waitAsync(a, 0, 0);
      const timed = waitAsync(a, 1, 0, { timeout: 30 });
      const ac = new AbortController();
      const aborted = waitAsync(a, 2, 0, { signal: ac.signal }).catch((e: Error) => e.name);
      mine.unmap();
      expect(Mapping.of(a)?.mapped).toBe(false); // attached over trash pages; the sync calls refuse it
      expect(() => notify(a, 0)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
      const scratch = mapAnonymous(pageSize); // may land where `mine` was: the waits must not see it
      new Int32Array(scratch.buffer).fill(9);
      Atomics.store(s.a, 0, 1);
      notify(s.a, 0); // through the other mapping of the same object
      expect(await woken).toBe('ok');
      expect(await timed).toBe('timed-out');
      ac.abort();
      expect(await aborted).toBe('AbortError');
      scratch.unmap();
      await settled();
    } finally {
      s.done();
    }
  });
});

describe('waitAsync and the lifetime of the process', () => {
  it('a pending wait keeps the process alive until it is notified', async () => {
    const s = segment('sync');
    try {
      const child = spawnLines('sync-child.cjs', ['wait-async', s.name]);
      expect(await child.next()).toEqual({ waiting: true });
      Atomics.store(s.a, 0, 1);
      notify(s.a, 0);
      expect(await child.next()).toEqual({ result: 'ok' });
      expect((await child.exited).code).toBe(0);
    } finally {
      s.done();
    }
  });

  it.each(['exit-pending', 'exit-settled', 'exit-worker'])('%s: the process exits normally', async (mode) => {
    const s = segment('sync');
    try {
      const r = await runNode('sync-child.cjs', [mode, s.name]);
      expect(r).toMatchObject({ code: 0, signal: null, stderr: '' });
      const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      if (mode === 'exit-settled') expect(out).toEqual([{ timedOut: 'timed-out', aborted: 'AbortError' }]);
      if (mode === 'exit-worker') expect(out).toEqual([{ terminated: 1 }]);
    } finally {
      s.done();
    }
  });
});

describe('typed errors, never a crash', () => {
  const m = mapAnonymous(pageSize);
  const a = new Int32Array(m.buffer);
  afterAll(() => m.unmap());
  const calls = {
    wait: (arr: unknown, i: unknown, v: unknown = 0) => wait(arr as Int32Array, i as number, v as number, 0),
    notify: (arr: unknown, i: unknown) => notify(arr as Int32Array, i as number),
    waitAsync: (arr: unknown, i: unknown, v: unknown = 0) => waitAsync(arr as Int32Array, i as number, v as number, { timeout: 0 }),
  };

  it.each(Object.keys(calls))('%s: wrong array types are TypeErrors', (name) => {
    const call = calls[name as keyof typeof calls];
    for (const bad of [undefined, [1, 2], new Int32Array(4), new Int32Array(new SharedArrayBuffer(16)), new Uint32Array(m.buffer), new Float64Array(m.buffer)]) {
      expect(() => call(bad, 0)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
    }
  });

  it.each(Object.keys(calls))('%s: bad indexes and values are RangeErrors or TypeErrors', (name) => {
    const call = calls[name as keyof typeof calls];
    for (const i of [-1, 1.5, a.length, NaN]) expect(() => call(a, i)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call(a, '0')).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }));
    if (name !== 'notify') {
      expect(() => call(a, 0, 2 ** 31)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => call(a, 0, '0')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    }
  });

  it.each(Object.keys(calls))('%s: a misaligned word is a RangeError', (name) => {
    const call = calls[name as keyof typeof calls];
    const odd = new Int32Array(m.view(2, 16));
    expect(() => call(odd, 1)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
  });

  it.each(Object.keys(calls))('%s: a copy-on-write mapping is ERR_DEVMAP_NOT_SHARED', (name) => {
    const priv = mapAnonymous(pageSize, { shared: false });
    expect(() => calls[name as keyof typeof calls](new Int32Array(priv.buffer), 0)).toThrow(
      expect.objectContaining({ code: 'ERR_DEVMAP_NOT_SHARED' }),
    );
    priv.unmap();
  });

  it.each(Object.keys(calls))('%s: an array whose pages were unmapped is ERR_DEVMAP_UNMAPPED', (name) => {
    const gone = mapAnonymous(pageSize);
    const view = new Int32Array(gone.buffer);
    calls.notify(view, 0); // seen once while attached
    gone.unmap();
    expect(() => calls[name as keyof typeof calls](view, 0)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
    const never = mapAnonymous(pageSize);
    const unseen = new Int32Array(never.buffer);
    never.unmap();
    expect(() => calls[name as keyof typeof calls](unseen, 0)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
  });

  it('checks timeouts, counts and options', () => {
    expect(() => wait(a, 0, 0, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => wait(a, 0, 0, '5' as never)).toThrow(TypeError);
    expect(() => notify(a, 0, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => waitAsync(a, 0, 0, { timout: 5 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('"timeout"') }));
    expect(() => waitAsync(a, 0, 0, { signal: {} as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => waitAsync(a, 0, 0, { timeout: NaN })).toThrow(RangeError);
  });
});
