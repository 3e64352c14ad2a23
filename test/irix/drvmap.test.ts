import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  KM_NOSLEEP, Kernel, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, Mapping, PROT_READ, PROT_WRITE, btoc, ctob, errno, pageSize, v_getaddr,
  v_gethandle, v_getlen, v_getprot, v_mapphys, type EntryTrace, type IrixDriver, type Process, type VHandle,
} from '../../lib';
import { createVdkDriver } from '../../examples/irix-vdk';
import { trackLeaks } from '../helpers/leaks';
import { kernelsForTests } from '../kernel/boot';

trackLeaks();

const RW = PROT_READ | PROT_WRITE;
const P = pageSize;
const { boot } = kernelsForTests();

/** The same user address in a forked child: same offset inside its reservation. */
const inChild = (parent: Process, child: Process, addr: bigint) => child.as.base + (addr - parent.as.base);

function withCalls(k: Kernel) {
  const calls: { entry: string; pid: number | null; handle?: number; addr?: bigint; len?: number }[] = [];
  k.on('entry', (t: EntryTrace) => {
    if (t.entry !== 'map' && t.entry !== 'unmap') return;
    const vt = t.args[1] as VHandle;
    calls.push({ entry: t.entry, pid: t.pid, handle: v_gethandle(vt), addr: v_getaddr(vt), len: v_getlen(vt) });
  });
  return calls;
}

/** A kernel with the vdk driver, its entry-point calls, and a process that has /dev/vdk open and mapped. */
async function vdkMapped(pages: number) {
  const k = boot();
  const vdk = createVdkDriver(k);
  k.install('vdk', vdk.driver);
  const calls = withCalls(k);
  const p = k.spawn();
  const fd = await p.open('/dev/vdk');
  const addr = await p.mmap(0n, pages * P, RW, MAP_SHARED, fd, 0);
  return { k, vdk, calls, p, fd, addr };
}

describe('IRIX drvmap lifecycle (SPEC B.2a)', () => {
  it('drvmap once; fork, partial munmap and the first exit call nothing; the last reference calls drvunmap once', async () => {
    const k = boot();
    const vdk = createVdkDriver(k);
    k.install('vdk', vdk.driver);
    const calls = withCalls(k);
    const start = k.arena.stats();

    const p = k.spawn();
    const fd = await p.open('/dev/vdk');
    const addr = await p.mmap(0n, 3 * P, RW, MAP_SHARED, fd, 0);
    expect(calls).toEqual([{ entry: 'map', pid: p.pid, handle: calls[0].handle, addr, len: 3 * P }]);
    const h = calls[0].handle!;
    expect(vdk.records().map((d) => d.d_id)).toEqual([h]);

    const c = await p.fork();
    expect(calls.length).toBe(1);
    await p.munmap(addr + BigInt(P), P);
    expect(calls.length).toBe(1);
    await p.exit();
    expect(calls.length).toBe(1);
    expect(vdk.records().length).toBe(1);
    await c.exit();
    expect(calls.map((x) => [x.entry, x.pid, x.handle])).toEqual([['map', p.pid, h], ['unmap', c.pid, h]]);
    expect(calls[1].addr).toBe(addr);
    expect(calls[1].len).toBe(3 * P);
    expect(vdk.records()).toEqual([]);
    expect(k.arena.stats()).toEqual(start);
  });

  it('the user pages and the driver pages are the same memory, in parent and child', async () => {
    const k = boot();
    const vdk = createVdkDriver(k);
    k.install('vdk', vdk.driver);
    const p = k.spawn();
    const fd = await p.open('/dev/vdk');
    const addr = await p.mmap(0n, 2 * P, RW, MAP_SHARED, fd, 0);
    const user = new Uint8Array(await p.view(addr, 2 * P));
    user[P + 5] = 42;
    const [d] = vdk.records();
    expect(k.kbytes(d.d_addr + P + 5, 1)[0]).toBe(42);
    k.kbytes(d.d_addr, 1)[0] = 7;
    expect(user[0]).toBe(7);
    const c = await p.fork();
    const cu = new Uint8Array(await c.view(inChild(p, c, addr), 2 * P));
    expect(cu[P + 5]).toBe(42);
    cu[1] = 9;
    expect(k.kbytes(d.d_addr + 1, 1)[0]).toBe(9);
    await c.exit();
    await p.exit();
  });

  it('unmapping the whole mapping in the last process calls drvunmap; views go stale (trash pages)', async () => {
    const { vdk, calls, p, addr } = await vdkMapped(2);
    const v = new Uint8Array(await p.view(addr, 2 * P));
    await p.munmap(addr, P);
    expect(calls.length).toBe(1);
    await p.munmap(addr + BigInt(P), P);
    expect(calls.map((c) => c.entry)).toEqual(['map', 'unmap']);
    expect(Mapping.of(v)?.mapped).toBe(false);
    expect([v[0], v[P]]).toEqual([0, 0]);
    expect(vdk.records()).toEqual([]);
    await p.exit();
  });

  it('two processes mapping the same device get two objects, each unmapped once', async () => {
    const k = boot();
    const vdk = createVdkDriver(k);
    k.install('vdk', vdk.driver);
    const calls = withCalls(k);
    const [a, b] = [k.spawn(), k.spawn()];
    await a.mmap(0n, P, RW, MAP_SHARED, await a.open('/dev/vdk'), 0);
    await b.mmap(0n, P, RW, MAP_SHARED, await b.open('/dev/vdk'), 0);
    expect(new Set(vdk.records().map((d) => d.d_id)).size).toBe(2);
    await a.exit();
    await b.exit();
    const unmapped = calls.filter((c) => c.entry === 'unmap').map((c) => c.handle);
    expect(unmapped.sort()).toEqual(calls.filter((c) => c.entry === 'map').map((c) => c.handle).sort());
  });
});

describe('IRIX errors', () => {
  it('an errno from drvmap is mmap’s error, and nothing stays mapped', async () => {
    const k = boot();
    const vdk = createVdkDriver(k);
    k.install('vdk', vdk.driver);
    const p = k.spawn();
    const fd = await p.open('/dev/vdk');
    await expect(p.mmap(0n, P, RW, MAP_SHARED, fd, P)).rejects.toMatchObject({ code: 'ENXIO', syscall: 'mmap' });
    expect(p.pmap()).toEqual([]);
    expect(vdk.records()).toEqual([]);
    await p.exit();
  });

  it('without drvunmap, munmap fails with ENODEV and the mapping stays; exit still tears it down', async () => {
    const k = boot();
    let buf = 0;
    const driver: IrixDriver = {
      map(dev, vt, off, len) {
        buf = k.kmem_alloc(len, KM_NOSLEEP) as number;
        return v_mapphys(vt, buf, len);
      },
    };
    k.install('nounmap', driver);
    const p = k.spawn();
    const addr = await p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/nounmap'), 0);
    await expect(p.munmap(addr, P)).rejects.toMatchObject({ code: 'ENODEV' });
    await p.access(addr, P, 'write');
    await p.exit();
    expect(p.pmap()).toEqual([]);
    k.kmem_free(buf, P);
  });

  it('v_mapphys: EINVAL beyond the region or outside drvmap, ENXIO outside kernel memory, page of an unaligned kaddr', async () => {
    const k = boot();
    const results: number[] = [];
    let kept: VHandle | undefined;
    const buf = k.kmem_alloc(2 * P, KM_NOSLEEP) as number;
    k.kbytes(buf, 2 * P).fill(0).set([1, 2, 3]);
    const driver: IrixDriver = {
      map(dev, vt, off, len, prot) {
        kept = vt;
        results.push(v_mapphys(vt, buf, len + P), v_mapphys(vt, 12345, len), v_mapphys(vt, k.arena.base - 1, len));
        results.push(v_mapphys(vt, buf + 100, len), v_mapphys(vt, buf, len));
        expect(v_getprot(vt)).toBe(prot);
        return 0;
      },
      unmap: () => 0,
    };
    k.install('v', driver);
    const p = k.spawn();
    const addr = await p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/v'), 0);
    expect(results).toEqual([errno.EINVAL, errno.ENXIO, errno.ENXIO, 0, errno.EINVAL]);
    expect(v_mapphys(kept!, buf, P)).toBe(errno.EINVAL);
    expect([...new Uint8Array(await p.view(addr, 3))]).toEqual([1, 2, 3]); // buf + 100 mapped from its page
    await p.mprotect(addr, P, PROT_READ);
    await expect(p.view(addr, 3)).rejects.toMatchObject({ code: 'SIGSEGV' }); // a write fault on read-only pages
    await p.access(addr, 3, 'read');
    await p.exit();
    k.kmem_free(buf, 2 * P);
  });

  it('a drvmap that throws fails mmap with EIO and leaks nothing', async () => {
    const k = boot();
    const start = k.arena.stats();
    const driver: IrixDriver = {
      async map(dev, vt, off, len) {
        const b = (await k.kmem_alloc(len)) as number;
        v_mapphys(vt, b, len);
        k.kmem_free(b, len);
        throw new Error('boom');
      },
      unmap: () => 0,
    };
    k.install('thrower', driver);
    const p = k.spawn();
    await expect(p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/thrower'), 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(p.pmap()).toEqual([]);
    expect(k.arena.stats()).toEqual(start);
    await p.exit();
  });

  it('refuses PROT_WRITE on a shared mapping of a read-only descriptor, and mprotect above it', async () => {
    const k = boot();
    k.install('vdk', createVdkDriver(k).driver);
    const p = k.spawn();
    const ro = await p.open('/dev/vdk', 0);
    await expect(p.mmap(0n, P, RW, MAP_SHARED, ro, 0)).rejects.toMatchObject({ code: 'EACCES' });
    const addr = await p.mmap(0n, P, PROT_READ, MAP_SHARED, ro, 0);
    await expect(p.mprotect(addr, P, RW)).rejects.toMatchObject({ code: 'EACCES' });
    const priv = await p.mmap(0n, P, RW, MAP_PRIVATE, ro, 0);
    expect(priv).not.toBe(addr);
    await p.exit();
  });
});

describe('mmap(MAP_FIXED) over an existing mapping: the old range goes only once drvmap has returned 0', () => {
  it('drvmap refuses (vdkmap: ENXIO for off ≠ 0): the old IRIX mapping and its record are intact, no drvunmap', async () => {
    const { vdk, calls, p, fd, addr: old } = await vdkMapped(2);
    const view = new Uint8Array(await p.view(old, 2 * P));
    view.set([7, 8, 9]);
    await expect(p.mmap(old, 2 * P, RW, MAP_SHARED | MAP_FIXED, fd, P)).rejects.toMatchObject({ code: 'ENXIO' });
    expect(calls.map((c) => c.entry)).toEqual(['map', 'map']);
    expect(view.length).toBe(2 * P);
    expect([...new Uint8Array(await p.view(old, 3))]).toEqual([7, 8, 9]);
    expect(vdk.records().length).toBe(1);
    await p.exit();
    expect(calls.map((c) => c.entry)).toEqual(['map', 'map', 'unmap']);
  });

  it('drvmap refuses over anonymous memory: its bytes and views stay; accepted, the old pages go', async () => {
    const k = boot();
    const vdk = createVdkDriver(k);
    k.install('vdk', vdk.driver);
    const p = k.spawn();
    const fd = await p.open('/dev/vdk');
    const old = await p.mmap(0n, P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const view = new Uint8Array(await p.view(old, P));
    view.fill(0x5a);
    await expect(p.mmap(old, P, RW, MAP_SHARED | MAP_FIXED, fd, P)).rejects.toMatchObject({ code: 'ENXIO' });
    expect(view.length).toBe(P);
    expect(view.every((b) => b === 0x5a)).toBe(true);
    expect(await p.mmap(old, P, RW, MAP_SHARED | MAP_FIXED, fd, 0)).toBe(old);
    // The old view is stale, never detached: its alias of the old pages is trash (zeros, writes reach nothing).
    expect(view.length).toBe(P);
    expect(view[0]).toBe(0);
    view[0] = 9;
    expect(p.pmap().map((e) => e.kind)).toEqual(['irix']);
    expect(new Uint8Array(await p.view(old, 1))[0]).toBe(0); // vdkmap zeroes its pages (and the stale 9 is not there)
  });
});

describe('IRIX property: every drvmap is matched by exactly one drvunmap and the arena returns to its start', () => {
  type Op =
    | { op: 'map'; proc: number; pages: number }
    | { op: 'munmap'; proc: number; which: number; page: number }
    | { op: 'fork'; proc: number }
    | { op: 'exit'; proc: number };

  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ op: fc.constant('map' as const), proc: fc.nat(3), pages: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ op: fc.constant('munmap' as const), proc: fc.nat(3), which: fc.nat(5), page: fc.nat(3) }),
    fc.record({ op: fc.constant('fork' as const), proc: fc.nat(3) }),
    fc.record({ op: fc.constant('exit' as const), proc: fc.nat(3) }),
  );

  it('holds for random programs over several processes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
        const k = new Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 64 * P });
        try {
          const vdk = createVdkDriver(k);
          k.install('vdk', vdk.driver);
          const maps = new Map<number, number>();
          const unmaps = new Map<number, number>();
          k.on('entry', (t: EntryTrace) => {
            if (t.entry !== 'map' && t.entry !== 'unmap') return;
            const h = v_gethandle(t.args[1] as VHandle);
            const m = t.entry === 'map' ? maps : unmaps;
            m.set(h, (m.get(h) ?? 0) + 1);
          });
          const start = k.arena.stats();
          const procs: Process[] = [k.spawn()];
          // Per process: the live mappings (address, pages) it made or inherited.
          const live = new Map<Process, [bigint, number][]>([[procs[0], []]]);
          for (const o of ops) {
            const p = procs[o.proc % procs.length];
            if (p.exited) continue;
            if (o.op === 'map') {
              const fd = await p.open('/dev/vdk');
              try {
                const a = await p.mmap(0n, o.pages * P, RW, MAP_SHARED, fd, 0);
                live.get(p)!.push([a, o.pages]);
              } catch (err) {
                expect((err as NodeJS.ErrnoException).code).toBe('ENOMEM'); // address space or arena full
              }
              await p.close(fd);
            } else if (o.op === 'munmap') {
              const list = live.get(p)!;
              if (list.length === 0) continue;
              const [a, pages] = list[o.which % list.length];
              await p.munmap(a + BigInt((o.page % pages) * P), P);
            } else if (o.op === 'fork' && procs.length < 6) {
              const c = await p.fork();
              procs.push(c);
              live.set(c, live.get(p)!.map(([a, n]) => [inChild(p, c, a), n]));
            } else if (o.op === 'exit') {
              await p.exit();
            }
            // The driver's ring holds exactly the objects mapped and not yet unmapped.
            const open = [...maps.keys()].filter((h) => !unmaps.has(h)).sort();
            expect(vdk.records().map((d) => d.d_id).sort()).toEqual(open);
          }
          for (const p of procs) await p.exit();
          for (const [h, n] of maps) {
            expect(n).toBe(1);
            expect(unmaps.get(h)).toBe(1);
          }
          expect(unmaps.size).toBe(maps.size);
          expect(k.arena.stats()).toEqual(start);
        } finally {
          await k.shutdown();
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 40) },
    );
  });
});

describe('units used by the seed', () => {
  it('btoc/ctob round a length to whole pages', () => {
    expect(ctob(btoc(P + 1))).toBe(2 * P);
  });
});
