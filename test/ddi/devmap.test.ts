import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DDI_UMEM_NOSLEEP, DDI_UMEM_TRASH, DEVMAP_ACCESS, DEVMAP_ALLOW_REMAP, DEVMAP_MAPPING_INVALID, DEVMAP_READ,
  DEVMAP_WRITE, DEVMAP_WRITE_FAULTS, DevInfo, FC_HWERR, FC_MAKE_ERR, Kernel, KernelPanic, MAP_PRIVATE, Mapping, MAP_SHARED, PROT_ALL, PROT_READ,
  PROT_USER, PROT_WRITE, ddi_umem_alloc, ddi_umem_free, devmap_devmem_remap, devmap_devmem_setup, devmap_do_ctxmgt,
  devmap_load, devmap_set_ctx_timeout, devmap_umem_setup, devmap_unload, handlesAt, errno,
  type DevmapDriver, type DevmapHandle, type Process, type UmemAllocation, type UmemCookie,
} from '../../lib';
import { P, recordingDriver, type Private, type RecOptions } from './driver';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { kernelsForTests } from '../kernel/boot';

trackLeaks();

const RW = PROT_READ | PROT_WRITE;
const { boot, keep } = kernelsForTests({ addressSpacePages: 128 });
const dips = { push: keep };

async function setup(opts: RecOptions = {}, mmapOff = 0, len = 8 * P, type = MAP_SHARED) {
  const k = boot();
  const rec = recordingDriver(k, opts);
  dips.push(rec.dip);
  k.install('rec', rec.driver);
  const proc = k.spawn();
  const fd = await proc.open('/dev/rec');
  // The device's bytes: byte i of the register set is i * 31 & 0xff, so every user page shows where it maps.
  rec.device.forEach((_, i) => (rec.device[i] = (i * 31) & 0xff));
  const addr = await proc.mmap(0n, len, RW, type, fd, mmapOff);
  return { k, rec, proc, fd, addr };
}

const geometry = (hs: DevmapHandle[]) => hs.map((h) => [h.dh_uoff / P, h.dh_len / P]);
const unmaps = <T extends { cb: string }>(calls: T[]): T[] => calls.filter((c) => c.cb === 'unmap');
const deviceByte = (uoff: number) => (uoff * 31) & 0xff;

/** The user sees, at each surviving page, the device bytes of that page's user offset; removed pages fault. */
async function expectPages(proc: Process, addr: bigint, mmapOff: number, pages: number, gone: number[]) {
  for (let i = 0; i < pages; i++) {
    const a = addr + BigInt(i * P);
    if (gone.includes(i)) {
      await expect(proc.access(a, 1)).rejects.toMatchObject({ code: 'SIGSEGV' });
    } else {
      const v = new Uint8Array(await proc.view(a, 2));
      expect([v[0], v[1]]).toEqual([deviceByte(mmapOff + i * P), deviceByte(mmapOff + i * P + 1)]);
    }
  }
}

describe('devmap_unmap splitting, single handle (SPEC A.6 worked example, H{uoff 16 pages, len 8 pages})', () => {
  const OFF = 16 * P;

  it('whole: (16, 8, -, -) and nothing is left', async () => {
    const { rec, proc, addr } = await setup({}, OFF);
    const [h] = handlesAt(proc.as, addr);
    const view = new Uint8Array(await proc.view(addr, 8 * P));
    await proc.munmap(addr, 8 * P);
    expect(unmaps(rec.calls)).toEqual([{ cb: 'unmap', h: h.id, off: OFF, len: 8 * P, n1: null, n2: null, pid: proc.pid }]);
    expect(h.live).toBe(false);
    // The view stays attached over trash pages (a Node API may hold it): stale, reading zeros.
    expect(Mapping.of(view)?.mapped).toBe(false);
    expect(view[0]).toBe(0);
    expect(proc.pmap()).toEqual([]);
    expect(rec.privates.every((p) => p.freed)).toBe(true);
  });

  it('head: (16, 2, -, H) then H{18, 6}', async () => {
    const { rec, proc, addr } = await setup({}, OFF);
    const [h] = handlesAt(proc.as, addr);
    await proc.munmap(addr, 2 * P);
    expect(unmaps(rec.calls)).toEqual([{ cb: 'unmap', h: h.id, off: OFF, len: 2 * P, n1: null, n2: h.id, pid: proc.pid }]);
    expect(geometry([h])).toEqual([[18, 6]]);
    expect(h.dh_uvaddr).toBe(addr + BigInt(2 * P));
    expect((h.dh_pvtp as Private)).toMatchObject({ off: 18 * P, len: 6 * P, freed: false });
    await expectPages(proc, addr, OFF, 8, [0, 1]);
  });

  it('tail: (22, 2, H, -) then H{16, 6}', async () => {
    const { rec, proc, addr } = await setup({}, OFF);
    const [h] = handlesAt(proc.as, addr);
    await proc.munmap(addr + BigInt(6 * P), 2 * P);
    expect(unmaps(rec.calls)).toEqual([{ cb: 'unmap', h: h.id, off: 22 * P, len: 2 * P, n1: h.id, n2: null, pid: proc.pid }]);
    expect(geometry([h])).toEqual([[16, 6]]);
    expect((h.dh_pvtp as Private)).toMatchObject({ off: 16 * P, len: 6 * P });
    await expectPages(proc, addr, OFF, 8, [6, 7]);
  });

  it('middle: (18, 2, H, H2) then H{16, 2} and a new H2{20, 4}', async () => {
    const { rec, proc, addr } = await setup({}, OFF);
    const [h] = handlesAt(proc.as, addr);
    const across = new Uint8Array(await proc.view(addr + BigInt(P), 2 * P));
    const kept = new Uint8Array(await proc.view(addr, 16));
    await proc.munmap(addr + BigInt(2 * P), 2 * P);
    const [call] = unmaps(rec.calls);
    expect(call).toMatchObject({ h: h.id, off: 18 * P, len: 2 * P, n1: h.id });
    expect(call.n2).not.toBe(h.id);
    const [h2] = handlesAt(proc.as, addr + BigInt(4 * P));
    expect(h2.id).toBe(call.n2);
    expect(geometry([h, h2])).toEqual([[16, 2], [20, 4]]);
    expect(h2.dh_uvaddr).toBe(addr + BigInt(4 * P));
    expect((h.dh_pvtp as Private)).toMatchObject({ off: 16 * P, len: 2 * P });
    expect((h2.dh_pvtp as Private)).toMatchObject({ off: 20 * P, len: 4 * P });
    expect(Mapping.of(across)?.mapped).toBe(false); // spans the hole: stale, the hole reads zeros
    expect(across[P]).toBe(0);
    expect(kept.length).toBe(16);
    await expectPages(proc, addr, OFF, 8, [2, 3]);
    // Exit unmaps what is left: every live handle ends with a whole-handle unmap.
    rec.calls.length = 0;
    await proc.exit();
    expect(unmaps(rec.calls).map((c) => [c.h, c.off! / P, c.len! / P, c.n1, c.n2])).toEqual([
      [h.id, 16, 2, null, null],
      [h2.id, 20, 4, null, null],
    ]);
    expect(rec.privates.filter((p) => !p.freed)).toEqual([]);
  });
});

describe('devmap_unmap splitting across a chain of handles (SPEC A.6)', () => {
  const chunks = { 0: 2 * P, [2 * P]: 3 * P, [5 * P]: 3 * P };

  it('one devmap(9E) call and one handle per chunk, at consecutive addresses, devmap_map in order', async () => {
    const { rec, proc, addr } = await setup({ chunks });
    const hs = handlesAt(proc.as, addr);
    expect(geometry(hs)).toEqual([[0, 2], [2, 3], [5, 3]]);
    expect(hs.map((h) => h.dh_uvaddr - addr)).toEqual([0n, BigInt(2 * P), BigInt(5 * P)]);
    expect(rec.calls.filter((c) => c.cb === 'devmap').map((c) => [c.off! / P, c.len! / P])).toEqual([[0, 8], [2, 6], [5, 3]]);
    expect(rec.calls.filter((c) => c.cb === 'map').map((c) => c.h)).toEqual(hs.map((h) => h.id));
    expect(hs.every((h) => (h.dh_prot & PROT_USER) !== 0)).toBe(true);
    await expectPages(proc, addr, 0, 8, []);
  });

  it('the SPEC example: unmap [1, 6) — H1 trimmed, H2 freed, H3 front-trimmed into the upper segment', async () => {
    const { rec, proc, addr } = await setup({ chunks });
    const [h1, h2, h3] = handlesAt(proc.as, addr);
    await proc.munmap(addr + BigInt(P), 5 * P);
    expect(unmaps(rec.calls).map((c) => [c.h, c.off! / P, c.len! / P, c.n1, c.n2])).toEqual([
      [h1.id, 1, 1, h1.id, null],
      [h2.id, 2, 3, null, null],
      [h3.id, 5, 1, null, h3.id],
    ]);
    expect(geometry(handlesAt(proc.as, addr))).toEqual([[0, 1]]);
    expect(geometry(handlesAt(proc.as, addr + BigInt(6 * P)))).toEqual([[6, 2]]);
    expect(h2.live).toBe(false);
    await expectPages(proc, addr, 0, 8, [1, 2, 3, 4, 5]);
  });

  it('whole, head, tail and middle of a chain', async () => {
    // head ending inside H2: H1 freed, H2 front-trimmed
    let s = await setup({ chunks });
    let hs = handlesAt(s.proc.as, s.addr);
    await s.proc.munmap(s.addr, 3 * P);
    expect(unmaps(s.rec.calls).map((c) => [c.h, c.off! / P, c.len! / P, c.n1, c.n2])).toEqual([
      [hs[0].id, 0, 2, null, null],
      [hs[1].id, 2, 1, null, hs[1].id],
    ]);
    expect(geometry(handlesAt(s.proc.as, s.addr + BigInt(3 * P)))).toEqual([[3, 2], [5, 3]]);

    // tail starting exactly at H3's first page: H3 is freed, not "trimmed" (the [BUG?] is not reproduced)
    s = await setup({ chunks });
    hs = handlesAt(s.proc.as, s.addr);
    await s.proc.munmap(s.addr + BigInt(5 * P), 3 * P);
    expect(unmaps(s.rec.calls).map((c) => [c.h, c.off! / P, c.len! / P, c.n1, c.n2])).toEqual([[hs[2].id, 5, 3, null, null]]);
    expect(geometry(handlesAt(s.proc.as, s.addr))).toEqual([[0, 2], [2, 3]]);

    // tail starting inside H2 (not the first handle): H2 keeps 1 page, H3 freed
    s = await setup({ chunks });
    hs = handlesAt(s.proc.as, s.addr);
    await s.proc.munmap(s.addr + BigInt(3 * P), 5 * P);
    expect(unmaps(s.rec.calls).map((c) => [c.h, c.off! / P, c.len! / P, c.n1, c.n2])).toEqual([
      [hs[1].id, 3, 2, hs[1].id, null],
      [hs[2].id, 5, 3, null, null],
    ]);
    expect(geometry(handlesAt(s.proc.as, s.addr))).toEqual([[0, 2], [2, 1]]);

    // middle strictly inside H2: H2 split, H3 moves to the upper segment untouched
    s = await setup({ chunks });
    hs = handlesAt(s.proc.as, s.addr);
    await s.proc.munmap(s.addr + BigInt(3 * P), P);
    const [c] = unmaps(s.rec.calls);
    expect([c.h, c.off! / P, c.len! / P, c.n1]).toEqual([hs[1].id, 3, 1, hs[1].id]);
    expect(geometry(handlesAt(s.proc.as, s.addr))).toEqual([[0, 2], [2, 1]]);
    expect(geometry(handlesAt(s.proc.as, s.addr + BigInt(4 * P)))).toEqual([[4, 1], [5, 3]]);
    await expectPages(s.proc, s.addr, 0, 8, [3]);

    // whole: every handle, in chain order
    s = await setup({ chunks });
    hs = handlesAt(s.proc.as, s.addr);
    await s.proc.munmap(s.addr, 8 * P);
    expect(unmaps(s.rec.calls).map((c) => [c.h, c.off! / P, c.len! / P])).toEqual(hs.map((h) => [h.id, h.dh_uoff / P, h.dh_len / P]));
  });
});

describe('mmap errors the user sees (SPEC A.7a)', () => {
  it('validation before the driver: zero length, unaligned offset, bad MAP_TYPE → EINVAL, devmap never called', async () => {
    const { rec, proc, fd } = await setup();
    rec.calls.length = 0;
    await expect(proc.mmap(0n, 0, RW, MAP_SHARED, fd, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(proc.mmap(0n, P, RW, MAP_SHARED, fd, 100)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(proc.mmap(0n, P, RW, 3, fd, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(rec.calls).toEqual([]);
  });

  it('devmap(9E) failing → ENXIO; maplen not a page multiple → EINVAL; MAP_PRIVATE without devmap_access → EINVAL', async () => {
    let s = await setup({ chunks: { 0: P, [P]: P }, failDevmapAt: 2 * P }, 0, 2 * P);
    await expect(s.proc.mmap(0n, 3 * P, RW, MAP_SHARED, s.fd, 0)).rejects.toMatchObject({ code: 'ENXIO' });
    s = await setup({}, 0, P);
    const bad = recordingDriver(s.k, { badMaplen: P + 1 });
    dips.push(bad.dip);
    s.k.install('bad', bad.driver);
    await expect(s.proc.mmap(0n, P, RW, MAP_SHARED, await s.proc.open('/dev/bad'), 0)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(s.proc.mmap(0n, P, RW, MAP_PRIVATE, s.fd, 0)).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('handles with different contexts → ENOTSUP; prot outside the setup maxprot → ENXIO; no address space → ENOMEM', async () => {
    const k = boot();
    const mixed = recordingDriver(k, { chunks: { 0: P, [P]: P }, secondAccessFrom: P });
    const noUser = recordingDriver(k, { maxprot: PROT_READ | PROT_WRITE });
    const readOnly = recordingDriver(k, { maxprot: PROT_READ | PROT_USER });
    dips.push(mixed.dip, noUser.dip, readOnly.dip);
    k.install('mixed', mixed.driver);
    k.install('nouser', noUser.driver);
    k.install('ro', readOnly.driver);
    const p = k.spawn();
    await expect(p.mmap(0n, 2 * P, RW, MAP_SHARED, await p.open('/dev/mixed'), 0)).rejects.toMatchObject({ code: 'ENOTSUP' });
    await expect(p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/nouser'), 0)).rejects.toMatchObject({ code: 'ENXIO' });
    const ro = await p.open('/dev/ro');
    await expect(p.mmap(0n, P, RW, MAP_SHARED, ro, 0)).rejects.toMatchObject({ code: 'ENXIO' });
    const a = await p.mmap(0n, P, PROT_READ, MAP_SHARED, ro, 0);
    await expect(p.mprotect(a, P, RW)).rejects.toMatchObject({ code: 'EACCES' });
    await expect(p.mmap(0n, 1000 * P, PROT_READ, MAP_SHARED, ro, 0)).rejects.toMatchObject({ code: 'ENOMEM' });
    expect(p.pmap().length).toBe(1);
  });

  it('devmap_map failing → ENXIO, earlier handles get devmap_unmap, nothing stays mapped', async () => {
    const { k } = await setup();
    const rec = recordingDriver(k, { chunks: { 0: P, [P]: P, [2 * P]: P }, failMapAt: 2 * P });
    dips.push(rec.dip);
    k.install('failmap', rec.driver);
    const p = k.spawn();
    await expect(p.mmap(0n, 3 * P, RW, MAP_SHARED, await p.open('/dev/failmap'), 0)).rejects.toMatchObject({ code: 'ENXIO' });
    expect(rec.calls.filter((c) => c.cb === 'map').length).toBe(3);
    expect(unmaps(rec.calls).map((c) => [c.off! / P, c.n1, c.n2])).toEqual([[0, null, null], [1, null, null]]);
    expect(p.pmap()).toEqual([]);
    expect(rec.privates.every((x) => x.freed)).toBe(true);
  });

  it('a failing devmap_access is a SIGBUS at the access', async () => {
    const k = boot();
    const dip = new DevInfo('sigbus', [{ size: P }]);
    dips.push(dip);
    const driver: DevmapDriver = {
      devmap(dev, dhp, off, len, maplen) {
        maplen.value = len;
        return devmap_devmem_setup(dhp, dip, { devmap_rev: 1, devmap_access: () => FC_HWERR }, 0, 0, len, PROT_ALL, 0);
      },
    };
    k.install('sigbus', driver);
    const p = k.spawn();
    const a = await p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/sigbus'), 0);
    await expect(p.access(a, 1)).rejects.toMatchObject({ code: 'SIGBUS' });
    await expect(p.view(a, 1)).rejects.toMatchObject({ code: 'SIGBUS' });
  });
});

describe('faults, devmap_load and devmap_unload', () => {
  it('the first access of each page faults into devmap_access with off, len, type and rw split at handle boundaries', async () => {
    const { rec, proc, addr } = await setup({ access: true, chunks: { 0: 2 * P, [2 * P]: 2 * P } }, 0, 4 * P);
    const [h1, h2] = handlesAt(proc.as, addr);
    rec.calls.length = 0;
    await proc.access(addr + BigInt(P + 10), 2 * P, 'write');
    expect(rec.calls.map((c) => [c.h, c.off! / P, c.len! / P, c.type, c.rw])).toEqual([
      [h1.id, 1, 1, DEVMAP_ACCESS, DEVMAP_WRITE],
      [h2.id, 2, 2, DEVMAP_ACCESS, DEVMAP_WRITE], // [P+10, 3P+10) touches pages 2 and 3 of the mapping
    ]);
    rec.calls.length = 0;
    await proc.access(addr + BigInt(P), 2 * P, 'read'); // loaded now: no fault
    expect(rec.calls).toEqual([]);
    expect(h1.loadedPages()).toEqual([false, true]);
    await proc.access(addr, 1, 'read');
    expect(rec.calls.map((c) => [c.h, c.off, c.rw])).toEqual([[h1.id, 0, DEVMAP_READ]]);
  });

  it('devmap_unload takes the pages from the views (zeros, writes reach nothing) and the next access faults again; devmap_load works only inside the fault', async () => {
    const { rec, proc, addr } = await setup({ access: true }, 0, 2 * P);
    const [h] = handlesAt(proc.as, addr);
    const v = new Uint8Array(await proc.view(addr, 2 * P));
    expect(v[1]).toBe(deviceByte(1));
    expect(devmap_load(h, 0, P, DEVMAP_ACCESS, DEVMAP_READ)).toBe(FC_MAKE_ERR(errno.EINVAL));
    expect(devmap_unload(h, 0, 0)).toBe(0);
    // Not detached (a Node API may hold the view: zlib aborts on that): it reads zeros, and writes reach nothing.
    expect(v.length).toBe(2 * P);
    expect(v[1]).toBe(0);
    v[P] = 0xee;
    expect(h.loadedPages()).toEqual([false, false]);
    rec.calls.length = 0;
    const again = new Uint8Array(await proc.view(addr + BigInt(P), 4));
    expect(again[0]).toBe(deviceByte(P)); // not the stale view's 0xee
    expect(rec.calls.map((c) => c.cb)).toEqual(['access']);
    expect(devmap_unload(h, 2 * P, P)).toBe(FC_MAKE_ERR(errno.EINVAL));
    expect(devmap_unload(h, P, 2 * P)).toBe(FC_MAKE_ERR(errno.EINVAL));
  });

  it('DEVMAP_WRITE_FAULTS (devmap\'s own flag): a page loaded for reading is read-only; its write faults into devmap_access(DEVMAP_WRITE)', async () => {
    const { rec, proc, addr } = await setup({ access: true, flags: DEVMAP_WRITE_FAULTS }, 0, 2 * P);
    const [h] = handlesAt(proc.as, addr);
    expect(h.dh_flags & DEVMAP_WRITE_FAULTS).toBe(DEVMAP_WRITE_FAULTS);
    rec.calls.length = 0;
    await proc.access(addr, 1, 'read');
    await proc.access(addr, 1, 'read'); // loaded for reading: no fault
    await proc.access(addr, 1, 'write');
    await proc.access(addr, 1, 'read'); // loaded for writing: no fault
    expect(rec.calls.map((c) => [c.cb, c.off, c.rw])).toEqual([['access', 0, DEVMAP_READ], ['access', 0, DEVMAP_WRITE]]);
    const v = new Uint8Array(await proc.view(addr + BigInt(P), 1)); // a view faults for writing
    v[0] = 1;
    expect(rec.calls.slice(2).map((c) => [c.cb, c.off, c.rw])).toEqual([['access', P, DEVMAP_WRITE]]);
  });

  it('a write fault on a read-only page is a SIGSEGV and the driver is not asked', async () => {
    const { rec, proc, addr } = await setup({ access: true }, 0, P);
    await proc.mprotect(addr, P, PROT_READ);
    rec.calls.length = 0;
    await expect(proc.access(addr, 1, 'write')).rejects.toMatchObject({ code: 'SIGSEGV' });
    expect(rec.calls).toEqual([]);
    await proc.access(addr, 1, 'read');
    expect(rec.calls.map((c) => c.cb)).toEqual(['access']);
  });
});

describe('devmap_do_ctxmgt and context timeouts', () => {
  it('switches one device context between processes; with a timeout the second waits for it to expire', async () => {
    const k = boot();
    const dip = new DevInfo('ctx', [{ size: P }]);
    dips.push(dip);
    const events: string[] = [];
    let owner: DevmapHandle | null = null;
    const ctxmgt = (dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number) => {
      if (owner && owner !== dhp) devmap_unload(owner, owner.dh_uoff, owner.dh_len);
      events.push(`switch to ${dhp.pid}`);
      owner = dhp;
      return devmap_load(dhp, off, len, type, rw);
    };
    const ops = {
      devmap_rev: 1,
      devmap_map: (dhp: DevmapHandle) => {
        devmap_set_ctx_timeout(dhp, 5); // 50 ms
        return 0;
      },
      devmap_access: (dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number) =>
        devmap_do_ctxmgt(dhp, pvtp, off, len, type, rw, ctxmgt),
    };
    k.install('ctx', {
      devmap(dev, dhp, off, len, maplen) {
        maplen.value = len;
        return devmap_devmem_setup(dhp, dip, ops, 0, 0, len, PROT_ALL, 0);
      },
    } satisfies DevmapDriver);
    const [a, b] = [k.spawn(), k.spawn()];
    const aa = await a.mmap(0n, P, RW, MAP_SHARED, await a.open('/dev/ctx'), 0);
    const ba = await b.mmap(0n, P, RW, MAP_SHARED, await b.open('/dev/ctx'), 0);
    const av = new Uint8Array(await a.view(aa, 1));
    const t0 = Date.now();
    await b.access(ba, 1, 'write');
    const waited = Date.now() - t0;
    expect(events).toEqual([`switch to ${a.pid}`, `switch to ${b.pid}`]);
    // a's translations were unloaded by the switch: its view reaches the device no more.
    av[0] = 0x5a;
    expect(av[0]).toBe(0x5a);
    expect(new Uint8Array(await b.view(ba, 1))[0]).toBe(0);
    expect(waited).toBeGreaterThanOrEqual(30); // hysteresis: b waited for a's timeout (≈50 ms)
    expect(await devmap_do_ctxmgt(handlesAt(a.as, aa)[0], null, 0, P, 0, 0, null)).toBe(FC_HWERR);
  });

  it('a fault waiting for the context timeout keeps the process alive until it is served', async () => {
    // Before: the timeout's timer was unref'd, so a process with nothing else to do exited mid-await (code 0).
    const r = await runNode('ctx-timeout-exit.cjs', [join(__dirname, '..', '..', 'dist', 'index.js')]);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('served\n');
  }, 30_000);
});

describe('kernel memory: ddi_umem_alloc, devmap_umem_setup, TRASH, remap', () => {
  function umemDriver(k: Kernel, get: () => UmemCookie, flags = 0, dip: DevInfo | null = null) {
    const driver: DevmapDriver = {
      devmap(dev, dhp, off, len, maplen) {
        maplen.value = len;
        return devmap_umem_setup(dhp, dip, null, get(), off, len, PROT_ALL, flags);
      },
    };
    return driver;
  }

  it('exports zero-filled, page-rounded kernel memory: the user sees the kernel bytes', async () => {
    const k = boot();
    const m = ddi_umem_alloc(k, P + 1, DDI_UMEM_NOSLEEP) as UmemAllocation;
    expect(m.cookie.size).toBe(2 * P);
    expect(k.kbytes(m.kaddr!, 2 * P).every((x) => x === 0)).toBe(true);
    k.kbytes(m.kaddr!, 2 * P)[P + 3] = 77;
    k.install('umem', umemDriver(k, () => m.cookie));
    const p = k.spawn();
    const a = await p.mmap(0n, 2 * P, RW, MAP_SHARED, await p.open('/dev/umem'), 0);
    const v = new Uint8Array(await p.view(a, 2 * P));
    expect(v[P + 3]).toBe(77);
    v[5] = 6;
    expect(k.kbytes(m.kaddr!, 6)[5]).toBe(6);
    await expect(p.mmap(0n, 3 * P, RW, MAP_SHARED, await p.open('/dev/umem'), 0)).rejects.toMatchObject({ code: 'ENXIO' });
    await p.exit();
    ddi_umem_free(m.cookie);
    expect(() => ddi_umem_free(m.cookie)).toThrow(KernelPanic);
    expect(() => ddi_umem_free({} as UmemCookie)).toThrow(KernelPanic);
    ddi_umem_free(null);
    expect(ddi_umem_alloc(k, 0, DDI_UMEM_NOSLEEP)).toBeNull();
    expect(k.arena.stats().allocations).toBe(0);
  });

  it('DDI_UMEM_TRASH maps every page to one junk page', async () => {
    const k = boot();
    const t = ddi_umem_alloc(k, 3 * P, DDI_UMEM_NOSLEEP | DDI_UMEM_TRASH) as UmemAllocation;
    expect(t.kaddr).toBeNull();
    k.install('trash', umemDriver(k, () => t.cookie));
    const p = k.spawn();
    const a = await p.mmap(0n, 3 * P, RW, MAP_SHARED, await p.open('/dev/trash'), 0);
    new Uint8Array(await p.view(a, 1))[0] = 42;
    const third = new Uint8Array(await p.view(a + BigInt(2 * P), 1));
    expect(third[0]).toBe(42);
    await p.exit();
    ddi_umem_free(t.cookie);
    expect(k.arena.stats().allocations).toBe(0);
  });

  it('DEVMAP_MAPPING_INVALID needs DEVMAP_ALLOW_REMAP; remap binds memory and the next touch faults it in', async () => {
    const k = boot();
    const dip = new DevInfo('remap', [{ size: 2 * P }]);
    dips.push(dip);
    dip.regs[0].bytes[P] = 99;
    const m = ddi_umem_alloc(k, P, DDI_UMEM_NOSLEEP) as UmemAllocation;
    k.kbytes(m.kaddr!, 1)[0] = 11;
    let handle: DevmapHandle | null = null;
    k.install('invalid', umemDriver(k, () => m.cookie, DEVMAP_MAPPING_INVALID));
    k.install('remap', {
      devmap(dev, dhp, off, len, maplen) {
        handle = dhp;
        maplen.value = len;
        return devmap_umem_setup(dhp, dip, null, m.cookie, 0, len, PROT_ALL, DEVMAP_MAPPING_INVALID | DEVMAP_ALLOW_REMAP);
      },
    } satisfies DevmapDriver);
    const p = k.spawn();
    await expect(p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/invalid'), 0)).rejects.toMatchObject({ code: 'ENXIO' });
    const a = await p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/remap'), 0);
    await expect(p.access(a, 1)).rejects.toMatchObject({ code: 'SIGSEGV' });
    expect(devmap_devmem_remap(handle!, dip, 0, P, P, PROT_ALL, 0)).toBe(0);
    expect(new Uint8Array(await p.view(a, 1))[0]).toBe(99);
    expect(devmap_devmem_remap(handle!, dip, 0, 2 * P, P, PROT_ALL, 0)).toBe(-1); // past the register set
    expect(devmap_devmem_remap(handle!, dip, 0, 0, P, PROT_ALL, 0x4)).toBe(-1); // flag not allowed
    await p.exit();
    ddi_umem_free(m.cookie);
  });
});

describe('fork (SPEC A.5)', () => {
  it('duplicates every handle in chain order through devmap_dup; the child faults on first access', async () => {
    const { rec, proc, addr } = await setup({ access: true, chunks: { 0: P, [P]: P } }, 0, 2 * P);
    const parent = handlesAt(proc.as, addr);
    const child = await proc.fork();
    const caddr = child.as.base + (addr - proc.as.base);
    const copies = handlesAt(child.as, caddr);
    expect(rec.calls.filter((c) => c.cb === 'dup').map((c) => [c.h, c.n1, c.pid])).toEqual([
      [parent[0].id, copies[0].id, child.pid],
      [parent[1].id, copies[1].id, child.pid],
    ]);
    expect(copies.map((h) => h.loadedPages())).toEqual([[false], [false]]);
    rec.calls.length = 0;
    const v = new Uint8Array(await child.view(caddr, 1));
    expect(v[0]).toBe(deviceByte(0));
    expect(rec.calls.map((c) => [c.cb, c.pid])).toEqual([['access', child.pid]]);
    await child.exit();
    expect(unmaps(rec.calls).map((c) => c.pid)).toEqual([child.pid, child.pid]);
  });

  it('a refused dup fails the fork; the refused handle never gets an unmap', async () => {
    const { rec, proc } = await setup({ chunks: { 0: P, [P]: P }, failDupAt: P }, 0, 2 * P);
    rec.calls.length = 0;
    await expect(proc.fork()).rejects.toMatchObject({ code: 'ENOMEM', syscall: 'fork' });
    const dups = rec.calls.filter((c) => c.cb === 'dup');
    expect(dups.length).toBe(2);
    expect(unmaps(rec.calls).map((c) => c.h)).toEqual([dups[0].n1]); // only the accepted copy
    expect(rec.privates.filter((x) => !x.freed).length).toBe(2); // the parent's two
  });

  it('a MAP_PRIVATE mapping is copied into the child; a MAP_SHARED one is the same memory', async () => {
    const { rec, proc, addr } = await setup({ access: true }, 0, P, MAP_PRIVATE);
    const shared = await proc.mmap(0n, P, RW, MAP_SHARED, await proc.open('/dev/rec'), 0);
    new Uint8Array(await proc.view(addr, 1))[0] = 200;
    new Uint8Array(await proc.view(shared, 1))[0] = 201;
    expect(rec.device[0]).toBe(201); // private writes stay private
    const child = await proc.fork();
    const at = (x: bigint) => child.as.base + (x - proc.as.base);
    expect(new Uint8Array(await child.view(at(addr), 1))[0]).toBe(200);
    const cs = new Uint8Array(await child.view(at(shared), 1));
    cs[0] = 202;
    expect(new Uint8Array(await proc.view(shared, 1))[0]).toBe(202);
  });
});
