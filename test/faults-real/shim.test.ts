// Real faults of unmodified C programs under the preload shim (SPEC A.9): the shim hands the host a userfaultfd
// and runs the agent thread; a program's touches fault into devmap_access, and a forked child's inherited
// mapping starts unloaded (SPEC A.5), so its first touch faults with the child's pid.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEVMAP_WRITE, Kernel } from '../../lib';
import { trackLeaks } from '../helpers/leaks';
import { Program, compile, serve } from '../clients/helpers';
import { P, faultDriver } from './driver';

trackLeaks();

let mapProgram = '';
beforeAll(async () => {
  mapProgram = await compile('client-map');
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const kernel = new Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 16 * 2 ** 20 });
  const flt = faultDriver(kernel);
  kernel.install('flt', flt.driver);
  const served = await serve(kernel);
  cleanups.push(async () => {
    await served.close();
    await kernel.shutdown();
  });
  return { flt, served };
}

describe('a C program under the shim faults into devmap_access for real', () => {
  it('its first write is devmap_access(DEVMAP_WRITE) with its pid; the bytes land in the device', async () => {
    const { flt, served } = await setup();
    const prog = new Program(mapProgram, ['/dev/flt', '2', 'plain'], served, ['/dev/flt']);
    await prog.line(/mapped/);
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    expect(prog.stderr).toBe('');
    expect(flt.accesses.map(({ off, rw }) => ({ off, rw }))).toEqual([{ off: 0, rw: DEVMAP_WRITE }]);
    expect(Buffer.from(flt.regs.subarray(0, 12)).toString()).toBe('hello from C');
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });

  it('fork: the child\'s inherited mapping starts unloaded; its first touch faults with the child\'s pid', async () => {
    const { flt, served } = await setup();
    const prog = new Program(mapProgram, ['/dev/flt', '3', 'fork'], served, ['/dev/flt']);
    await prog.line(/mapped/);
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    expect(prog.stdout).toContain('parent reads child');
    await served.untilExits(2);
    const pids = new Set(flt.accesses.map((a) => a.pid));
    expect(pids.size).toBe(2);
    const child = flt.accesses.find((a) => a.pid !== flt.accesses[0].pid)!;
    expect(child).toMatchObject({ off: P, rw: DEVMAP_WRITE });
    expect(served.errors).toEqual([]);
  });
});
