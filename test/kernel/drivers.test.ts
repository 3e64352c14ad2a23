// Drivers that catch their own mistakes (issue 14): a misspelled entry point fails to type-check and to install,
// a driver cannot use two mapping interfaces, an entry point that throws fails the system call with EIO and the
// exception as `cause`, kernel argument errors carry codes; addresses are bigints and pmap prints readably.
import { Console } from 'node:console';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import {
  DevInfo, Kernel, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_ALL, PROT_READ, PROT_WRITE, devmap_devmem_setup,
  UIO_READ, pageSize, v_mapphys, type DevmapHandle, type IrixDriver, type Out, type Uio, type VHandle,
} from '../../lib';
import { trackLeaks } from '../helpers/leaks';
import { kernelsForTests } from './boot';

trackLeaks();

const RW = PROT_READ | PROT_WRITE;
const P = pageSize;
const { boot, keep } = kernelsForTests();

/** Type-checks `source` (which imports the package as 'devmap') with --strict; returns the diagnostics' texts. */
function typeErrors(source: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'devmap-types-'));
  try {
    const file = join(dir, 'driver.ts');
    writeFileSync(file, source);
    const program = ts.createProgram([file], {
      strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10, lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
      types: ['node'], typeRoots: [resolve(__dirname, '../../node_modules/@types')], skipLibCheck: true,
      baseUrl: dir, paths: { devmap: [resolve(__dirname, '../../lib/index.ts')] },
    });
    return ts.getPreEmitDiagnostics(program)
      .filter((d) => d.file?.fileName === file)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  } finally {
    rmSync(dir, { recursive: true });
  }
}

describe('a misspelled entry point is a type error (tsc --strict)', () => {
  it('IrixDriver, DevmapDriver and kernel.install refuse unknown members; correct drivers compile', () => {
    const errors = typeErrors(`
      import { Kernel, type DevmapDriver, type IrixDriver } from 'devmap';
      const k = new Kernel();
      export const a: IrixDriver = { mapp: () => 0 };
      export const b: IrixDriver = { map: () => 0, unmapp: () => 0 };
      export const c: DevmapDriver = { devmap: () => 0, devmapp: () => 0 };
      k.install('x', { opne: () => 0 });
      // Correct ones:
      export const ok1: IrixDriver = { map: () => 0, unmap: () => 0, open: () => 0 };
      export const ok2: DevmapDriver = { devmap: () => 0, close: () => 0 };
      k.install('y', { map: () => 0, unmap: () => 0 });
      k.install('z', { devmap: () => 0, ioctl: () => 0 });
    `);
    expect(errors.length).toBe(4);
    for (const [name, e] of ['mapp', 'unmapp', 'devmapp', 'opne'].map((n, i) => [n, errors[i]])) {
      expect(e).toMatch(/Object literal may only specify known properties/);
      expect(e).toContain(`'${name}'`);
    }
  }, 60_000);
});

describe('install() refuses what a driver cannot mean', () => {
  it('an unknown entry point, with a did-you-mean hint; state and accessors beside it are fine', () => {
    const k = boot();
    const refused = (driver: object) => {
      try {
        k.install('x', driver as IrixDriver);
      } catch (err) {
        return err as Error & { code: string };
      }
      throw new Error('installed');
    };
    expect(refused({ mapp: () => 0 })).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('did you mean "map"?') });
    expect(refused({ map: () => 0, unmapp: () => 0 }).message).toContain('did you mean "unmap"?');
    expect(refused({ devmap: () => 0, devmap_unmap: () => 0 }).message).toMatch(/Unknown entry point "devmap_unmap"/);
    expect(refused({ read: () => 0, helper: () => 0 }).message).toMatch(/Unknown entry point "helper" in driver; entry points: open, close/);
    class Misspelled {
      opne() {
        return 0;
      }
    }
    expect(refused(new Misspelled()).message).toContain('did you mean "open"?');
    class Vdk {
      records = [] as number[];
      get count() {
        return this.records.length;
      }
      map() {
        return 0;
      }
      unmap() {
        return 0;
      }
    }
    expect(k.install('vdk', new Vdk())).toBe(1);
  });

  it('a driver with both the IRIX map and the Solaris devmap entry points', () => {
    const k = boot();
    expect(() => k.install('both', { map: () => 0, unmap: () => 0, devmap: () => 0 } as IrixDriver)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringMatching(/one interface.*IRIX drvmap.*devmap framework/) }),
    );
  });

  it('kernel argument errors carry codes', () => {
    const k = boot();
    expect(() => k.install('../x', {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => k.install(1 as never, {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => k.install('x', null as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    k.install('x', {});
    expect(() => k.install('x', {})).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_DRIVER_EXISTS' }));
    expect(() => k.mknod('/tmp/x', 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => k.mknod('/dev/y', 99 * 2 ** 18)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NO_DRIVER' }));
    expect(() => new Kernel({ mappers: 'irix' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new Kernel(5 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new Kernel({ arenaSiz: 2 ** 20 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('did you mean "arenaSize"?') }));
  });
});

describe('an entry point that throws fails the system call with EIO and the exception as cause', () => {
  it('open, ioctl, IRIX map; devmap(9E) (ENXIO by SPEC A.3); devmap_access (SIGBUS)', async () => {
    const k = boot();
    const bug = (what: string) => () => {
      throw new Error(`bug in ${what}`);
    };
    k.install('o', { open: bug('open') });
    k.install('i', { ioctl: bug('ioctl') });
    k.install('m', { map: bug('map'), unmap: () => 0 });
    k.install('d', { devmap: bug('devmap') });
    const dip = new DevInfo('acc', [{ size: P }]);
    keep(dip);
    k.install('a', {
      devmap(dev: number, dhp: DevmapHandle, off: number, len: number, maplen: Out<number>) {
        maplen.value = len;
        return devmap_devmem_setup(dhp, dip, { devmap_rev: 1, devmap_access: bug('devmap_access') }, 0, 0, len, PROT_ALL, 0);
      },
    });
    const p = k.spawn();
    await expect(p.open('/dev/o')).rejects.toMatchObject({ code: 'EIO', syscall: 'open', cause: { message: 'bug in open' } });
    await expect(p.ioctl(await p.open('/dev/i'), 1)).rejects.toMatchObject({ code: 'EIO', cause: { message: 'bug in ioctl' } });
    await expect(p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/m'), 0)).rejects.toMatchObject({ code: 'EIO', cause: { message: 'bug in map' } });
    await expect(p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/d'), 0)).rejects.toMatchObject({ code: 'ENXIO', cause: { message: 'bug in devmap' } });
    const a = await p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/a'), 0);
    await expect(p.access(a, 1)).rejects.toMatchObject({ code: 'SIGBUS', cause: { message: 'bug in devmap_access' } });
    // A failure the driver returned has no cause; one call's exception never leaks into the next call.
    k.install('e', { open: () => 16 });
    await expect(p.open('/dev/e')).rejects.toSatisfy((e: Error) => (e as { code?: string }).code === 'EBUSY' && e.cause === undefined);
    await p.exit();
  });

  it('a driver that corrupts its uio gets a coded error from uiomove, and read(2) fails with EIO', async () => {
    const k = boot();
    const kaddr = k.kmem_alloc(64, 1) as number;
    k.install('u', {
      read(dev: number, uio: Uio) {
        (uio.iov[0] as { base: unknown }).base = 5;
        return k.uiomove(kaddr, 8, UIO_READ, uio);
      },
    });
    const p = k.spawn();
    const buf = await p.mmap(0n, P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    await expect(p.read(await p.open('/dev/u'), buf, 8)).rejects.toMatchObject({ code: 'EIO', cause: { code: 'ERR_INVALID_ARG_TYPE' } });
    k.kmem_free(kaddr, 64);
    await p.exit();
  });

  it('a malformed return is EIO with a coded cause', async () => {
    const k = boot();
    k.install('g', { open: () => 'nonsense' as never });
    await expect(k.spawn().open('/dev/g')).rejects.toMatchObject({ code: 'EIO', cause: { code: 'ERR_DEVMAP_DRIVER_RESULT' } });
  });
});

describe('addresses are bigints; pmap prints readably', () => {
  it('proc.as.base and end are bigints; console.table(pmap()) shows hex starts', async () => {
    const k = boot();
    let buf = 0;
    k.install('v', {
      map(dev: number, vt: VHandle, off: number, len: number) {
        buf = k.kmem_alloc(len, 1) as number;
        return v_mapphys(vt, buf, len);
      },
      unmap: () => k.kmem_free(buf, P),
    });
    const p = k.spawn();
    expect([typeof p.as.base, typeof p.as.end]).toEqual(['bigint', 'bigint']);
    expect(p.as.end - p.as.base).toBe(BigInt(p.as.size));
    const anon = await p.mmap(0n, 2 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const dev = await p.mmap(0n, P, RW, MAP_SHARED, await p.open('/dev/v'), 0);
    expect(anon).toBe(p.as.base);
    const entries = p.pmap();
    expect(entries.map((e) => e.address)).toEqual([anon, dev]);
    let out = '';
    const sink = new Writable({ write: (chunk, _enc, done) => void ((out += chunk), done()) });
    new Console(sink).table(entries);
    expect(out).toContain(`'0x${anon.toString(16)}'`);
    expect(out).toContain(`'0x${dev.toString(16)}'`);
    expect(out).not.toMatch(/\d+n\b/); // no raw bigint column
    expect(out.split('\n')[1]).toMatch(/start.*length.*kind.*device.*offset.*prot.*flags.*handle/);
    await p.exit();
  });
});
