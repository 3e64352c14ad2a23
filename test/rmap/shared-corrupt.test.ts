// A corrupt shared resource map is untrusted input, not a crash (issue 12, class 8). Each case corrupts a
// real segment, then a child process (test/fixtures/srmap-child.cjs, mode 'ops') attaches and runs every
// operation once: it must exit normally, with no signal, within the hang guard, and every operation must
// end in a value or an error with a code. Targeted corruptions (a tree cycle, an out-of-range root or link,
// chains and lists that loop, counts past their capacities, a journal entry aimed at the mutex) must give
// ERR_DEVMAP_CORRUPT and leave the segment marked corrupt for every process; random byte flips (fast-check)
// must give values or coded errors. The mutex's own 64 bytes are left out of the flips: a lock word naming
// a live thread is a held lock, not a corruption anyone can see (the Mutex checks its own marker).
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SharedMemory, type Mapping } from '../../lib';
import { SharedResourceMap, rmalloc, rmfree } from '../../lib/rmap';
import { Mutex } from '../../lib/sync';
import { JOURNAL_AT, MUTEX_AT, W } from '../../lib/rmap/shared/layout';
import { H32, H64, LISTS, NIL, type RmapStore } from '../../lib/rmap/store';
import { fixture, run } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import { spawnPeer } from './peers';

trackLeaks();

const RUNS = Number(process.env.FUZZ_RUNS ?? 25);
const HANG_GUARD_MS = 20_000;
const quiet = () => undefined;

type Policy = 'classic' | 'illumos';

interface Victim {
  name: string;
  mapping: Mapping;
  mp: SharedResourceMap;
  s: RmapStore;
  bytes: number;
}

/** A map with several free ranges (classic) or spans, segments, list members and hashed allocations (illumos). */
function victim(policy: Policy): Victim {
  const name = uniqueName('srmap-bad');
  const sizing = policy === 'classic' ? { mapsize: 32, owners: 32 } : { policy: 'illumos' as const, capacity: 64, owners: 32 };
  const bytes = SharedResourceMap.bytesFor(sizing);
  const shm = SharedMemory.create(name, bytes + 8); // + the child's one data word
  const mapping = shm.map();
  shm.close();
  onTestFinished(() => {
    SharedMemory.unlink(name);
    mapping.unmap();
  });
  const mp = SharedResourceMap.create(mapping, { ...sizing, name: 'victim', onWarning: quiet });
  rmfree(mp, 1000, 1);
  if (policy === 'illumos') rmfree(mp, 500, 5000);
  const got = Array.from({ length: 12 }, () => rmalloc(mp, 10));
  for (let i = 0; i < got.length; i += 2) rmfree(mp, 10, got[i]);
  return { name, mapping, mp, s: mp.store, bytes };
}

interface OpResult {
  op: string;
  value?: unknown;
  code?: unknown;
  message?: string;
}

/** Runs every operation in a child; asserts a normal exit and a value or a coded error for each. */
async function opsIn(v: Victim): Promise<OpResult[]> {
  const r = await run(process.execPath, [fixture('srmap-child.cjs'), 'ops', v.name, String(v.bytes), '0'], { timeout: HANG_GUARD_MS });
  expect(r.signal, `the child was stopped (a hang or a crash): ${r.stderr}`).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  const { results } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { results: OpResult[] };
  for (const x of results) if (!('value' in x)) expect(typeof x.code, `${x.op} threw without a code: ${x.message}`).toBe('string');
  return results;
}

/** The map is reported corrupt and marked so: another process (the child) and this one see it. */
async function expectCorrupt(v: Victim): Promise<void> {
  const results = await opsIn(v);
  expect(results.filter((x) => x.code === 'ERR_DEVMAP_CORRUPT').length, JSON.stringify(results)).toBeGreaterThan(0);
  if (results[0].op !== 'attach') {
    expect(SharedResourceMap.inspect(v.mapping).corrupt).toBe(true);
    // Marked: every later call in every process refuses, and the lock was released (this one takes it).
    expect(() => rmalloc(v.mp, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_CORRUPT' }));
    expect(() => SharedResourceMap.attach(v.mapping)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_CORRUPT' }));
  }
}

const root = (s: RmapStore) => s.h32[H32.ROOT];
/** A node of the tree with a child, and that child. */
function parentAndChild(s: RmapStore): [number, number] {
  const r = root(s);
  return s.lt[r] !== NIL ? [r, s.lt[r]] : [r, s.rt[r]];
}
/** The first member of the first non-empty illumos free list. */
function listed(s: RmapStore): number {
  for (let k = 0; k < LISTS; k++) if (s.h32[H32.LIST + k] !== NIL) return s.h32[H32.LIST + k];
  throw new Error('no free segment');
}
function hashed(s: RmapStore): number {
  for (const b of s.buckets) if (b !== NIL) return b;
  throw new Error('no allocated segment');
}

const targeted: [string, Policy, (v: Victim) => void][] = [
  ['a tree cycle (a child links back to the root)', 'classic', (v) => (v.s.lt[parentAndChild(v.s)[1]] = root(v.s))],
  ['a node that is its own child', 'classic', (v) => (v.s.rt[root(v.s)] = root(v.s))],
  ['an out-of-range root', 'classic', (v) => (v.s.h32[H32.ROOT] = v.s.capacity + 5)],
  ['an out-of-range link', 'classic', (v) => (v.s.rt[parentAndChild(v.s)[1]] = 1_000_000)],
  ['a negative link', 'classic', (v) => (v.s.lt[root(v.s)] = -7)],
  ['a released-node list that holds a live node', 'classic', (v) => (v.s.h32[H32.FREE_NODE] = root(v.s))],
  ['a range count past the map size', 'classic', (v) => (v.s.h64[H64.RANGES] = 1e9)],
  ['owner records in use past the table', 'classic', (v) => (new Int32Array(v.mapping.buffer)[W.OWNERS_USED] = 1_000_000)],
  ['a journal count past its capacity', 'classic', (v) => (new Int32Array(v.mapping.buffer)[W.JCOUNT] = 1 << 30)],
  ['a span chain that loops', 'illumos', (v) => (v.s.an[v.s.an[root(v.s)]] = v.s.an[root(v.s)])],
  ['a free list that loops', 'illumos', (v) => (v.s.kn[listed(v.s)] = listed(v.s))],
  ['a hash chain that loops', 'illumos', (v) => (v.s.hn[hashed(v.s)] = hashed(v.s))],
  ['a hash bucket out of range', 'illumos', (v) => v.s.buckets.fill(123_456)],
  ['an out-of-range span root', 'illumos', (v) => (v.s.h32[H32.ROOT] = 1 << 29)],
];

describe('a corrupt shared resource map: ERR_DEVMAP_CORRUPT, never a crash or a hang', () => {
  for (const [what, policy, corrupt] of targeted) {
    it(`${policy}: ${what}`, async () => {
      const v = victim(policy);
      corrupt(v);
      await expectCorrupt(v);
    });
  }

  it('a journal entry aimed at the mutex is refused, and the mutex stays usable', async () => {
    const v = victim('classic');
    // A process killed inside the locked region, after 3 journaled writes: the mutex is owner-died.
    const child = spawnPeer(['fault', v.name, String(v.bytes), '0', '50', '1'], { DEVMAP_SRMAP_STOP_AFTER: '3' });
    let line = await child.next();
    while (!('srmapStopped' in line)) line = await child.next();
    child.proc.kill('SIGKILL');
    await child.exited;
    const i32 = new Int32Array(v.mapping.buffer);
    const f64 = new Float64Array(v.mapping.buffer);
    expect(i32[W.JCOUNT]).toBeGreaterThan(0);
    f64[JOURNAL_AT / 8] = 2 * MUTEX_AT; // entry 0: "restore the Int32 word at the mutex's first byte"
    f64[JOURNAL_AT / 8 + 1] = 0x12345;
    await expectCorrupt(v);
    expect(i32[MUTEX_AT / 4]).not.toBe(0x12345);
    // The recovering child made the mutex consistent before it unlocked: it is free and usable.
    const mutex = new Mutex(i32, MUTEX_AT / 4);
    expect(mutex.tryLock()).toEqual({ ownerDied: false });
    mutex.unlock();
  });

  it('random byte flips: every operation ends in a value or a coded error', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Policy>('classic', 'illumos'),
        fc.array(fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 8 }),
        async (policy, flips) => {
          const v = victim(policy);
          const bytes = new Uint8Array(v.mapping.buffer, 0, v.bytes);
          for (const { at, bit } of flips) {
            let o = at % v.bytes;
            if (o >= MUTEX_AT && o < MUTEX_AT + 64) o = (o + 64) % v.bytes;
            bytes[o] ^= 1 << bit;
          }
          await opsIn(v);
        },
      ),
      { numRuns: RUNS },
    );
  }, 120_000);
});
