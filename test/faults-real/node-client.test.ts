// Real faults of a Node client process (SPEC A.9): a touch of an unloaded page stops the client's thread and
// runs the driver's devmap_access in the host, with the right type and rw; devmap_unload from the host revokes
// the client's page before it returns; a refused fault is the client's SIGSEGV; EEXIST from UFFDIO_CONTINUE;
// a system call handed an unloaded page under UFFD_USER_MODE_ONLY; a client killed in the middle of a fault;
// the host killed while a client sits in one; an unprivileged client.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { DEVMAP_ACCESS, DEVMAP_READ, DEVMAP_WRITE, Kernel } from '../../lib';
import { fixture, run, runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { compile, serve, until } from '../clients/helpers';
import { P, faultDriver, type FaultDriverOptions } from './driver';

trackLeaks();

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: FaultDriverOptions = {}, allowUids?: number[]) {
  const kernel = new Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 16 * 2 ** 20 });
  const flt = faultDriver(kernel, opts);
  kernel.install('flt', flt.driver);
  const served = await serve(kernel, allowUids ? { allowUids } : undefined);
  const faults: { off: number; rw: string; result: number; signal?: string }[] = [];
  served.host.on('fault', (e) => faults.push(e));
  const entries: { entry: string; args: unknown[] }[] = [];
  kernel.on('entry', (e) => entries.push(e));
  cleanups.push(async () => {
    await served.close();
    await kernel.shutdown();
  });
  return { kernel, flt, served, faults, entries };
}

const lines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

describe('a Node client faults into devmap_access for real', () => {
  it('a read touch is devmap_access(DEVMAP_ACCESS, DEVMAP_READ), a write touch DEVMAP_WRITE; the bytes are the device\'s', async () => {
    const { flt, served } = await setup();
    flt.regs[0] = 42;
    const r = await runNode('fault-client.cjs', [served.path, 'touch']);
    expect(r.signal).toBeNull();
    expect(lines(r.stdout)).toEqual([{ first: 42, second: 0x5a, faults: true }]);
    expect(flt.accesses.map(({ off, len, type, rw }) => ({ off, len, type, rw }))).toEqual([
      { off: 0, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_READ },
      { off: P, len: P, type: DEVMAP_ACCESS, rw: DEVMAP_WRITE },
    ]);
    expect(flt.regs[P]).toBe(0x5a); // the client's write landed in the device's page
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });

  it('devmap_unload from the host revokes the client\'s page before it returns: the next touch faults again', async () => {
    const { flt, served } = await setup();
    const r = await runNode('fault-client.cjs', [served.path, 'unload']);
    expect(r.signal).toBeNull();
    expect(lines(r.stdout)).toEqual([{ before: 0, after: 0 }]);
    expect(flt.unloads).toEqual([0]);
    expect(flt.accesses.map((a) => a.off)).toEqual([0, 0]);
    await served.untilExits(1);
  });

  it('a refused fault is the client\'s SIGSEGV at the access (SPEC A.4), reported in the trace; its exit path runs', async () => {
    const { flt, served, faults, entries } = await setup({ refuseFrom: 2 * P });
    const r = await runNode('fault-client.cjs', [served.path, 'refused', '2']);
    expect(r.signal).toBe('SIGSEGV');
    expect(lines(r.stdout)).toEqual([{ touching: 2 }]);
    expect(flt.accesses.map((a) => a.off)).toEqual([2 * P]);
    expect(faults).toContainEqual({ pid: expect.any(Number), off: 2 * P, rw: 'write', result: 14, signal: 'SIGSEGV' });
    expect(entries.some((e) => e.entry === 'SIGSEGV')).toBe(true);
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });

  it('UFFDIO_CONTINUE answering EEXIST (a page the driver loaded already) is not a failure', async () => {
    const { flt, served } = await setup({ loadPages: 2 });
    // unload touches page 0 (pages 0-1 load), unloads page 0, touches page 0 again: CONTINUE [0, 2) meets page 1.
    const r = await runNode('fault-client.cjs', [served.path, 'unload']);
    expect(r.signal).toBeNull();
    expect(lines(r.stdout)).toEqual([{ before: 0, after: 0 }]);
    expect(flt.accesses.map((a) => a.off)).toEqual([0, 0]);
    await served.untilExits(1);
    expect(served.errors).toEqual([]);
  });
});

describe('hazards', () => {
  it('under UFFD_USER_MODE_ONLY a system call given an unloaded page gets EFAULT; prefault() makes it work', async () => {
    const { flt, served } = await setup();
    flt.regs.set([1, 2, 3, 4], 2 * P);
    const dir = mkdtempSync(join(tmpdir(), 'devmap-faults-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const r = await runNode('fault-client.cjs', [served.path, 'syscall', join(dir, 'out')], { env: { ...process.env, DEVMAP_UFFD_USER_MODE_ONLY: '1' } });
    expect(lines(r.stdout)).toEqual([{ first: 'EFAULT', second: 16, bytes: [1, 2, 3, 4] }]);
    expect(flt.accesses.map((a) => a.off)).toEqual([2 * P]);
  });

  it('a client killed while it sits in a fault: the fault finishes in the host, then its exit runs', async () => {
    const { flt, served } = await setup({ delayMs: 400 });
    const child = spawn(process.execPath, [fixture('fault-client.cjs'), served.path, 'hang'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const closed = new Promise<string | null>((done) => child.on('close', (_c, sig) => done(sig)));
    await until(() => flt.inAccess() > 0, 'the fault in devmap_access');
    child.kill('SIGKILL');
    expect(await closed).toBe('SIGKILL');
    await served.untilExits(1);
    await until(() => flt.inAccess() === 0, 'devmap_access to return');
    expect(served.errors).toEqual([]);
    expect(served.host.clients).toEqual([]);
  });

  it('the host killed while a client sits in a fault: the client resumes and reports ERR_DEVMAP_HOST_GONE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devmap-faults-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const sock = join(dir, 'k.sock');
    const host = spawn(process.execPath, [fixture('fault-host.cjs'), sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    let hostOut = '';
    host.stdout!.on('data', (d) => (hostOut += d));
    const hostClosed = new Promise<void>((done) => host.on('close', () => done()));
    await until(() => hostOut.includes('listening'), 'the host to listen');
    const client = spawn(process.execPath, [fixture('fault-client.cjs'), sock, 'hang'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let clientOut = '';
    client.stdout!.on('data', (d) => (clientOut += d));
    const clientClosed = new Promise<{ code: number | null; signal: string | null }>((done) => client.on('close', (code, signal) => done({ code, signal })));
    await until(() => hostOut.includes('in-access'), 'the client to sit in a fault');
    host.kill('SIGKILL');
    await hostClosed;
    const end = await clientClosed;
    expect(end).toEqual({ code: 0, signal: null });
    const [mapped, resumed] = lines(clientOut);
    expect(mapped).toEqual({ mapped: true });
    expect(resumed).toMatchObject({ resumed: true, code: 'ERR_DEVMAP_HOST_GONE' });
  });

  it.runIf(process.getuid?.() === 0)('an unprivileged client (uid 65534) faults through UFFD_USER_MODE_ONLY', async () => {
    const { flt, served } = await setup({}, [65534]);
    chmodSync(join(served.path, '..'), 0o711);
    flt.regs[0] = 7;
    const r = await runNode('fault-client.cjs', [served.path, 'touch'], { uid: 65534, gid: 65534 });
    expect(r.stderr).toBe('');
    expect(lines(r.stdout)).toEqual([{ first: 7, second: 0x5a, faults: true }]);
    expect(flt.accesses.map((a) => a.pid)).toHaveLength(2);
    expect(flt.regs[P]).toBe(0x5a);
  });

  describe('where userfaultfd is unavailable, mapping such a segment fails with a coded error naming the reason and the fix', () => {
    it('a kernel without userfaultfd (ENOSYS)', async () => {
      const { flt, served } = await setup();
      const noUffd = await compile('no-uffd');
      const res = await run(noUffd, ['ENOSYS', process.execPath, fixture('fault-client.cjs'), served.path, 'nofaults']);
      const [o] = lines(res.stdout);
      expect(o.code).toBe('ERR_DEVMAP_NO_USERFAULTFD');
      expect(o.message).toMatch(/devmap_access entry point.*no userfaultfd.*CONFIG_USERFAULTFD.*To fix/);
      expect(o.why).toMatch(/CONFIG_USERFAULTFD/);
      expect(flt.accesses).toEqual([]);
      await served.untilExits(1);
      expect(served.errors).toEqual([]);
    });

    it.runIf(process.getuid?.() === 0)('an unprivileged user where the sysctl and /dev/userfaultfd both refuse (EPERM, EACCES)', async () => {
      const { served } = await setup({}, [65534]);
      chmodSync(join(served.path, '..'), 0o711);
      const noUffd = await compile('no-uffd');
      chmodSync(join(noUffd, '..'), 0o755);
      const res = await run(noUffd, ['EPERM', process.execPath, fixture('fault-client.cjs'), served.path, 'nofaults'], { uid: 65534, gid: 65534 });
      const [o] = lines(res.stdout);
      expect(o.code).toBe('ERR_DEVMAP_NO_USERFAULTFD');
      expect(o.message).toMatch(/vm\.unprivileged_userfaultfd.*\/dev\/userfaultfd.*To fix/);
      await served.untilExits(1);
    });
  });
});
