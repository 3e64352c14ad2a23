// Write faults (DEVMAP_WRITE_FAULTS, devmap's own setup flag; SPEC A.9): a page a driver loaded for reading is
// mapped write-protected in the client (UFFDIO_CONTINUE_MODE_WP), so a write to it is a second real fault,
// devmap_access(..., DEVMAP_WRITE); a driver that refuses the write makes it a real SIGSEGV after the read
// succeeded; a uffd without write-protect mode makes such a mapping fail with ERR_DEVMAP_NO_WRITE_FAULTS.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEVMAP_ACCESS, DEVMAP_READ, DEVMAP_WRITE, Kernel } from '../../lib';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { Program, compile, serve } from '../clients/helpers';
import { P, faultDriver, type FaultDriverOptions } from './driver';

trackLeaks();

let wpProgram = '';
beforeAll(async () => {
  wpProgram = await compile('client-wp');
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: FaultDriverOptions) {
  const kernel = new Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 16 * 2 ** 20 });
  const flt = faultDriver(kernel, opts);
  kernel.install('flt', flt.driver);
  const served = await serve(kernel);
  const faults: { off: number; rw: string; result: number; signal?: string }[] = [];
  served.host.on('fault', (e) => faults.push(e));
  cleanups.push(async () => {
    await served.close();
    await kernel.shutdown();
  });
  return { flt, served, faults };
}

const lines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const calls = (flt: ReturnType<typeof faultDriver>) => flt.accesses.map(({ off, len, type, rw }) => ({ off, len, type, rw }));

describe('DEVMAP_WRITE_FAULTS: a write to a page loaded for reading faults into devmap_access again', () => {
  it('a Node client: a read then a write of one page are two calls, rw READ then WRITE; after devmap_unload a read faults again', async () => {
    const { flt, served } = await setup({ writeFaults: true });
    flt.regs[0] = 9;
    const r = await runNode('fault-client.cjs', [served.path, 'readwrite']);
    expect(r.signal).toBeNull();
    expect(lines(r.stdout)).toEqual([{ read: 9 }, { wrote: 0x77 }, { again: 0x77 }]);
    expect(calls(flt)).toEqual([
      { off: 0, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_READ },
      { off: 0, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_WRITE },
      { off: 0, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_READ },
    ]);
    expect(flt.regs[0]).toBe(0x77);
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });

  it('the same with a UFFD_USER_MODE_ONLY uffd (what an unprivileged client gets)', async () => {
    const { flt, served } = await setup({ writeFaults: true });
    const r = await runNode('fault-client.cjs', [served.path, 'readwrite'], { env: { ...process.env, DEVMAP_UFFD_USER_MODE_ONLY: '1' } });
    expect(r.signal).toBeNull();
    expect(lines(r.stdout)).toEqual([{ read: 0 }, { wrote: 0x77 }, { again: 0x77 }]);
    expect(calls(flt).map((a) => a.rw)).toEqual([DEVMAP_READ, DEVMAP_WRITE, DEVMAP_READ]);
    await served.untilExits(1);
  });

  it('without the flag the same client sees one call per page (seg_dev loads maximal permissions)', async () => {
    const { flt, served } = await setup({});
    const r = await runNode('fault-client.cjs', [served.path, 'readwrite']);
    expect(r.signal).toBeNull();
    expect(calls(flt).map((a) => a.rw)).toEqual([DEVMAP_READ, DEVMAP_READ]); // the read, and the read after the unload
    await served.untilExits(1);
  });

  it('a C program under the shim: read then write are READ then WRITE', async () => {
    const { flt, served } = await setup({ writeFaults: true });
    flt.regs[0] = 5;
    const prog = new Program(wpProgram, ['/dev/flt'], served, ['/dev/flt']);
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    expect(prog.stdout).toBe('read 5\nwrote\n');
    expect(calls(flt)).toEqual([
      { off: 0, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_READ },
      { off: 0, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_WRITE },
    ]);
    expect(flt.regs[0]).toBe(0x77);
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });

  it('a C program: a driver that refuses the write makes the write a real SIGSEGV after the read succeeded', async () => {
    const { flt, served, faults } = await setup({ writeFaults: true, refuseWrites: true });
    flt.regs[0] = 5;
    const prog = new Program(wpProgram, ['/dev/flt'], served, ['/dev/flt']);
    expect(await prog.exited).toEqual({ code: null, signal: 'SIGSEGV' });
    expect(prog.stdout).toBe('read 5\n');
    expect(calls(flt).map((a) => a.rw)).toEqual([DEVMAP_READ, DEVMAP_WRITE]);
    expect(faults).toContainEqual({ pid: expect.any(Number), off: 0, rw: 'write', result: 14, signal: 'SIGSEGV' });
    expect(flt.regs[0]).toBe(5); // the refused write never landed
    await served.untilExits(1);
  });

  it('a uffd without write-protect mode: mapping fails with ERR_DEVMAP_NO_WRITE_FAULTS naming the reason', async () => {
    const { flt, served } = await setup({ writeFaults: true });
    const r = await runNode('fault-client.cjs', [served.path, 'nowp'], { env: { ...process.env, DEVMAP_UFFD_NO_WRITE_FAULTS: '1' } });
    const [o] = lines(r.stdout);
    expect(o.code).toBe('ERR_DEVMAP_NO_WRITE_FAULTS');
    expect(o.message).toMatch(/DEVMAP_WRITE_FAULTS.*write-protect mode/);
    expect(flt.accesses).toEqual([]);
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });
});
