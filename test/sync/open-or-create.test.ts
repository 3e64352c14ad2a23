// Mutex.openOrCreate: peers started in any order, exactly one initializer, a dead initializer replaced.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Mutex } from '../../lib/sync';
import { notify } from '../../lib/sync/futex';
import { trackLeaks } from '../helpers/leaks';
import { segment, spawnLines, type LineChild } from './lines';

trackLeaks();

const INDEX = 16; // not at offset 0: the README puts its Mutex at word 16
const LINE = 8; // start line the children wait on
const SLOT = 10; // counter (and the word after it, scribbled on inside the critical section)
const LOCATIONS = 500; // Mutex locations the peers race on, one after another
const SIZE = 4 * (INDEX + LOCATIONS * Mutex.WORDS);

async function peers(name: string, n: number, times: number, locations = 1): Promise<LineChild[]> {
  const children = Array.from({ length: n }, () =>
    spawnLines('sync-child.cjs', ['open-or-create', name, String(INDEX), String(LINE), String(SLOT), String(times), String(locations)]),
  );
  for (const c of children) expect(await c.next()).toEqual({ ready: true });
  return children;
}

/** For each child, the locations it initialized. */
async function results(children: LineChild[]): Promise<number[][]> {
  const created: number[][] = [];
  for (const c of children) {
    const line = await c.next();
    created.push(line.created);
    expect(await c.exited).toMatchObject({ code: 0, signal: null });
  }
  return created;
}

describe('Mutex.openOrCreate', () => {
  it('six processes released at once: each location is initialized by exactly one, the counter is exact', async () => {
    const s = segment('ooc-race', SIZE);
    try {
      const children = await peers(s.name, 6, 300, LOCATIONS);
      Atomics.store(s.a, LINE, 1);
      notify(s.a, LINE);
      const created = (await results(children)).flat().sort((x, y) => x - y);
      expect(created).toEqual(Array.from({ length: LOCATIONS }, (_, i) => i));
      expect(s.a[SLOT]).toBe(6 * 300);
      expect(Mutex.openOrCreate(s.a, INDEX).created).toBe(false);
    } finally {
      s.done();
    }
  }, 30_000);

  it('waits for a live initializer, and takes over from one that is killed midway', async () => {
    const s = segment('ooc-stall');
    try {
      Atomics.store(s.a, LINE, 1);
      const stall = spawnLines('sync-child.cjs', ['claim-and-stall', s.name, String(INDEX)]);
      const { claimed } = await stall.next();
      expect(Atomics.load(s.a, INDEX + 12)).toBe(claimed);
      // Alive and not finished: a bounded openOrCreate gives up with a coded error, and initializes nothing.
      expect(() => Mutex.openOrCreate(s.a, INDEX, { timeout: 50 })).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_TIMEOUT' }));
      expect(s.a[INDEX]).toBe(0x5a5a5a5a);
      const [waiter] = await peers(s.name, 1, 10);
      stall.proc.kill('SIGKILL');
      expect(await stall.exited).toMatchObject({ signal: 'SIGKILL' });
      expect(await results([waiter])).toEqual([[0]]);
      expect(s.a[SLOT]).toBe(10);
      const again = Mutex.openOrCreate(s.a, INDEX);
      expect(again.created).toBe(false);
      expect(again.mutex.lock()).toEqual({ ownerDied: false });
      again.mutex.unlock();
    } finally {
      s.done();
    }
  }, 30_000);

  it('takes over from a Worker terminated between its claim and its marker', async () => {
    const s = segment('ooc-worker');
    try {
      const w = new Worker(
        `const { workerData, parentPort } = require('node:worker_threads');
         const { SharedMemory } = require(${JSON.stringify(require.resolve('../../dist'))});
         const { Mutex } = require(${JSON.stringify(require.resolve('../../dist/sync'))});
         const shm = SharedMemory.open(workerData);
         const m = shm.map();
         shm.close();
         const stat = require('node:fs').readFileSync('/proc/thread-self/stat', 'latin1');
         const ticks = BigInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
         Atomics.store(new BigInt64Array(m.buffer, 4 * (${INDEX} + 12), 1), 0, ((ticks & 0xffffffffn) << 32n) | BigInt(Mutex.threadId));
         m.unmap();
         parentPort.postMessage(Mutex.threadId);
         for (;;);`,
        { eval: true, workerData: s.name },
      );
      const tid = await new Promise((resolve) => w.once('message', resolve));
      expect(tid).not.toBe(process.pid);
      await w.terminate();
      const { mutex, created } = Mutex.openOrCreate(s.a, INDEX);
      expect(created).toBe(true);
      expect(mutex.lock()).toEqual({ ownerDied: false });
      mutex.unlock();
    } finally {
      s.done();
    }
  }, 30_000);

  it('refuses words that are neither zero nor a Mutex, and attaches to one made by Mutex.init', () => {
    const s = segment('ooc-corrupt');
    try {
      Atomics.store(s.a, INDEX + 15, 0x12345678);
      expect(() => Mutex.openOrCreate(s.a, INDEX)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_CORRUPT' }));
      Mutex.init(s.a, INDEX);
      expect(Mutex.openOrCreate(s.a, INDEX).created).toBe(false);
      expect(() => Mutex.openOrCreate(s.a, INDEX, { timeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => Mutex.openOrCreate(s.a, INDEX, { timout: 1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    } finally {
      s.done();
    }
  });
});
