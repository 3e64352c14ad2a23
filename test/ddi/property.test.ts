// Random programs of mmap / munmap (random page ranges) / fork / access / exit over several processes and a
// multi-handle device, checked against a model after every step: the handles of each mapping tile its pages
// exactly, every page the model says is mapped shows the device bytes of its offset, every other page
// faults, and the driver's private data is freed exactly once per allocation.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Kernel, MAP_SHARED, PROT_READ, PROT_WRITE, handlesAt, type Process } from '../../lib';
import { P, recordingDriver } from './driver';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const deviceByte = (uoff: number) => (uoff * 31) & 0xff;

type Op =
  | { op: 'mmap'; proc: number; off: number; pages: number }
  | { op: 'munmap'; proc: number; which: number; first: number; count: number }
  | { op: 'fork'; proc: number }
  | { op: 'access'; proc: number; which: number; page: number }
  | { op: 'exit'; proc: number };

const ops: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('mmap' as const), proc: fc.nat(3), off: fc.nat(6), pages: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ op: fc.constant('munmap' as const), proc: fc.nat(3), which: fc.nat(7), first: fc.nat(7), count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ op: fc.constant('fork' as const), proc: fc.nat(3) }),
  fc.record({ op: fc.constant('access' as const), proc: fc.nat(3), which: fc.nat(7), page: fc.nat(7) }),
  fc.record({ op: fc.constant('exit' as const), proc: fc.nat(3) }),
);

const kernels: Kernel[] = [];
afterEach(async () => {
  for (const k of kernels.splice(0)) await k.shutdown();
});

describe('devmap framework property', () => {
  it('keeps handles tiling pages, bytes right, and private data freed exactly once', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(ops, { maxLength: 20 }), async (program) => {
        const k = new Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 64 * P });
        kernels.push(k);
        const rec = recordingDriver(k, { chunkSize: 2 * P, access: true, registerPages: 32 }) // a handle boundary every 2 device pages;
        try {
          k.install('rec', rec.driver);
          rec.device.forEach((_, i) => (rec.device[i] = deviceByte(i)));
          const procs: Process[] = [k.spawn()];
          // Model: per process, page address → device offset of the pages it has mapped.
          const model = new Map<Process, Map<bigint, number>>([[procs[0], new Map()]]);
          const maps = new Map<Process, bigint[]>([[procs[0], []]]); // mapping start addresses, for picking
          for (const o of program) {
            const p = procs[o.proc % procs.length];
            if (p.exited) continue;
            const pages = model.get(p)!;
            if (o.op === 'mmap') {
              const fd = await p.open('/dev/rec');
              const off = o.off * P;
              try {
                const a = await p.mmap(0n, o.pages * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
                for (let i = 0; i < o.pages; i++) pages.set(a + BigInt(i * P), off + i * P);
                maps.get(p)!.push(a);
              } catch (err) {
                expect((err as NodeJS.ErrnoException).code).toBe('ENOMEM');
              }
              await p.close(fd);
            } else if (o.op === 'munmap' && maps.get(p)!.length > 0) {
              const list = maps.get(p)!;
              const a = list[o.which % list.length] + BigInt(o.first * P);
              if (!p.as.contains(Number(a), o.count * P)) continue;
              await p.munmap(a, o.count * P);
              for (let i = 0; i < o.count; i++) pages.delete(a + BigInt(i * P));
            } else if (o.op === 'fork' && procs.length < 5) {
              const c = await p.fork();
              const shift = c.as.base - p.as.base;
              procs.push(c);
              model.set(c, new Map([...pages].map(([a, off]) => [a + shift, off])));
              maps.set(c, maps.get(p)!.map((a) => a + shift));
            } else if (o.op === 'access' && maps.get(p)!.length > 0) {
              const list = maps.get(p)!;
              const a = list[o.which % list.length] + BigInt(o.page * P);
              if (pages.has(a)) expect(new Uint8Array(await p.view(a, 1))[0]).toBe(deviceByte(pages.get(a)!));
              else await expect(p.access(a, 1)).rejects.toMatchObject({ code: 'SIGSEGV' });
            } else if (o.op === 'exit') {
              await p.exit();
              pages.clear();
            }
            for (const q of procs) if (!q.exited) checkTiling(q, model.get(q)!);
          }
          for (const q of procs) await q.exit();
          expect(k.lastDriverError).toBeUndefined();
          expect(rec.privates.filter((x) => !x.freed)).toEqual([]);
          expect(k.arena.stats().allocations).toBe(0);
        } finally {
          rec.dip.detach();
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 30) },
    );
  });
});

/** Every devmap segment is tiled by its handles, which match the model's offsets, and nothing else is mapped. */
function checkTiling(p: Process, pages: Map<bigint, number>): void {
  let mapped = 0;
  for (const e of p.pmap()) {
    const hs = handlesAt(p.as, e.address);
    let cursor = e.address;
    for (const h of hs) {
      expect(h.live).toBe(true);
      expect(h.dh_uvaddr).toBe(cursor);
      expect(h.dh_uoff).toBe(pages.get(cursor));
      cursor += BigInt(h.dh_len);
    }
    expect(cursor).toBe(e.address + BigInt(e.length));
    for (let a = e.address; a < cursor; a += BigInt(P)) {
      expect(pages.has(a)).toBe(true);
      mapped++;
    }
  }
  expect(mapped).toBe(pages.size);
}
