import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KM_NOSLEEP, Kernel, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, pageSize } from '../../lib';
import * as vdk from '../../examples/irix-vdk';
import * as xx from '../../examples/rmalloc-buffers';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const kernels: Kernel[] = [];
afterEach(async () => {
  for (const k of kernels.splice(0)) await k.shutdown();
});

describe('seed 000: the IRIX vdk driver', () => {
  it('runs the user program: bytes shared with the driver, fork shares them, vdkunmap once, arena back to start', async () => {
    const lines: string[] = [];
    await vdk.main((l) => lines.push(l));
    const text = lines.join('\n');
    expect(text).toContain('"hello from user space"');
    expect(text).toMatch(/pid 101: sees "hello from user space"/);
    expect(text).toMatch(/pid 100: reads "child" at page 1/);
    expect(text).toContain('its old view is stale (mapped: false) and reads 0 there');
    expect(lines.filter((l) => l.includes('vdkunmap(vt)')).length).toBe(1);
    expect(text).toMatch(/exit → vdkunmap ran once; records: 0/);
    const [free, total] = /arena free bytes: (\d+) of (\d+)/.exec(text)!.slice(1);
    expect(free).toBe(total);
  });

  it('keeps the doubly linked ring consistent', async () => {
    const k = new Kernel({ arenaSize: 2 ** 20 });
    kernels.push(k);
    const d = vdk.createVdkDriver(k);
    k.install('vdk', d.driver);
    const p = k.spawn();
    const fd = await p.open('/dev/vdk');
    const addrs = [];
    for (let i = 1; i <= 3; i++) addrs.push(await p.mmap(0n, i * pageSize, PROT_READ | PROT_WRITE, 1, fd, 0));
    const ring = d.records();
    expect(ring.map((r) => r.d_npages)).toEqual([3, 2, 1]); // each new record goes to the front
    for (const r of ring) expect(r.d_next.d_last).toBe(r);
    expect(k.arena.stats().allocations).toBe(6); // a record and its pages per mapping
    await p.munmap(addrs[1], 2 * pageSize);
    expect(d.records().map((r) => r.d_npages)).toEqual([3, 1]);
    await p.exit();
    expect(d.vdk_list.d_next).toBe(d.vdk_list);
    expect(k.arena.stats().allocations).toBe(0);
  });

  it('runs from npm run example:irix-vdk', () => {
    const out = execFileSync(process.execPath, [join(__dirname, '..', '..', 'dist', 'examples', 'irix-vdk.js')], { encoding: 'utf8' });
    expect(out).toContain('vdkunmap ran once; records: 0');
  });
});

describe('seed 002: rmalloc buffers', () => {
  it('runs the user program: reads in XX_MAXSIZE pieces, EFAULT path, arena back to start', async () => {
    const lines: string[] = [];
    await xx.main((l) => lines.push(l));
    const text = lines.join('\n');
    expect(text).toContain('→ 2000 bytes in pieces of at most 640; stream intact: true');
    expect(text).toContain('read into an unmapped address → EFAULT; map: 2560 of 2560 free');
    const [free, total] = /arena free bytes: (\d+) of (\d+)/.exec(text)!.slice(1);
    expect(free).toBe(total);
  });

  it('rmfrees the buffer and returns EFAULT when uiomove meets a bad address midway', async () => {
    const k = new Kernel({ arenaSize: 2 ** 20 });
    kernels.push(k);
    const d = xx.createXxDriver(k);
    k.install('xx', d.driver);
    d.xxstart();
    expect(d.mp!.freeRanges()).toEqual([{ index: d.buffer, size: xx.XX_BUFSIZE }]);
    const p = k.spawn();
    const fd = await p.open('/dev/xx');
    const buf = await p.mmap(0n, pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    // 1000 bytes starting 700 bytes before the end of the only page: the first 640-byte piece fits, the second faults.
    const n = await p.read(fd, buf + BigInt(pageSize - 700), 1000);
    expect(n).toBe(700);
    const got = new Uint8Array(await p.view(buf + BigInt(pageSize - 700), 700));
    expect(got.every((b, i) => b === xx.streamByte(i))).toBe(true);
    expect(d.mp!.freeUnits).toBe(xx.XX_BUFSIZE);
    expect(d.mp!.freeRanges().length).toBe(1);
    await p.exit();
    d.xxdetach();
    expect(k.kmem_alloc(xx.XX_BUFSIZE, KM_NOSLEEP)).not.toBeNull();
  });
});

describe('seed 001: devmap contexts (example 11-5)', () => {
  it('runs the user program: private contexts switch, the middle unmap splits, the fork copies, nothing leaks', async () => {
    const { main } = await import('../../examples/devmap-contexts');
    const lines: string[] = [];
    await main((l) => lines.push(l));
    const text = lines.join('\n');
    expect(text).toMatch(/pid 100 reads register 0: 0xaa/);
    expect(text).toMatch(/devmap_unmap\(dhp#1 off=1p len=2p new1=1 new2=\d+\)/);
    expect(text).toMatch(/pid 102 \(forked from 100\) reads register 0: 0xaa/);
    expect(text).toContain('contexts still allocated: 0; arena allocations: 0');
  });

  it('MAP_SHARED mappings share one context; private ones keep their own across switches', async () => {
    const { createXxDriver } = await import('../../examples/devmap-contexts');
    const k = new Kernel({ arenaSize: 2 ** 20 });
    kernels.push(k);
    const { driver, xsp } = createXxDriver(k);
    k.install('xx', driver);
    const [a, b] = [k.spawn(), k.spawn()];
    const RW = PROT_READ | PROT_WRITE;
    const sa = await a.mmap(0n, pageSize, RW, 1 /* MAP_SHARED */, await a.open('/dev/xx'), 0);
    const sb = await b.mmap(0n, pageSize, RW, 1, await b.open('/dev/xx'), 0);
    new Uint8Array(await a.view(sa, 1))[0] = 5;
    expect(new Uint8Array(await b.view(sb, 1))[0]).toBe(5);
    const ctxs = [...xsp.live];
    expect(ctxs.length).toBe(2);
    expect(ctxs[0].context).toBe(ctxs[1].context);
    await a.exit();
    await b.exit();
    expect(xsp.live.size).toBe(0);
    k.kmem_free(xsp.ctx_shared, 4 * pageSize);
    xsp.dip.detach();
  });
});
