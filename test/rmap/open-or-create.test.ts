// SharedResourceMap.openOrCreate: peers started at the same moment — exactly one formats the region, the
// others wait and attach; an initializer killed midway is detected and replaced; the caller learns which
// happened; a map of other options, foreign bytes and a stalled live initializer are coded errors.
import { describe, expect, it, onTestFinished } from 'vitest';
import { SharedMemory, mapAnonymous, pageSize, type Mapping } from '../../lib';
import { SharedResourceMap, rmalloc, rmfree } from '../../lib/rmap';
import { notify } from '../../lib/sync/futex';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import type { LineChild } from '../sync/lines';
import { spawnPeer } from './peers';

trackLeaks();

const SIZING = { mapsize: 64, owners: 64 }; // what the fixture's open-or-create mode passes
const TOTAL = 500;

function segment(): { name: string; mapping: Mapping; start: Int32Array; args: string[] } {
  const name = uniqueName('srmap-ooc');
  const bytes = SharedResourceMap.bytesFor(SIZING);
  const shm = SharedMemory.create(name, bytes + 4 * (TOTAL + 1));
  const mapping = shm.map();
  shm.close();
  onTestFinished(() => {
    SharedMemory.unlink(name);
    mapping.unmap();
  });
  return { name, mapping, start: new Int32Array(mapping.buffer, bytes, 1), args: ['open-or-create', name, String(bytes), String(TOTAL)] };
}

async function finish(c: LineChild): Promise<{ created: boolean; allocs: number }> {
  const line = await c.next();
  expect(line, JSON.stringify(line)).toHaveProperty('created');
  expect(await c.exited).toMatchObject({ code: 0, signal: null });
  return line;
}

describe('SharedResourceMap.openOrCreate', () => {
  it('six processes released at once: exactly one formats the map, every one uses it', async () => {
    for (let round = 0; round < 3; round++) {
      const s = segment();
      const peers = Array.from({ length: 6 }, () => spawnPeer(s.args));
      for (const p of peers) expect(await p.next()).toHaveProperty('ready');
      Atomics.store(s.start, 0, 1);
      notify(s.start, 0);
      const results = await Promise.all(peers.map(finish));
      expect(results.filter((r) => r.created).length).toBe(1);
      const mp = SharedResourceMap.attach(s.mapping);
      expect(mp.freeRanges()).toEqual([{ index: 1, size: TOTAL }]); // one rmfree of the units: one format
      expect(mp.stats().recoveries).toBe(0);
      expect(mp.name).toBe('peers');
    }
  }, 60_000);

  it('an initializer killed while formatting is replaced by the next peer, which is told it created the map', async () => {
    const s = segment();
    const dying = spawnPeer(s.args, { DEVMAP_SRMAP_STOP_IN_FORMAT: '1' });
    expect(await dying.next()).toHaveProperty('ready');
    Atomics.store(s.start, 0, 1);
    expect(await dying.next()).toHaveProperty('srmapStopped');
    // Stopped after its claim and the magic: a live claimant. A peer with a timeout gives up, coded.
    expect(() => SharedResourceMap.openOrCreate(s.mapping, { ...SIZING, timeout: 50 })).toThrow(
      expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_TIMEOUT' }),
    );
    dying.proc.kill('SIGKILL');
    await dying.exited;
    const next = spawnPeer(s.args);
    expect(await next.next()).toHaveProperty('ready');
    expect(await finish(next)).toMatchObject({ created: true });
    expect(SharedResourceMap.attach(s.mapping).freeUnits).toBe(TOTAL);
  }, 30_000);

  it('in one process: created once, then attached; the same map either way', () => {
    const m = mapAnonymous(Math.ceil(SharedResourceMap.bytesFor(SIZING) / pageSize) * pageSize);
    onTestFinished(() => void m.unmap());
    const first = SharedResourceMap.openOrCreate(m, { ...SIZING, name: 'once' });
    expect(first.created).toBe(true);
    rmfree(first.map, 10, 1);
    const second = SharedResourceMap.openOrCreate(m, SIZING);
    expect(second.created).toBe(false);
    expect(second.map.name).toBe('once');
    expect(rmalloc(second.map, 10)).toBe(1);
    expect(first.map.freeUnits).toBe(0);
  });

  it('refuses a map made with other options, and bytes that are neither zero nor a map', () => {
    const m = mapAnonymous(64 * pageSize);
    onTestFinished(() => void m.unmap());
    SharedResourceMap.openOrCreate(m, SIZING);
    for (const other of [{ mapsize: 128, owners: 64 }, { mapsize: 64, owners: 8 }, { ...SIZING, overflow: 'bsd' as const }, { policy: 'illumos' as const, owners: 64 }]) {
      expect(() => SharedResourceMap.openOrCreate(m, other)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_MISMATCH' }));
    }
    new Int32Array(m.buffer, 4096)[0] = 0x1234; // somebody's data at another offset
    expect(() => SharedResourceMap.openOrCreate(m, { ...SIZING, offset: 4096 })).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_BAD_MAGIC' }));
    expect(() => SharedResourceMap.openOrCreate(m, { ...SIZING, timeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.openOrCreate(m, { ...SIZING, timeot: 5 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });
});
