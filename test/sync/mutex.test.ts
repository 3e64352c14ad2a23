import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedMemory, mapAnonymous, pageSize, type Mapping } from '../../lib';
import { Mutex } from '../../lib/sync';
import { waiterThreads } from '../../lib/sync/futex';
import { runNode } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import { segment, spawnLines, threadCount, until } from './lines';

trackLeaks();


/** A child that locks the Mutex at array[index] and holds it until killed. */
async function holder(name: string, index: number) {
  const child = spawnLines('sync-child.cjs', ['hold', name, String(index)]);
  const line = await child.next();
  expect(line.locked).toEqual({ ownerDied: false });
  return { child, tid: line.tid as number };
}

async function killHolder(h: Awaited<ReturnType<typeof holder>>) {
  h.child.proc.kill('SIGKILL');
  expect(await h.child.exited).toMatchObject({ signal: 'SIGKILL' });
}

let baselineThreads = 0;
beforeAll(async () => {
  // lockAsync's first wait starts the (one, lasting) idle waiter thread: start it before the baseline.
  const m = mapAnonymous(pageSize);
  const mu = Mutex.init(new Int32Array(m.buffer), 0);
  mu.lock();
  const p = mu.lockAsync();
  mu.unlock();
  await p;
  mu.unlock();
  m.unmap();
  baselineThreads = threadCount();
});
afterAll(async () => {
  await until(() => waiterThreads() <= 1);
  expect(threadCount(), 'threads back at baseline').toBe(baselineThreads);
});

describe('Mutex in one process', () => {
  it('locks, reports its owner, unlocks; tryLock never blocks', () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    const mu = Mutex.init(a, 4);
    expect(mu.owner).toBe(0);
    expect(mu.lock()).toEqual({ ownerDied: false });
    expect(mu.owner).toBe(process.pid); // the main thread's id is the pid
    expect(Mutex.threadId).toBe(process.pid);
    expect(new Mutex(a, 4).tryLock()).toBeNull(); // held (by this very thread)
    mu.unlock();
    expect(mu.tryLock()).toEqual({ ownerDied: false });
    mu.unlock();
    expect(Mutex.WORDS).toBe(16);
    m.unmap();
  });

  it('refuses what would be a bug: unlock when not held, lock when already held, consistent when consistent', () => {
    const m = mapAnonymous(pageSize);
    const mu = Mutex.init(new Int32Array(m.buffer), 0);
    expect(() => mu.unlock()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_NOT_OWNER' }));
    expect(() => mu.consistent()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_NOT_OWNER' }));
    mu.lock();
    expect(() => mu.lock()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_DEADLOCK' }));
    expect(() => mu.consistent()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_CONSISTENT' }));
    mu.unlock();
    m.unmap();
  });

  it('checks where it lives: initialized, even index, room for its words, shared and mapped', () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    expect(() => new Mutex(a, 0)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_UNINITIALIZED' }));
    expect(() => Mutex.init(a, 1)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => Mutex.init(a, a.length - 8)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => Mutex.init(new Int32Array(8), 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const priv = mapAnonymous(pageSize, { shared: false });
    expect(() => Mutex.init(new Int32Array(priv.buffer), 0)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NOT_SHARED' }));
    priv.unmap();
    const mu = Mutex.init(a, 16);
    m.unmap();
    for (const call of [() => mu.lock(), () => mu.tryLock(), () => mu.unlock(), () => mu.owner]) {
      expect(call).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
    }
  });

  it('pins its mapping while held: unmap is refused until unlock', async () => {
    const m = mapAnonymous(2 * pageSize);
    const mu = Mutex.init(new Int32Array(m.buffer), 0);
    mu.lock();
    expect(() => m.unmap()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' }));
    expect(() => m.unmap(pageSize, pageSize)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' }));
    expect(m.mapped).toBe(true);
    mu.unlock();
    await mu.lockAsync();
    expect(() => m.unmap()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' }));
    mu.unlock();
    m.unmap();
    expect(m.mapped).toBe(false);
  });

  it('unlock through another Mutex object over the same words releases the pin the locking one took', () => {
    const m = mapAnonymous(pageSize);
    const a = new Int32Array(m.buffer);
    const first = Mutex.init(a, 0);
    const other = Mutex.init(a, 16);
    other.lock();
    first.lock();
    new Mutex(a, 0).unlock(); // same words, same thread: the C library accepts it
    expect(() => m.unmap()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' })); // `other` is still held
    other.unlock();
    m.unmap();
    expect(m.mapped).toBe(false);
  });

  it('unlock through another mapping of the same object unlocks it where it was locked, and the locking mapping\'s pin goes', () => {
    const shm = SharedMemory.create(uniqueName('mutex-two-maps'), pageSize);
    shm.unlink();
    const m1 = shm.map();
    const m2 = shm.map();
    const first = Mutex.init(new Int32Array(m1.buffer), 0);
    const other = Mutex.init(new Int32Array(m1.buffer), 16);
    other.lock();
    first.lock();
    // Before: ERR_DEVMAP_MUTEX_CORRUPT, and the Mutex left not recoverable (its address is not on the robust list).
    new Mutex(new Int32Array(m2.buffer), 0).unlock();
    expect(first.tryLock()).toEqual({ ownerDied: false }); // recoverable, free, and ours again
    first.unlock();
    expect(() => new Mutex(new Int32Array(m2.buffer), 0).unlock()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_NOT_OWNER' }));
    expect(() => m1.unmap()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' })); // `other` is still held
    new Mutex(new Int32Array(m2.buffer), 16).unlock();
    m1.unmap();
    m2.unmap();
    shm.close();
  });

  it('pending lockAsync calls reject with ERR_DEVMAP_UNMAPPED when the mapping goes, and the process lives', async () => {
    const r = await runNode('sync-unmap-pending.cjs');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.unmapped).toBe(true);
    for (const o of out.outcomes) expect(['locked', 'ERR_DEVMAP_UNMAPPED']).toContain(o);
    expect(out.outcomes).toContain('ERR_DEVMAP_UNMAPPED');
  });

  it('lets async tasks of one thread take turns with lockAsync', async () => {
    const m = mapAnonymous(pageSize);
    const mu = Mutex.init(new Int32Array(m.buffer), 0);
    let inside = 0;
    let most = 0;
    const task = async () => {
      for (let i = 0; i < 20; i++) {
        await mu.lockAsync();
        inside++;
        most = Math.max(most, inside);
        await new Promise((r) => setImmediate(r));
        inside--;
        mu.unlock();
      }
    };
    await Promise.all([task(), task(), task()]);
    expect(most).toBe(1);
    expect(mu.owner).toBe(0);
    m.unmap();
  });
});

describe('Mutex across processes', () => {
  it('keeps a counter exact: 4 processes × 2000 increments, lock() and lockAsync() mixed', async () => {
    const s = segment('mutex');
    try {
      Mutex.init(s.a, 0);
      const runs = await Promise.all([0, 1, 2, 3].map(() => runNode('sync-child.cjs', ['count', s.name, '0', '32', '2000'])));
      for (const r of runs) {
        expect(r).toMatchObject({ code: 0, signal: null, stderr: '' });
        expect(JSON.parse(r.stdout)).toEqual({ done: 2000, died: 0 });
      }
      expect(s.a[32]).toBe(4 * 2000);
    } finally {
      s.done();
    }
  });

  it('unlock of a Mutex another process holds is ERR_DEVMAP_MUTEX_NOT_OWNER', async () => {
    const s = segment('mutex');
    try {
      const mu = Mutex.init(s.a, 0);
      const h = await holder(s.name, 0);
      expect(mu.owner).toBe(h.tid);
      expect(() => mu.unlock()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_NOT_OWNER' }));
      expect(mu.tryLock()).toBeNull();
      await killHolder(h);
      mu.lock();
      mu.consistent();
      mu.unlock();
    } finally {
      s.done();
    }
  });

  it('recovers when the holder is SIGKILLed: ownerDied, then consistent() makes it good again', async () => {
    const s = segment('mutex');
    try {
      const mu = Mutex.init(s.a, 0);
      await killHolder(await holder(s.name, 0));
      expect(mu.lock()).toEqual({ ownerDied: true });
      expect(mu.owner).toBe(process.pid);
      mu.consistent();
      mu.unlock();
      expect(mu.lock()).toEqual({ ownerDied: false });
      mu.unlock();
      // tryLock is told too.
      await killHolder(await holder(s.name, 0));
      expect(mu.tryLock()).toEqual({ ownerDied: true });
      mu.consistent();
      mu.unlock();
    } finally {
      s.done();
    }
  });

  it('wakes a pending lockAsync when the holder dies (the kernel wakes it), with ownerDied', async () => {
    const s = segment('mutex');
    try {
      const mu = Mutex.init(s.a, 0);
      const h = await holder(s.name, 0);
      const p = mu.lockAsync();
      await until(() => (Atomics.load(s.a, 0) & 0x80000000) !== 0); // lockAsync announced itself (FUTEX_WAITERS)
      await killHolder(h);
      expect(await p).toEqual({ ownerDied: true });
      mu.consistent();
      mu.unlock();
    } finally {
      s.done();
    }
  });

  it('becomes not recoverable when the new owner unlocks without consistent()', async () => {
    const s = segment('mutex');
    try {
      const mu = Mutex.init(s.a, 0);
      await killHolder(await holder(s.name, 0));
      expect(mu.lock()).toEqual({ ownerDied: true });
      mu.unlock();
      const gone = expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_NOT_RECOVERABLE' });
      expect(() => mu.lock()).toThrow(gone);
      expect(() => mu.tryLock()).toThrow(gone);
      await expect(mu.lockAsync()).rejects.toThrow(gone);
      // Re-initializing (once nobody uses it) makes a fresh Mutex.
      expect(Mutex.init(s.a, 0).lock()).toEqual({ ownerDied: false });
      mu.unlock();
    } finally {
      s.done();
    }
  });

  it('lockAsync gives up at its timeout or on abort, leaving nothing behind', async () => {
    const s = segment('mutex');
    try {
      const mu = Mutex.init(s.a, 0);
      const h = await holder(s.name, 0);
      const t0 = performance.now();
      await expect(mu.lockAsync({ timeout: 30 })).rejects.toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_TIMEOUT' }));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(29);
      const ac = new AbortController();
      const reason = new Error('enough');
      const p = mu.lockAsync({ signal: ac.signal });
      ac.abort(reason);
      await expect(p).rejects.toBe(reason);
      await expect(mu.lockAsync({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      await expect(mu.lockAsync({ timout: 1 } as never)).rejects.toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
      await until(() => waiterThreads() <= 1);
      await killHolder(h);
      expect(mu.lock()).toEqual({ ownerDied: true });
      mu.consistent();
      mu.unlock();
    } finally {
      s.done();
    }
  });

  it('recovers when the holding thread is a worker that is terminated', async () => {
    const s = segment('mutex');
    try {
      const r = await runNode('sync-child.cjs', ['worker-dies', s.name, '0']);
      expect(r).toMatchObject({ code: 0, signal: null });
      const out = JSON.parse(r.stdout);
      expect(out.held.locked).toEqual({ ownerDied: false });
      expect(out.held.tid).not.toBe(out.main); // the worker has a thread id of its own
      expect(out.ownerWhileHeld).toBe(out.held.tid);
      expect(out.tryWhileHeld).toBeNull();
      expect(out.after).toEqual({ ownerDied: true });
      expect(out.again).toEqual({ ownerDied: false });
    } finally {
      s.done();
    }
  });
});
