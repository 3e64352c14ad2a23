// Fidelity rows against SPEC A.3 (mmap(MAP_FIXED) over an existing mapping: the old range goes at devmap_device,
// after every devmap(9E) call), A.6 (new_dhp2 of a middle cut is a byte copy of the handle while the callback
// runs), and the two orders devmap fixes after illumos: close(9E) before the unmap callbacks at exit (proc_exit:
// closeall() before relvm()), and the partial copy freed first when devmap_dup refuses (as_dup: seg_free() of the
// new segment, then as_free()).
import { describe, expect, it } from 'vitest';
import {
  MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_USER, PROT_WRITE, handlesAt,
  type DevmapHandle, type Process,
} from '../../lib';
import { P, recordingDriver, type Call, type RecOptions } from './driver';
import { trackLeaks } from '../helpers/leaks';
import { kernelsForTests } from '../kernel/boot';

trackLeaks();

const RW = PROT_READ | PROT_WRITE;
const { boot, keep } = kernelsForTests({ addressSpacePages: 128 });

function device(opts: RecOptions = {}) {
  const k = boot();
  const rec = recordingDriver(k, opts);
  keep(rec.dip);
  rec.device.forEach((_, i) => (rec.device[i] = (i * 31) & 0xff));
  k.install('rec', rec.driver);
  return { k, rec };
}
const deviceByte = (off: number) => (off * 31) & 0xff;
const cbs = (calls: Call[]) => calls.map((c) => c.cb);

/** The old mapping at `addr` still shows its bytes: byte(page) at the start of each page. */
async function expectIntact(proc: Process, addr: bigint, pages: number, byte: (page: number) => number) {
  for (let i = 0; i < pages; i++) expect(new Uint8Array(await proc.view(addr + BigInt(i * P), 1))[0]).toBe(byte(i));
}

describe('mmap(MAP_FIXED) over an existing mapping (SPEC A.3: devmap(9E) ×k, then devmap_device replaces the range)', () => {
  const refusals: [string, RecOptions, number, number][] = [
    // [row, driver options, mmap offset of the new mapping, errno]
    ['devmap(9E) returns an error → ENXIO', { failDevmapAt: 16 * P }, 16 * P, 'ENXIO' as never],
    ['maplen is not the setup length → EINVAL', { badMaplen: P + 1 }, 16 * P, 'EINVAL' as never],
    ['handles with different contexts → ENOTSUP', { chunks: { [16 * P]: P, [17 * P]: P }, secondAccessFrom: 17 * P }, 16 * P, 'ENOTSUP' as never],
    ['the setup helper refuses the protection → ENXIO', { maxprot: PROT_READ | PROT_USER }, 16 * P, 'ENXIO' as never],
  ];

  for (const [row, opts, off, code] of refusals) {
    it(`${row}: the old mapping is intact and its driver hears nothing`, async () => {
      const { k, rec } = device(opts);
      const p = k.spawn();
      const fd = await p.open('/dev/rec');
      // The old mapping: anonymous where this driver would refuse it too.
      const anon = opts.badMaplen !== undefined || opts.maxprot !== undefined;
      const old = anon ? await p.mmap(0n, 2 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : await p.mmap(0n, 2 * P, RW, MAP_SHARED, fd, 0);
      if (anon) new Uint8Array(await p.view(old, 2 * P)).fill(0x5a);
      const before = anon ? [] : handlesAt(p.as, old);
      const view = new Uint8Array(await p.view(old, 2 * P));
      rec.calls.length = 0;
      await expect(p.mmap(old, 2 * P, RW, MAP_SHARED | MAP_FIXED, fd, off)).rejects.toMatchObject({ code });
      expect(cbs(rec.calls).filter((c) => c !== 'devmap')).toEqual([]);
      expect(view.length).toBe(2 * P);
      await expectIntact(p, old, 2, (i) => (anon ? 0x5a : deviceByte(i * P)));
      if (!anon) expect(handlesAt(p.as, old)).toEqual(before);
      expect(p.pmap().map((e) => [e.address, e.length])).toEqual([[old, 2 * P]]);
    });
  }

  it('devmap(9E) refuses over an anonymous mapping: its bytes and views stay', async () => {
    const { k } = device({ failDevmapAt: 0 });
    const p = k.spawn();
    const fd = await p.open('/dev/rec');
    const old = await p.mmap(0n, 2 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const view = new Uint8Array(await p.view(old, 2 * P));
    view.fill(0x5a);
    await expect(p.mmap(old, 2 * P, RW, MAP_SHARED | MAP_FIXED, fd, 0)).rejects.toMatchObject({ code: 'ENXIO' });
    expect(view.length).toBe(2 * P);
    expect(view.every((b) => b === 0x5a)).toBe(true);
    expect(p.pmap().map((e) => e.kind)).toEqual(['anon']);
  });

  it('accepted: devmap(9E), then the old handles\' devmap_unmap, then the new devmap_map — in that order', async () => {
    const { k, rec } = device();
    const p = k.spawn();
    const fd = await p.open('/dev/rec');
    const old = await p.mmap(0n, 2 * P, RW, MAP_SHARED, fd, 0);
    const [h] = handlesAt(p.as, old);
    const view = new Uint8Array(await p.view(old, 2 * P));
    rec.calls.length = 0;
    expect(await p.mmap(old, 2 * P, RW, MAP_SHARED | MAP_FIXED, fd, 16 * P)).toBe(old);
    expect(rec.calls.map((c) => [c.cb, c.off! / P])).toEqual([['devmap', 16], ['unmap', 0], ['map', 16]]);
    expect(rec.calls[1].h).toBe(h.id);
    // The old view's pages were taken away (trash: zeros, and its writes reach nothing), never detached.
    expect(view.length).toBe(2 * P);
    expect(view[1]).toBe(0);
    view[0] = 0x77;
    await expectIntact(p, old, 2, (i) => deviceByte(16 * P + i * P));
  });

  it('devmap_map refuses after devmap_device: the range was replaced already, as in illumos (ENXIO, nothing mapped)', async () => {
    const { k, rec } = device({ failMapAt: 16 * P });
    const p = k.spawn();
    const fd = await p.open('/dev/rec');
    const old = await p.mmap(0n, P, RW, MAP_SHARED, fd, 0);
    rec.calls.length = 0;
    await expect(p.mmap(old, P, RW, MAP_SHARED | MAP_FIXED, fd, 16 * P)).rejects.toMatchObject({ code: 'ENXIO' });
    expect(rec.calls.map((c) => [c.cb, c.off! / P])).toEqual([['devmap', 16], ['unmap', 0], ['map', 16]]);
    expect(p.pmap()).toEqual([]);
  });
});

describe('a middle cut hands the driver new_dhp2 as a byte copy of the handle (SPEC A.6)', () => {
  it('inside devmap_unmap new_dhp2 has H\'s offset, length and address; afterwards H{16, 2} and H2{20, 4}', async () => {
    const seen: number[][] = [];
    const snap = (h: DevmapHandle) => [h.dh_uoff / P, h.dh_len / P, h.dh_roff / P];
    const { k } = device({ onUnmap: (dhp, off, len, n1, n2) => seen.push(snap(dhp), snap(n1!), snap(n2!), [Number(n2!.dh_uvaddr - dhp.dh_uvaddr)]) });
    const p = k.spawn();
    const addr = await p.mmap(0n, 8 * P, RW, MAP_SHARED, await p.open('/dev/rec'), 16 * P);
    const [h] = handlesAt(p.as, addr);
    await p.munmap(addr + BigInt(2 * P), 2 * P);
    expect(seen).toEqual([[16, 8, 16], [16, 8, 16], [16, 8, 16], [0]]);
    const [h2] = handlesAt(p.as, addr + BigInt(4 * P));
    expect([snap(h), snap(h2)]).toEqual([[16, 2, 16], [20, 4, 20]]);
    expect(h2.dh_uvaddr).toBe(addr + BigInt(4 * P));
  });
});

describe('orders devmap takes from illumos', () => {
  it('exit closes the descriptors first, so close(9E) runs with the last mapping, before its devmap_unmap', async () => {
    const { k, rec } = device();
    const p = k.spawn();
    const fd = await p.open('/dev/rec');
    await p.mmap(0n, P, RW, MAP_SHARED, fd, 0);
    await p.mmap(0n, P, RW, MAP_SHARED, fd, P);
    rec.calls.length = 0;
    await p.exit();
    expect(rec.calls.map((c) => [c.cb, c.off === undefined ? '-' : c.off / P])).toEqual([['unmap', 0], ['close', '-'], ['unmap', 1]]);
  });

  it('a refused devmap_dup: the partial copy is freed first (its copied handles unmapped), then the earlier copies', async () => {
    const { k, rec } = device({ chunks: { 0: P, [P]: P, [2 * P]: P }, failDupAt: P });
    const p = k.spawn();
    const fd = await p.open('/dev/rec');
    const a = await p.mmap(0n, P, RW, MAP_SHARED, fd, 8 * P); // lower address: copied first
    const b = await p.mmap(0n, 3 * P, RW, MAP_SHARED, fd, 0);
    expect(a < b).toBe(true);
    rec.calls.length = 0;
    await expect(p.fork()).rejects.toMatchObject({ code: 'ENOMEM', syscall: 'fork' });
    expect(rec.calls.map((c) => [c.cb, c.cb === 'dup' ? c.h : c.off! / P])).toEqual([
      ['dup', handlesAt(p.as, a)[0].id],
      ['dup', handlesAt(p.as, b)[0].id],
      ['dup', handlesAt(p.as, b)[1].id], // refused: its copy never hears of an unmap
      ['unmap', 0], // the partial copy of b: the handle copied before the refusal
      ['unmap', 8], // then the child's earlier copy (a)
    ]);
    expect(rec.calls.filter((c) => c.cb === 'unmap').every((c) => c.pid !== p.pid)).toBe(true);
    expect(rec.privates.filter((x) => !x.freed).length).toBe(4); // the parent's own: a, and b's three handles
    expect(k.processes).toEqual([p]);
  });
});
