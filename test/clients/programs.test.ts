// Unmodified C and Python programs as client processes of a kernel host, through the preload shim: the seeds
// for real (000's vdk to a C program, 002's xxread to Python), a devmap driver's exact split from a real
// munmap, fork (devmap_dup), exec, crashes and SIGKILL as exits, and two processes at once with one killed.
import { beforeAll, describe, expect, it } from 'vitest';
import { KM_NOSLEEP, Kernel, UIO_READ, UIO_WRITE, pageSize, type Uio } from '../../lib';
import * as vdk from '../../examples/irix-vdk';
import * as xx from '../../examples/rmalloc-buffers';
import { recordingDriver } from '../ddi/driver';
import { join } from 'node:path';
import { fixture, run } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { compile, onCleanup, Program, runWithInput, serve, type Served } from './helpers';

trackLeaks();

let mapProgram = '';
beforeAll(async () => {
  mapProgram = await compile('client-map');
});


async function setup() {
  const kernel = new Kernel({ arenaSize: 4 * 2 ** 20, addressSpaceSize: 64 * 2 ** 20 });
  const free = kernel.arena.stats().freeBytes;
  const driver = vdk.createVdkDriver(kernel);
  kernel.install('vdk', driver.driver);
  const rec = recordingDriver(kernel);
  kernel.install('rec', rec.driver);
  const entries: { entry: string; pid: number | null; args: unknown[] }[] = [];
  kernel.on('entry', (e) => entries.push(e));
  const served = await serve(kernel);
  onCleanup(async () => {
    await served.close();
    await kernel.shutdown();
  });
  return { kernel, free, driver, rec, entries, served };
}

const mapC = (served: Served, path: string, pages: number, mode: string) => new Program(mapProgram, [path, String(pages), mode], served, ['/dev/vdk', '/dev/rec']);
const count = (entries: { entry: string }[], name: string) => entries.filter((e) => e.entry === name).length;

describe('seed 000: the vdk driver served to a C program', () => {
  it('maps, writes through the mapping (the driver reads it at its kernel address), unmaps, exits: drvunmap frees the ring entry once', async () => {
    const { kernel, free, driver, entries, served } = await setup();
    const prog = mapC(served, '/dev/vdk', 3, 'plain');
    await prog.line(/mapped/);
    const [d] = driver.records();
    expect(new TextDecoder().decode(kernel.kbytes(d.d_addr, 12))).toBe('hello from C');
    expect(served.host.clients).toHaveLength(1);
    expect(served.host.clients[0].uid).toBe(process.getuid!());
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    await served.untilExits(1);
    expect(prog.stdout).toContain('done');
    expect(count(entries, 'map')).toBe(1);
    expect(count(entries, 'unmap')).toBe(1);
    expect(count(entries, 'close')).toBe(1);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
    expect(served.errors).toEqual([]);
  });

  it('fork in the client: the child inherits the real mapping (no IRIX driver call); drvunmap once after both exit', async () => {
    const { kernel, free, driver, entries, served } = await setup();
    const prog = mapC(served, '/dev/vdk', 3, 'fork');
    await prog.line(/mapped/);
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    await served.untilExits(2);
    expect(prog.stdout).toContain('parent reads child');
    expect(count(entries, 'map')).toBe(1);
    expect(count(entries, 'unmap')).toBe(1);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
  });

  it('exec drops the mappings: the exit path for that image runs while the program goes on', async () => {
    const { kernel, free, driver, entries, served } = await setup();
    const prog = mapC(served, '/dev/vdk', 2, 'exec');
    await prog.line(/mapped/);
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    await served.untilExits(1);
    expect(served.exits[0].reason).toBe('disconnect');
    expect(count(entries, 'unmap')).toBe(1);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
  });
});

describe('seed 002: xxread served to a Python program', () => {
  it('os.read fills the buffer through uiomove; a bad address is EFAULT in Python and the rmalloc buffer is returned', async () => {
    const kernel = new Kernel({ arenaSize: 2 ** 20 });
    const driver = xx.createXxDriver(kernel);
    kernel.install('xx', driver.driver);
    driver.xxstart();
    const reads: unknown[] = [];
    kernel.on('entry', (e) => e.entry === 'read' && reads.push(e.result));
    const served = await serve(kernel);
    onCleanup(async () => {
      await served.close();
      driver.xxdetach();
      await kernel.shutdown();
    });
    const prog = new Program('python3', [fixture('client-python.py'), 'xx'], served, ['/dev/xx']);
    const done = await prog.exited;
    expect(prog.stderr).toBe('');
    expect(done).toEqual({ code: 0, signal: null });
    expect(prog.stdout).toContain('read 2000 intact True');
    expect(prog.stdout).toContain('bad address rc -1 errno EFAULT');
    expect(prog.stdout).toContain('dup read 10');
    expect(reads).toContain(14); // the driver's uiomove saw EFAULT and returned it
    await served.untilExits(1);
    expect(driver.mp!.freeUnits).toBe(xx.XX_BUFSIZE);
  });

  it("Python's mmap.mmap of a device (fstat, F_DUPFD_CLOEXEC, close of the duplicate) maps the driver's pages", async () => {
    const { kernel, free, driver, entries, served } = await setup();
    const prog = new Program('python3', [fixture('client-python.py'), 'vdk'], served, ['/dev/vdk']);
    await prog.line(/mapped/);
    expect(new TextDecoder().decode(kernel.kbytes(driver.records()[0].d_addr, 11))).toBe('from python');
    prog.child.stdin!.end('g');
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    expect(prog.stderr).toBe('');
    await served.untilExits(1);
    expect(count(entries, 'unmap')).toBe(1);
    expect(kernel.arena.stats().freeBytes).toBe(free);
  });
});

describe('write(2) and ioctl(2) from Python', () => {
  it('os.write moves the bytes by uiomove; fcntl.ioctl copies _IOWR bytes in and out by _IOC_SIZE; a refusal is its errno', async () => {
    const kernel = new Kernel({ arenaSize: 2 ** 20 });
    const kbuf = kernel.kmem_zalloc(64, KM_NOSLEEP) as number;
    let held = 0;
    const args: unknown[] = [];
    kernel.install('echo', {
      write: (_dev: number, uio: Uio) => {
        held = uio.resid;
        return kernel.uiomove(kbuf, held, UIO_WRITE, uio);
      },
      read: (_dev: number, uio: Uio) => kernel.uiomove(kbuf, held, UIO_READ, uio),
      ioctl: (_dev: number, cmd: number, arg: unknown) => {
        args.push(arg);
        if (!(arg instanceof Uint8Array)) return 25;
        arg.forEach((b, i) => (arg[i] = b * 10));
        return 0;
      },
    });
    const served = await serve(kernel);
    onCleanup(async () => {
      await served.close();
      kernel.kmem_free(kbuf, 64);
      await kernel.shutdown();
    });
    const prog = new Program('python3', [fixture('client-python.py'), 'echo'], served, ['/dev/echo']);
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    expect(prog.stderr).toBe('');
    expect(prog.stdout).toContain('wrote 16');
    expect(prog.stdout).toContain('read ping from python');
    expect(prog.stdout).toContain('ioctl [10, 20, 30, 40, 50, 60, 70, 80]');
    expect(prog.stdout).toContain('ioctl2 ENOTTY');
    expect(args[1]).toBe(5); // _IO: no size, the integer itself
  });
});

describe('a devmap driver served to C programs', () => {
  it('a real munmap in the middle gives devmap_unmap the exact split (SPEC A.6): (H, off, n, H, H2), then whole-handle unmaps at exit', async () => {
    const { rec, served } = await setup();
    const prog = mapC(served, '/dev/rec', 8, 'middle');
    await prog.line(/mapped/);
    expect(new TextDecoder().decode(rec.device.subarray(0, 12))).toBe('hello from C');
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    await served.untilExits(1);
    const unmaps = rec.calls.filter((c) => c.cb === 'unmap');
    const h = rec.calls.find((c) => c.cb === 'map')!.h;
    expect(unmaps[0]).toMatchObject({ h, off: 2 * pageSize, len: 2 * pageSize, n1: h });
    expect(unmaps[0].n2).not.toBe(null);
    expect(unmaps[0].n2).not.toBe(h);
    expect(rec.device[pageSize]).toBe('x'.charCodeAt(0));
    expect(rec.device[4 * pageSize]).toBe('y'.charCodeAt(0));
    expect(unmaps).toHaveLength(3);
    expect(rec.privates.every((p) => p.freed)).toBe(true);
  });

  it('fork runs devmap_dup for the child; both exits unmap every handle once', async () => {
    const { rec, served } = await setup();
    const prog = mapC(served, '/dev/rec', 4, 'fork');
    await prog.line(/mapped/);
    prog.go();
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    await served.untilExits(2);
    expect(prog.stdout).toContain('parent reads child');
    const dups = rec.calls.filter((c) => c.cb === 'dup');
    expect(dups).toHaveLength(1);
    expect(rec.privates.every((p) => p.freed)).toBe(true);
    expect(rec.calls.filter((c) => c.cb === 'close')).toHaveLength(1);
  });

  it('a driver with devmap_access is served for real: the program\'s touch calls it (test/faults-real has the rest)', async () => {
    const kernel = new Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 16 * 2 ** 20 });
    const rec = recordingDriver(kernel, { access: true });
    kernel.install('acc', rec.driver);
    const served = await serve(kernel);
    onCleanup(async () => {
      await served.close();
      await kernel.shutdown();
    });
    const prog = new Program(mapProgram, ['/dev/acc', '2', 'plain'], served, ['/dev/acc']);
    await prog.line(/mapped/);
    prog.go();
    expect((await prog.exited).code).toBe(0);
    await served.untilExits(1);
    expect(rec.privates.every((p) => p.freed)).toBe(true);
    expect(rec.calls.filter((c) => c.cb === 'access')).toHaveLength(1);
  });
});

describe('two real processes at once, one killed mid-run', () => {
  for (const [name, pages] of [['vdk', 3], ['rec', 4]] as const) {
    it(`${name}: SIGKILL of one is its exit (every unmap once, close once at the end); the other goes on untouched`, async () => {
      const { kernel, free, driver, rec, entries, served } = await setup();
      const a = mapC(served, `/dev/${name}`, pages, 'hold');
      const b = mapC(served, `/dev/${name}`, pages, 'plain');
      await a.line(/mapped/);
      await b.line(/mapped/);
      expect(served.host.clients).toHaveLength(2);
      a.child.kill('SIGKILL');
      expect((await a.exited).signal).toBe('SIGKILL');
      await served.untilExits(1);
      expect(served.host.clients).toHaveLength(1);
      b.go();
      expect(await b.exited).toEqual({ code: 0, signal: null });
      await served.untilExits(2);
      if (name === 'vdk') {
        expect(count(entries, 'unmap')).toBe(2);
        expect(driver.records()).toHaveLength(0);
      } else {
        expect(rec.privates.every((p) => p.freed)).toBe(true);
        // the killed one: a whole-handle unmap; the other: its tail page, then the rest at exit
        expect(rec.calls.filter((c) => c.cb === 'unmap').map((c) => c.len)).toEqual([pages * pageSize, pageSize, (pages - 1) * pageSize]);
      }
      expect(count(entries, 'close')).toBe(1);
      expect(kernel.arena.stats().freeBytes).toBe(free);
    });
  }

  it('a crash (SIGSEGV) is an exit too', async () => {
    const { kernel, free, driver, served } = await setup();
    const prog = mapC(served, '/dev/vdk', 2, 'crash');
    await prog.line(/mapped/);
    prog.go();
    expect((await prog.exited).signal).toBe('SIGSEGV');
    await served.untilExits(1);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
  });
});

describe('the shim leaves everything else to libc', () => {
  it('a program that never opens a served path runs as without it, and never connects', async () => {
    const { served } = await setup();
    const prog = new Program('python3', ['-c', 'import os; fd = os.open("/dev/null", os.O_RDWR); os.write(fd, b"x"); print(os.read(fd, 1) == b"")'], served, ['/dev/vdk']);
    expect(await prog.exited).toEqual({ code: 0, signal: null });
    expect(prog.stdout.trim()).toBe('True');
    await new Promise((r) => setTimeout(r, 50));
    expect(served.exits).toHaveLength(0);
  });
});

describe('devmap run', () => {
  it('runs a program as a client of the kernel at --kernel and exits with its status (128 + signal)', async () => {
    const { kernel, free, driver, served } = await setup();
    const cli = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
    const ok = await runWithInput(process.execPath, [cli, 'run', '--kernel', served.path, '--', 'python3', fixture('client-python.py'), 'vdk'], 'g');
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('closed');
    const crashed = await runWithInput(process.execPath, [cli, 'run', '--kernel', served.path, '--', mapProgram, '/dev/vdk', '1', 'crash'], 'g');
    expect(crashed.code).toBe(128 + 11);
    await served.untilExits(4); // two hellos of `devmap run` itself, two programs
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
  });

  it('usage errors are status 2; a missing kernel is status 1', async () => {
    const cli = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
    expect((await run(process.execPath, [cli, 'run', '--', 'true'])).code).toBe(2);
    expect((await run(process.execPath, [cli, 'run', '--kernel', '/nonexistent.sock'])).code).toBe(2);
    const missing = await run(process.execPath, [cli, 'run', '--kernel', '/nonexistent.sock', '--', 'true']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no kernel host at/);
  });
});
