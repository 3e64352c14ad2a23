// SharedResourceMap across real processes: a stress test (4 children, tens of thousands of operations, each
// unit tagged by its holder), a fault test (children SIGKILLed at random moments and inside the locked region
// after N journaled writes; survivors carry on; recovery and reclaim() account for every unit), and
// rmalloc_wait woken by another process's rmfree. Fixture: test/fixtures/srmap-child.cjs (built dist/).
import { describe, expect, it, onTestFinished } from 'vitest';
import { SharedMemory, type Mapping } from '../../lib';
import { SharedResourceMap, rmalloc, rmalloc_wait, rmfree } from '../../lib/rmap';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import { spawnLines, type LineChild } from '../sync/lines';
import { spawnPeer } from './peers';

trackLeaks();

const TOTAL = 400; // units 1..400
const OPS = Number(process.env.SRMAP_STRESS_OPS ?? 8000);

function segment(sizing: { mapsize: number; owners?: number }) {
  const name = uniqueName('srmap');
  const mapBytes = SharedResourceMap.bytesFor(sizing);
  const dataOffset = mapBytes;
  const shm = SharedMemory.create(name, mapBytes + 4 * (TOTAL + 1));
  const mapping = shm.map();
  shm.close();
  const mp = SharedResourceMap.create(mapping, { ...sizing, name: 'stress', onWarning: (m) => expect.fail(m) });
  rmfree(mp, TOTAL, 1);
  return {
    name,
    mapping,
    mp,
    data: new Int32Array(mapping.buffer, dataOffset, TOTAL + 1),
    args: (mode: string, ...rest: (string | number)[]) => [mode, name, String(dataOffset), String(TOTAL), ...rest.map(String)],
    done() {
      SharedMemory.unlink(name);
      mapping.unmap();
    },
  };
}

function accountedFor(mp: SharedResourceMap, data?: Int32Array) {
  expect(mp.freeRanges()).toEqual([{ index: 1, size: TOTAL }]);
  expect(mp.freeUnits).toBe(TOTAL);
  expect(mp.ownersInUse).toBe(0);
  expect(mp.journalEntries).toBe(0);
  if (data) expect(data.every((v) => v === 0)).toBe(true);
}

describe('SharedResourceMap across processes', () => {
  it(`stress: 4 processes × ${OPS} mixed rmalloc/rmfree/rmalloc_wait, no unit held twice, units conserved`, async () => {
    const s = segment({ mapsize: 64, owners: 64 });
    onTestFinished(() => s.done());
    const children = [1, 2, 3, 4].map((k) => spawnLines('srmap-child.cjs', s.args('stress', OPS, k)));
    const results = await Promise.all(
      children.map(async (c) => {
        let line = await c.next();
        while (!line.done && !line.error) line = await c.next();
        return { exit: await c.exited, last: line };
      }),
    );
    // Every child reported its own totals and exited 0 (an overlap makes it exit 3 with the unit named).
    for (const r of results) {
      expect(r.last, r.exit.stderr).toHaveProperty('done');
      expect(r.exit, r.exit.stderr).toMatchObject({ code: 0, signal: null });
    }
    accountedFor(s.mp, s.data);
    const st = s.mp.stats();
    expect(st.allocs).toBeGreaterThan(4 * OPS * 0.3);
    expect(st.waits, 'rmalloc_wait calls that slept').toBeGreaterThan(0);
    expect(st.wakeups, 'sleepers woken by another process').toBeGreaterThan(0);
    expect(st.recoveries).toBe(0);
  }, 60_000);

  it('fault: children SIGKILLed at random moments and inside the locked region; survivors carry on; all units accounted for', async () => {
    const s = segment({ mapsize: 64, owners: 64 });
    onTestFinished(() => s.done());
    const KILLS = Number(process.env.SRMAP_KILLS ?? 24);
    let killed = 0;
    let stoppedInside = 0;
    const finished: { code: number | null; signal: string | null; stderr: string }[] = [];
    const live = new Set<Promise<void>>();
    const launch = (n: number) => {
      // Every third child stops itself inside the lock after a random number of journaled writes.
      const stopAfter = n % 3 === 0 ? String(1 + ((n * 7) % 60)) : '';
      const c = spawnPeer(s.args('fault', 1500, 100 + n), stopAfter ? { DEVMAP_SRMAP_STOP_AFTER: stopAfter } : {});
      const run = (async () => {
        const first = await c.next();
        expect(first).toHaveProperty('ready');
        if (stopAfter) {
          // It stops itself inside the lock (the others block on it): kill it right there.
          const line = await Promise.race([c.next(), c.exited.then(() => ({}))]);
          if (line && 'srmapStopped' in line) {
            stoppedInside++;
            c.proc.kill('SIGKILL');
            killed++;
          }
        } else if (killed < KILLS) {
          await new Promise((r) => setTimeout(r, Math.random() * 40));
          if (c.proc.exitCode === null && c.proc.kill('SIGKILL')) killed++;
        }
        const exit = await c.exited;
        if (exit.signal !== 'SIGKILL') {
          // What it printed after 'ready' (its totals, or the error that made it exit non-zero).
          const said = [];
          for (let line; (line = await Promise.race([c.next(), Promise.resolve(null)])) !== null; ) said.push(line);
          finished.push({ ...exit, stderr: exit.stderr + JSON.stringify(said) });
        }
      })();
      const tracked: Promise<void> = run.then(
        () => void live.delete(tracked),
        () => void live.delete(tracked),
      );
      live.add(tracked);
      all.push(run);
    };
    const all: Promise<void>[] = [];
    let n = 0;
    // Four children at all times until enough have been killed; then the last ones finish normally.
    while (killed < KILLS) {
      while (live.size < 4) launch(n++);
      await Promise.race(live);
    }
    await Promise.all(all);
    // Survivors (children that were not killed) found no unit held twice and exited normally.
    for (const f of finished) expect(f, f.stderr).toMatchObject({ code: 0, signal: null });
    expect(finished.length, 'survivors').toBeGreaterThan(0);
    expect(killed).toBeGreaterThanOrEqual(KILLS);
    expect(stoppedInside).toBeGreaterThan(0);
    // Recovery (rolled back by the next locker) and reclaim() of what the dead held: every unit free again.
    s.mp.reclaim();
    accountedFor(s.mp);
    expect(s.mp.recoveries).toBeGreaterThanOrEqual(stoppedInside);
  }, 120_000);

  it('rmalloc_wait in one process is woken by rmfree in another, both ways', async () => {
    const s = segment({ mapsize: 8 });
    onTestFinished(() => s.done());
    const all = rmalloc(s.mp, TOTAL);
    expect(all).toBe(1);
    // A child waits; this process frees.
    const c = spawnLines('srmap-child.cjs', s.args('wait', 5));
    expect(await c.next()).toEqual({ waiting: true });
    const sleepers = new Int32Array(s.mapping.buffer, 0, 8);
    while (Atomics.load(sleepers, 6) === 0) await new Promise((r) => setTimeout(r, 2)); // it sleeps now
    rmfree(s.mp, 5, 1);
    expect(await c.next()).toEqual({ got: 1 });
    expect(await c.exited).toMatchObject({ code: 0 });
    // This process waits; a child frees.
    const p = rmalloc_wait(s.mp, 10);
    const f = spawnLines('srmap-child.cjs', s.args('free', 10, 100));
    await expect(p).resolves.toBe(100);
    expect(await f.exited).toMatchObject({ code: 0 });
    expect(s.mp.stats()).toMatchObject({ waits: 2 });
    rmfree(s.mp, 10, 100);
    rmfree(s.mp, 94, 6); // what is left of the first allocation: [6, 100) and [110, 401)
    rmfree(s.mp, TOTAL - 109, 110);
    accountedFor(s.mp);
  }, 30_000);

  it('attach from another mapping of the same object sees the same map', () => {
    const s = segment({ mapsize: 8 });
    const shm = SharedMemory.open(s.name);
    const other: Mapping = shm.map();
    shm.close();
    const b = SharedResourceMap.attach(other);
    expect(rmalloc(b, 7)).toBe(1);
    expect(s.mp.freeUnits).toBe(TOTAL - 7);
    rmfree(s.mp, 7, 1);
    expect(b.freeRanges()).toEqual([{ index: 1, size: TOTAL }]);
    other.unmap();
    s.done();
  });
});
