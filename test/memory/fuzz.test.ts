// Random programs over the memory layer — map, partial unmap, protect, write through views, read, hold views
// across later operations, sync — checked against a model after every step: the bytes every view shows, what
// the kernel says is mapped (/proc/self/smaps), and its protections (/proc/self/maps): every page a held view
// covers stays readable and writable (a lower protection waits for the views made before it), and a Mapping
// with nothing waiting has exactly the protections devmap records. `npm run fuzz` runs many more cases (FUZZ_RUNS); a failure prints its seed.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PROT_NONE, PROT_READ, PROT_WRITE, mapAnonymous, pageSize, type Mapping } from '../../lib';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const P = pageSize;
const RW = PROT_READ | PROT_WRITE;

type Op =
  | { op: 'map'; pages: number; shared: boolean }
  | { op: 'unmap'; which: number; first: number; count: number }
  | { op: 'protect'; which: number; first: number; count: number; prot: number }
  | { op: 'write'; which: number; at: number; value: number }
  | { op: 'read'; which: number; at: number }
  | { op: 'hold'; which: number; at: number; len: number }
  | { op: 'sync'; which: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('map' as const), pages: fc.integer({ min: 1, max: 6 }), shared: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('unmap' as const), which: fc.nat(9), first: fc.nat(6), count: fc.integer({ min: 1, max: 4 }) }), weight: 2 },
  fc.record({ op: fc.constant('protect' as const), which: fc.nat(9), first: fc.nat(6), count: fc.integer({ min: 1, max: 3 }), prot: fc.constantFrom(PROT_NONE, PROT_READ, RW) }),
  { arbitrary: fc.record({ op: fc.constant('write' as const), which: fc.nat(9), at: fc.nat(6 * P), value: fc.integer({ min: 1, max: 255 }) }), weight: 3 },
  fc.record({ op: fc.constant('read' as const), which: fc.nat(9), at: fc.nat(6 * P) }),
  { arbitrary: fc.record({ op: fc.constant('hold' as const), which: fc.nat(9), at: fc.nat(6 * P), len: fc.integer({ min: 1, max: 2 * P }) }), weight: 2 },
  fc.record({ op: fc.constant('sync' as const), which: fc.nat(9) }),
);

/** The model of one live mapping: its address, length, per-page protection, and the bytes written so far. */
interface Live {
  m: Mapping;
  addr: number;
  len: number;
  prot: number[];
  bytes: Map<number, number>;
  /** The mmap this mapping descends from (pieces of a partial unmap keep it; a new mmap at the same address does not). */
  lineage: number;
}

interface Held {
  view: Uint8Array;
  addr: number;
  len: number;
  lineage: number;
}

/** The kernel's protection of the page at `addr` ('rw-', 'r--', '---'), from /proc/self/maps. */
function kernelPerms(addr: number): string | undefined {
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const [range, perms] = line.split(' ');
    if (range === undefined || perms === undefined) continue;
    const [s, e] = range.split('-').map((x) => parseInt(x, 16));
    if (s <= addr && addr < e) return perms.slice(0, 3);
  }
  return undefined;
}
const PERMS: Record<number, string> = { [PROT_NONE]: '---', [PROT_READ]: 'r--', [RW]: 'rw-' };

/**
 * Bytes of the range the kernel maps, leaving out devmap's trash pages (pages taken away stay mapped, private
 * and MAP_NORESERVE — VmFlags "nr" in smaps — until nothing can reach them).
 */
function kernelMapped(addr: number, len: number): number {
  let n = 0;
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const flags = /VmFlags:(.*)/.exec(block)?.[1].split(' ') ?? [];
    if (flags.includes('nr')) continue;
    const [s, e] = block.split(' ')[0].split('-').map((x) => parseInt(x, 16));
    n += Math.max(0, Math.min(e, addr + len) - Math.max(s, addr));
  }
  return n;
}

describe('memory layer fuzz', () => {
  it('matches the model on random programs', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const live: Live[] = [];
        let lineages = 0;
        const held: Held[] = [];
        const pageOf = (addr: number): { l: Live; page: number } | undefined => {
          const l = live.find((x) => x.addr <= addr && addr < x.addr + x.len);
          return l && { l, page: Math.floor((addr - l.addr) / P) };
        };
        try {
          for (const o of ops) {
            if (o.op === 'map') {
              const m = mapAnonymous(o.pages * P, { shared: o.shared });
              live.push({ m, addr: Number(m.address), len: o.pages * P, prot: Array(o.pages).fill(RW), bytes: new Map(), lineage: lineages++ });
              continue;
            }
            if (live.length === 0) continue;
            const l = live[o.which % live.length];
            const pages = l.len / P;
            if (o.op === 'unmap') {
              const first = o.first % pages;
              const count = Math.min(o.count, pages - first);
              const pieces = l.m.unmap(first * P, count * P);
              live.splice(live.indexOf(l), 1);
              const expected: [number, number][] = [];
              if (first > 0) expected.push([l.addr, first * P]);
              if (first + count < pages) expected.push([l.addr + (first + count) * P, (pages - first - count) * P]);
              expect(pieces.map((p) => [Number(p.address), p.length])).toEqual(expected);
              expect(kernelMapped(l.addr + first * P, count * P)).toBe(0);
              for (const p of pieces) {
                const off = Number(p.address) - l.addr;
                const bytes = new Map([...l.bytes].filter(([k]) => k >= off && k < off + p.length).map(([k, v]) => [k - off, v]));
                live.push({ m: p, addr: Number(p.address), len: p.length, prot: l.prot.slice(off / P, off / P + p.length / P), bytes, lineage: l.lineage });
              }
            } else if (o.op === 'protect') {
              const first = o.first % pages;
              const count = Math.min(o.count, pages - first);
              l.m.protect(o.prot, first * P, count * P);
              l.prot.fill(o.prot, first, first + count);
            } else if (o.op === 'write') {
              const at = o.at % l.len;
              if (l.prot[Math.floor(at / P)] === RW) {
                new Uint8Array(l.m.view(at, 1))[0] = o.value;
                l.bytes.set(at, o.value);
              } else {
                expect(() => l.m.view(at, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
              }
            } else if (o.op === 'read') {
              const at = o.at % l.len;
              if (l.prot[Math.floor(at / P)] & PROT_READ) expect(l.m.read(at, 1)[0]).toBe(l.bytes.get(at) ?? 0);
              else expect(() => l.m.read(at, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
            } else if (o.op === 'hold') {
              const at = o.at % l.len;
              const len = Math.min(o.len, l.len - at);
              const allRw = l.prot.slice(Math.floor(at / P), Math.ceil((at + len) / P)).every((p) => p === RW);
              if (allRw) held.push({ view: new Uint8Array(l.m.view(at, len)), addr: l.addr + at, len, lineage: l.lineage });
            } else if (o.op === 'sync' && l.m.shared) {
              l.m.sync({ async: true });
            }
            // Every held view stays attached (neither unmap nor protect detaches what a Node API may hold) over
            // pages it can touch: the model's bytes where its lineage still maps the page, zeros (trash) where
            // it was unmapped.
            for (const h of held) {
              expect(h.view.length).toBe(h.len);
              for (let a = h.addr - (h.addr % P); a < h.addr + h.len; a += P) expect(kernelPerms(a)).toBe('rw-');
              const where = pageOf(h.addr);
              if (where && where.l.lineage === h.lineage) expect(h.view[0]).toBe(where.l.bytes.get(h.addr - where.l.addr) ?? 0);
              else expect(h.view[0]).toBe(0);
            }
            for (const x of live) {
              if (!x.m.protectionPending) x.prot.forEach((p, i) => expect(kernelPerms(x.addr + i * P)).toBe(PERMS[p]));
            }
          }
          for (const l of live) expect(kernelMapped(l.addr, l.len)).toBe(Math.ceil(l.len / P) * P);
        } finally {
          for (const l of live) if (l.m.mapped) l.m.unmap();
        }
        for (const h of held) expect(h.view[0]).toBe(0);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 60) },
    );
  });
});
