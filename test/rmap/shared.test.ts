// SharedResourceMap in one process: the same answers as the historical references (property runs, with the
// journal's size bound measured), SPEC C.8, the journal's rollback, owner records, reclaim, inspect, errors.
// The multi-process tests (stress, SIGKILL, cross-process waits) are in shared-procs.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mapAnonymous, pageSize, type Mapping } from '../../lib';
import { ResourceMapPanic, SharedResourceMap, rmalloc, rmalloc_wait, rmfree, rmfreemap, type ResourceMapWarning } from '../../lib/rmap';
import { ClassicRef, IllumosRef, RefPanic, type RefMap } from './reference';
import { playC8, same } from './same';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const RUNS = Number(process.env.FUZZ_RUNS ?? 25);
const quiet = () => undefined;

function region(opts: Parameters<typeof SharedResourceMap.bytesFor>[0]): Mapping {
  return mapAnonymous(Math.ceil(SharedResourceMap.bytesFor(opts) / pageSize) * pageSize);
}

type Op = { t: 'alloc'; size: number } | { t: 'free'; size: number; index: number } | { t: 'back'; pick: number; part: boolean } | { t: 'far'; size: number; k: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 40 }) }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('free' as const), size: fc.integer({ min: 0, max: 30 }), index: fc.integer({ min: 0, max: 300 }) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('back' as const), pick: fc.nat(), part: fc.boolean() }), weight: 5 },
  { arbitrary: fc.record({ t: fc.constant('far' as const), size: fc.integer({ min: 1, max: 1e6 }), k: fc.integer({ min: 0, max: 50 }) }), weight: 1 },
);


/** Largest number of store writes one operation made, over every property run (the journal's bound). */
const peaks = new Map<string, { writes: number; capacity: number; journal: number }>();

function runOps(label: string, mp: SharedResourceMap, ref: RefMap, ops: Op[], capacity: number): void {
  // Count the store's writes per operation through its write hook (the journal stays underneath).
  const journal = mp.store.hook!;
  let writes = 0;
  let peak = 0;
  mp.store.hook = {
    before64: (f, i) => (writes++, journal.before64(f, i)),
    before32: (f, i) => (writes++, journal.before32(f, i)),
  };
  const op = <T>(fn: () => T): T => {
    writes = 0;
    try {
      return fn();
    } finally {
      peak = Math.max(peak, writes);
      expect(mp.journalEntries, 'journal committed').toBe(0);
    }
  };
  const outstanding: [number, number][] = [];
  for (const o of ops) {
    switch (o.t) {
      case 'alloc': {
        const r = same(() => op(() => rmalloc(mp, o.size)), () => ref.alloc(o.size));
        if (r.ok && r.value !== 0) outstanding.push([r.value, o.size]);
        break;
      }
      case 'free':
        same(() => op(() => rmfree(mp, o.size, o.index)), () => void ref.rmfree(o.size, o.index));
        break;
      case 'far':
        same(() => op(() => rmfree(mp, o.size, 2 ** 52 + o.k * 1e6)), () => void ref.rmfree(o.size, 2 ** 52 + o.k * 1e6));
        break;
      case 'back': {
        if (outstanding.length === 0) break;
        const i = o.pick % outstanding.length;
        const [index, size] = outstanding[i];
        const give = o.part && size > 1 ? Math.floor(size / 2) : size;
        const r = same(() => op(() => rmfree(mp, give, index)), () => void ref.rmfree(give, index));
        if (r.ok) {
          if (give === size) outstanding.splice(i, 1);
          else outstanding[i] = [index + give, size - give];
        }
        break;
      }
    }
    expect(op(() => mp.freeRanges())).toEqual(ref.ranges());
    expect(op(() => mp.largestFree)).toBe(Math.max(0, ...ref.ranges().map((r) => r.size)));
    if (mp.policy === 'classic') expect(mp.slotsFree).toBe(ref.slotsFree);
  }
  // The owner records cover allocated units only, each once: pairwise disjoint, none of them free. (Random
  // frees may return allocated units the test's own list still holds; the records follow the map.)
  const held = mp.owners().map((r) => [r.index, r.size]).sort((a, b) => a[0] - b[0]);
  const free = ref.ranges();
  for (let i = 0; i < held.length; i++) {
    const [a, n] = held[i];
    if (i > 0) expect(held[i - 1][0] + held[i - 1][1], 'records disjoint').toBeLessThanOrEqual(a);
    for (const r of free) expect(a + n <= r.index || a >= r.index + r.size, `record [${a}, ${a + n}) is not free`).toBe(true);
  }
  if (!ops.some((o) => o.t === 'free' || o.t === 'far')) {
    expect(held).toEqual(outstanding.slice().sort((a, b) => a[0] - b[0]));
  }
  const p = peaks.get(label) ?? { writes: 0, capacity, journal: (mp.policy === 'classic' ? 2 * capacity : 0) + 512 };
  p.writes = Math.max(p.writes, peak);
  peaks.set(label, p);
  mp.store.hook = journal;
}

describe('SharedResourceMap gives the same answers as the historical algorithms', () => {
  const configs: { label: string; policy: 'classic' | 'illumos'; overflow?: 'solaris' | 'bsd' | 'svr4'; mapsize: number; capacity: number; ref: () => RefMap }[] = [];
  for (const overflow of ['solaris', 'bsd', 'svr4'] as const) {
    for (const mapsize of [1, 3, 8, 64]) {
      configs.push({ label: `classic/${overflow} mapsize ${mapsize}`, policy: 'classic', overflow, mapsize, capacity: mapsize, ref: () => new ClassicRef(mapsize, overflow) });
    }
  }
  configs.push({ label: 'illumos', policy: 'illumos', mapsize: 0, capacity: 4096, ref: () => new IllumosRef() });

  for (const c of configs) {
    it(c.label, () => {
      const m = region({ policy: c.policy, mapsize: c.mapsize, capacity: c.capacity });
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
          const mp = SharedResourceMap.create(m, { policy: c.policy, overflow: c.overflow, mapsize: c.mapsize, capacity: c.capacity, onWarning: quiet });
          runOps(c.label, mp, c.ref(), ops, c.capacity);
        }),
        { numRuns: RUNS },
      );
      m.unmap();
    });
  }

  it('long sequences over deep trees stay within the journal bound', () => {
    for (const [policy, mapsize] of [['classic', 400], ['illumos', 0]] as const) {
      const capacity = policy === 'classic' ? 400 : 4096;
      const m = region({ policy, mapsize, capacity, owners: 4096 });
      const deep = fc.array(
        fc.oneof(
          { arbitrary: fc.record({ t: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 6 }) }), weight: 5 },
          { arbitrary: fc.record({ t: fc.constant('back' as const), pick: fc.nat(), part: fc.boolean() }), weight: 4 },
          { arbitrary: fc.record({ t: fc.constant('alloc' as const), size: fc.integer({ min: 7, max: 200 }) }), weight: 1 },
        ),
        { minLength: 800, maxLength: 1200 },
      );
      fc.assert(
        fc.property(deep, (ops) => {
          const mp = SharedResourceMap.create(m, { policy, mapsize, capacity, owners: 4096, onWarning: quiet });
          const ref = policy === 'classic' ? new ClassicRef(mapsize) : new IllumosRef();
          runOps(`deep ${policy}`, mp, ref, [{ t: 'free', size: 5000, index: 1 }, ...ops], capacity);
        }),
        { numRuns: 2 },
      );
      m.unmap();
    }
  });

  it('no operation wrote more words than the journal holds (measured)', () => {
    expect(peaks.size).toBeGreaterThan(0);
    if (process.env.SRMAP_PEAKS) console.info([...peaks].map(([l, p]) => `${l}: ${p.writes} writes (journal ${p.journal})`).join('\n'));
    for (const [label, p] of peaks) {
      // + owner-table and header writes: at most 12 per operation.
      expect(p.writes + 12, `${label}: ${p.writes} store writes in one operation`).toBeLessThan(p.journal);
    }
  });
});

describe('SPEC C.8 on a shared map', () => {
  it('matches every row: return, free list, free slots, then the panic', () => {
    const m = region({ mapsize: 3 });
    const mp = SharedResourceMap.create(m, { mapsize: 3 });
    const pairs = () => mp.freeRanges().map((r) => [r.index, r.size]);
    playC8(mp);
    expect(() => rmfree(mp, 3, 10)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_RMAP_OVERLAP', message: 'bad rmfree' }));
    expect(pairs()).toEqual([[9, 27]]);
    expect(mp.stats()).toMatchObject({ panics: 1, allocs: 5, failures: 1, frees: 4, recoveries: 0 });
    // The owner records: what is still allocated is [1, 9), [36, 101), held by this process.
    expect(mp.owners().map((r) => [r.index, r.size]).sort((a, b) => a[0] - b[0])).toEqual([[1, 8], [36, 65]]);
    expect(mp.owners().every((r) => r.pid === process.pid)).toBe(true);
    m.unmap();
  });

  it('the C.3 overflow rules warn with the historical messages', () => {
    for (const [overflow, list, message] of [
      ['solaris', [[21, 10], [41, 60]], 'rmallocmap: rmap overflow, lost [1, 11]'],
      ['bsd', [[1, 10], [41, 60]], 'rmallocmap: rmap ovflo, lost [21,31)'],
      ['svr4', [[1, 10], [41, 60]], 'rmfree map overflow rmallocmap.  Lost 10 item(s) at 21'],
    ] as const) {
      const m = region({ mapsize: 2 });
      const warnings: string[] = [];
      const mp = SharedResourceMap.create(m, { mapsize: 2, overflow, onWarning: (msg) => warnings.push(msg) });
      rmfree(mp, 100, 1);
      for (let i = 0; i < 4; i++) rmalloc(mp, 10);
      rmfree(mp, 10, 1);
      rmfree(mp, 10, 21);
      expect(mp.freeRanges().map((r) => [r.index, r.size])).toEqual(list);
      expect(warnings).toEqual([message]);
      m.unmap();
    }
  });
});

describe('the undo journal, in process', () => {
  it('an operation that throws midway is rolled back word for word', () => {
    const m = region({ mapsize: 2 });
    let explode = false;
    const mp = SharedResourceMap.create(m, {
      mapsize: 2,
      onWarning: () => {
        if (explode) throw new Error('boom');
      },
    });
    rmfree(mp, 100, 1);
    for (let i = 0; i < 4; i++) rmalloc(mp, 10);
    rmfree(mp, 10, 1);
    // Everything but the journal's own entries (left behind; only its count matters).
    const ownersAt = new Int32Array(m.buffer)[14];
    const bytes = () => Buffer.concat([m.read(0, 320), m.read(ownersAt, SharedResourceMap.bytesFor({ mapsize: 2 }) - ownersAt)]);
    const before = bytes();
    explode = true;
    // The overflow free has already discarded a range and inserted another when the warning throws.
    expect(() => rmfree(mp, 10, 21)).toThrow('boom');
    expect(Buffer.compare(before, bytes()), 'every byte back').toBe(0);
    expect(mp.journalEntries).toBe(0);
    m.unmap();
  });

  it('re-entrant calls from onWarning run inside the same locked operation', () => {
    const m = region({ mapsize: 2 });
    const seen: number[] = [];
    const mp: SharedResourceMap = SharedResourceMap.create(m, { mapsize: 2, onWarning: () => seen.push(mp.freeUnits) });
    rmfree(mp, 100, 1);
    for (let i = 0; i < 4; i++) rmalloc(mp, 10);
    rmfree(mp, 10, 1);
    rmfree(mp, 10, 21);
    expect(seen).toEqual([70]);
    m.unmap();
  });
});

describe('owners and reclaim()', () => {
  it('records each allocation; partial frees trim and split; reclaim keeps the living', () => {
    const m = region({ mapsize: 8 });
    const mp = SharedResourceMap.create(m, { mapsize: 8 });
    rmfree(mp, 100, 1);
    expect(rmalloc(mp, 30)).toBe(1);
    rmfree(mp, 10, 11); // a hole in the middle: [1, 11) and [21, 31) stay recorded
    expect(mp.owners().map((r) => [r.index, r.size])).toEqual([[1, 10], [21, 10]]);
    rmfree(mp, 5, 1); // the head
    rmfree(mp, 5, 26); // the tail
    expect(mp.owners().map((r) => [r.index, r.size])).toEqual([[6, 5], [21, 5]]);
    expect(mp.ownersInUse).toBe(2);
    expect(mp.reclaim()).toBe(0); // this process is alive
    m.unmap();
  });

  it('reclaim() returns units whose owner pid is gone, or reused by another process', () => {
    const m = region({ mapsize: 8 });
    const mp = SharedResourceMap.create(m, { mapsize: 8 });
    rmfree(mp, 100, 1);
    rmalloc(mp, 10);
    rmalloc(mp, 20);
    rmalloc(mp, 5);
    // Forge the owners the way a dead process and a reused pid would leave them.
    const f = new Float64Array(m.buffer);
    const at = mp.offset / 8 + new Int32Array(m.buffer)[mp.offset / 4 + 14] / 8;
    f[at + 2] = 0x3ffffff0; // record 0: a pid that does not exist
    f[at + 4 + 3] = 12345; // record 1: our pid, another start time
    expect(mp.reclaim()).toBe(30);
    expect(mp.freeUnits).toBe(95);
    expect(mp.owners().map((r) => r.size)).toEqual([5]);
    expect(mp.stats()).toMatchObject({ reclaimedUnits: 30, ownersInUse: 1 });
    m.unmap();
  });

  it('a full owner table fails rmalloc like a lack of space, once warned', () => {
    const m = region({ mapsize: 4, owners: 2 });
    const warnings: ResourceMapWarning[] = [];
    const mp = SharedResourceMap.create(m, { mapsize: 4, owners: 2, onWarning: (_, w) => warnings.push(w) });
    rmfree(mp, 100, 1);
    expect(rmalloc(mp, 1)).toBe(1);
    expect(rmalloc(mp, 1)).toBe(2);
    expect(rmalloc(mp, 1)).toBe(0);
    expect(rmalloc(mp, 1)).toBe(0);
    expect(warnings.map((w) => w.code)).toEqual(['DEVMAP_RMAP_OWNERS_FULL']);
    expect(mp.stats()).toMatchObject({ ownersFull: 2, failures: 2 });
    rmfree(mp, 1, 1);
    expect(rmalloc(mp, 1)).toBe(1);
    m.unmap();
  });

  it('one rmfree over a full owner table, and one reclaim of all of it, fit the journal', () => {
    for (const policy of ['classic', 'illumos'] as const) {
      const m = region({ policy, mapsize: 4, capacity: 600, owners: 256 });
      const mp = SharedResourceMap.create(m, { policy, mapsize: 4, capacity: 600, owners: 256 });
      rmfree(mp, 1000, 1);
      for (let i = 0; i < 256; i++) expect(rmalloc(mp, 2)).toEqual(policy === 'classic' ? 1 + 2 * i : expect.any(Number));
      expect(mp.ownersInUse).toBe(256);
      if (policy === 'classic') {
        rmfree(mp, 512, 1); // covers all 256 records at once
        expect(mp.ownersInUse).toBe(0);
        for (let i = 0; i < 256; i++) rmalloc(mp, 2);
      }
      const f = new Float64Array(m.buffer);
      const at = new Int32Array(m.buffer)[14] / 8;
      for (let r = 0; r < 256; r++) f[at + 4 * r + 2] = 0x3ffffff0; // every owner gone
      expect(mp.reclaim()).toBe(512);
      expect(mp.freeUnits).toBe(1000);
      expect(mp.ownersInUse).toBe(0);
      m.unmap();
    }
  });

  it('owners: 0 turns the table off', () => {
    const m = region({ mapsize: 4, owners: 0 });
    const mp = SharedResourceMap.create(m, { mapsize: 4, owners: 0 });
    rmfree(mp, 100, 1);
    for (let i = 0; i < 50; i++) expect(rmalloc(mp, 1)).toBe(i + 1);
    expect(mp.ownersInUse).toBe(0);
    expect(mp.reclaim()).toBe(0);
    m.unmap();
  });
});

describe('create, attach, inspect', () => {
  it('attach sees the same live map without reformatting it', async () => {
    const m = region({ policy: 'illumos', capacity: 64 });
    const a = SharedResourceMap.create(m, { policy: 'illumos', capacity: 64, name: 'frames' });
    rmfree(a, 1000, 4096);
    const x = rmalloc(a, 100);
    const b = SharedResourceMap.attach(m);
    expect(b.name).toBe('frames');
    expect(b.policy).toBe('illumos');
    expect(b.freeRanges()).toEqual(a.freeRanges());
    rmfree(b, 100, x);
    expect(a.freeUnits).toBe(1000);
    expect(String(b)).toMatch(/^SharedResourceMap frames \(illumos\)/);
    // A waiter on one handle is served by a free through the other.
    const y = rmalloc(a, 1000);
    const p = rmalloc_wait(b, 10);
    rmfree(a, 1000, y);
    await expect(p).resolves.toBe(4096);
    expect(b.waiting).toBe(0);
    rmfreemap(a);
    expect(b.freed).toBe(true);
    expect(() => rmalloc(b, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_RMAP_FREED' }));
    expect(() => SharedResourceMap.attach(m)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_RMAP_FREED' }));
    m.unmap();
  });

  it('rmfreemap rejects a waiter; an AbortSignal cancels one; the too-large warning', async () => {
    const m = region({ mapsize: 4 });
    const warnings: string[] = [];
    const mp = SharedResourceMap.create(m, { mapsize: 4, onWarning: (_, w) => warnings.push(w.code) });
    rmfree(mp, 10, 1);
    const ac = new AbortController();
    const aborted = rmalloc_wait(mp, 20, { signal: ac.signal });
    const freed = rmalloc_wait(mp, 11);
    await new Promise((r) => setTimeout(r, 20));
    expect(mp.waiting).toBe(2);
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR' });
    rmfreemap(mp);
    await expect(freed).rejects.toMatchObject({ code: 'ERR_DEVMAP_RMAP_FREED' });
    expect(warnings).toEqual(['DEVMAP_RMAP_WAIT_TOO_LARGE', 'DEVMAP_RMAP_WAIT_TOO_LARGE']);
    m.unmap();
  });

  it('inspect() reads the header and counters without the lock', () => {
    const m = region({ mapsize: 16, owners: 8 });
    const mp = SharedResourceMap.create(m, { mapsize: 16, owners: 8, offset: 0, name: 'ports' });
    rmfree(mp, 64, 1);
    rmalloc(mp, 4);
    const info = SharedResourceMap.inspect(m, 0);
    expect(info).toMatchObject({
      version: 1, ready: true, policy: 'classic', overflow: 'solaris', name: 'ports', capacity: 16, owners: 8,
      ownersInUse: 1, journalEntries: 0, recoveries: 0, state: 'live', mapsize: 16, freeUnits: 60, ranges: 1,
    });
    expect(info.stats).toMatchObject({ allocs: 1, frees: 1 });
    expect(info.bytes).toBe(SharedResourceMap.bytesFor({ mapsize: 16, owners: 8 }));
    // A snapshot of the bytes (what the CLI reads with pread) says the same.
    expect(SharedResourceMap.inspect(m.read(0, info.bytes), 0)).toEqual(info);
    expect(Buffer.from(m.read(0, 4)).toString('latin1')).toBe('SRMP');
    m.unmap();
  });

  it('a map at a non-zero offset, beside another', () => {
    const one = SharedResourceMap.bytesFor({ mapsize: 4 });
    const m = mapAnonymous(2 * one + 8);
    const a = SharedResourceMap.create(m, { mapsize: 4 });
    const b = SharedResourceMap.create(m, { mapsize: 4, offset: one + 8 });
    rmfree(a, 10, 1);
    rmfree(b, 20, 1);
    expect(SharedResourceMap.attach(m, { offset: one + 8 }).freeUnits).toBe(20);
    expect(SharedResourceMap.attach(m).freeUnits).toBe(10);
    m.unmap();
  });
});

describe('typed errors', () => {
  it('refuses private, unmapped, too small, misaligned and garbage', () => {
    const priv = mapAnonymous(pageSize, { shared: false });
    expect(() => SharedResourceMap.create(priv, { mapsize: 4 })).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NOT_SHARED' }));
    expect(() => SharedResourceMap.attach(priv)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NOT_SHARED' }));
    priv.unmap();
    const gone = mapAnonymous(pageSize);
    gone.unmap();
    expect(() => SharedResourceMap.create(gone, { mapsize: 4 })).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
    expect(() => SharedResourceMap.create({} as Mapping, { mapsize: 4 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));

    const m = mapAnonymous(4 * pageSize);
    const create = SharedResourceMap.create;
    SharedResourceMap.create = (mm, o) => create.call(SharedResourceMap, mm, { owners: 8, ...o });
    expect(() => SharedResourceMap.create(m, { mapsize: 1000 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 4, offset: 4 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 4, offset: 4 * pageSize })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 4, capacity: 2 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 4, overflow: 'nope' as never })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 4, name: 'x'.repeat(65) })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 4, sise: 1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => SharedResourceMap.create(m, { mapsize: 0 })).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_RMAP_MAP_TOO_SMALL' }));

    // Garbage, a wrong version, a half-made map, a layout that does not add up.
    new Uint8Array(m.buffer).fill(0x5a);
    expect(() => SharedResourceMap.attach(m)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_BAD_MAGIC' }));
    expect(() => SharedResourceMap.inspect(m)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_BAD_MAGIC' }));
    expect(() => SharedResourceMap.attach(m, { offset: 3 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => SharedResourceMap.attach(m, { offset: 4 * pageSize - 8 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    SharedResourceMap.create(m, { mapsize: 4 });
    const h = new Int32Array(m.buffer);
    h[1] = 2;
    expect(() => SharedResourceMap.attach(m)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_VERSION' }));
    h[1] = 1;
    h[2] = 0;
    expect(() => SharedResourceMap.attach(m)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_SRMAP_NOT_READY' }));
    h[2] = 1;
    h[11] = 1 << 20;
    expect(() => SharedResourceMap.attach(m)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_CORRUPT' }));
    h[11] = 4;
    expect(SharedResourceMap.attach(m).freeUnits).toBe(0);
    SharedResourceMap.create = create;
    // A map whose mapping is gone throws instead of touching it.
    const mp = SharedResourceMap.attach(m);
    m.unmap();
    expect(() => rmalloc(mp, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
  });
});
