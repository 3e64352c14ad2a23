import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  KM_CACHEALIGN, KM_NOSLEEP, KM_PHYSCONTIG, Kernel, KernelPanic, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, Mapping,
  PROT_READ, PROT_WRITE, UIO_READ, UIO_WRITE, btoc, btoct, btop, btopr, ctob, getmajor, getminor, makedev, pageSize,
  ptob, type CharDriver, type EntryTrace, type Uio,
} from '../../lib';
import { trackLeaks } from '../helpers/leaks';
import { kernelsForTests } from './boot';

trackLeaks();

const RW = PROT_READ | PROT_WRITE;

/** The kernel's protection of the page at `addr` ("rw", "--", …), from /proc/self/maps. */
function realProt(addr: bigint): string {
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const [range, perms] = line.split(' ');
    const [s, e] = (range ?? '').split('-').map((x) => BigInt('0x' + x));
    if (s <= addr && addr < e) return perms.slice(0, 2);
  }
  return 'unmapped';
}
const { boot } = kernelsForTests();

describe('page units (SPEC B.4)', () => {
  it('rounds as the manuals say', () => {
    const P = pageSize;
    expect([btop(P + 1), btopr(P + 1), btopr(P), btopr(0), ptob(2)]).toEqual([1, 2, 1, 0, 2 * P]);
    expect([btoc(P + 904), btoc(P), btoc(0), btoct(P + 904), ctob(2)]).toEqual([2, 1, 0, 1, 2 * P]);
    expect(() => btoc(-1)).toThrow(RangeError);
    expect(() => btop(1.5)).toThrow(RangeError);
    expect(() => ctob('1' as never)).toThrow(TypeError);
  });
});

describe('dev_t', () => {
  it('packs major and minor', () => {
    const dev = makedev(7, 3);
    expect([getmajor(dev), getminor(dev)]).toEqual([7, 3]);
    expect(() => makedev(1, 2 ** 18)).toThrow(RangeError);
  });
});

describe('kmem', () => {
  it('hands out cache-aligned kernel addresses inside the arena and takes them back exactly', async () => {
    const k = boot();
    const start = k.arena.stats().freeBytes;
    const a = k.kmem_alloc(10, KM_NOSLEEP) as number;
    const b = (await k.kmem_alloc(100, KM_CACHEALIGN)) as number;
    expect(a % 64).toBe(0);
    expect(b % 64).toBe(0);
    expect(k.arena.contains(a, 10) && k.arena.contains(b, 100)).toBe(true);
    expect(b).not.toBe(a);
    const page = k.kmem_alloc(pageSize, KM_NOSLEEP) as number;
    const contig = k.kmem_alloc(100, KM_NOSLEEP | KM_PHYSCONTIG) as number;
    expect(page % pageSize).toBe(0);
    expect(contig % pageSize).toBe(0);
    for (const [x, n] of [[a, 10], [b, 100], [page, pageSize], [contig, 100]]) k.kmem_free(x, n);
    expect(k.arena.stats().freeBytes).toBe(start);
    expect(k.arena.stats().allocations).toBe(0);
  });

  it('kmem_zalloc zeroes; bzero and bcopy work on kernel memory', async () => {
    const k = boot();
    const a = k.kmem_alloc(256, KM_NOSLEEP) as number;
    k.kbytes(a, 256).fill(0xff);
    k.kmem_free(a, 256);
    const z = (await k.kmem_zalloc(256)) as number;
    expect(k.kbytes(z, 256).every((x) => x === 0)).toBe(true);
    k.kbytes(z, 4).set([1, 2, 3, 4]);
    k.bcopy(z, z + 2, 4);
    expect([...k.kbytes(z, 6)]).toEqual([1, 2, 1, 2, 3, 4]);
    k.bzero(z, 6);
    expect([...k.kbytes(z, 6)]).toEqual([0, 0, 0, 0, 0, 0]);
    k.kmem_free(z, 256);
  });

  it('size 0 gives null whatever the flags; NOSLEEP gives null when full; SLEEP waits for a free', async () => {
    const k = boot(4 * pageSize);
    expect(k.kmem_alloc(0, KM_NOSLEEP)).toBeNull();
    expect(await k.kmem_alloc(0)).toBeNull();
    const all = k.kmem_alloc(4 * pageSize, KM_NOSLEEP) as number;
    expect(all).not.toBeNull();
    expect(k.kmem_alloc(64, KM_NOSLEEP)).toBeNull();
    let got: number | null = null;
    const waiting = (k.kmem_alloc(64) as Promise<number | null>).then((x) => (got = x));
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBeNull();
    k.kmem_free(all, 4 * pageSize);
    await waiting;
    expect(got).toBe(all);
    k.kmem_free(got!, 64);
  });

  it('panics on a free that does not match an allocation, and changes nothing', () => {
    const k = boot();
    const a = k.kmem_alloc(128, KM_NOSLEEP) as number;
    const before = k.arena.stats();
    expect(() => k.kmem_free(a + 64, 64)).toThrow(KernelPanic);
    expect(() => k.kmem_free(a, 64)).toThrow(/wrong size/);
    expect(() => k.kmem_free(a, 256)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_KERNEL_PANIC' }));
    expect(k.arena.stats()).toEqual(before);
    k.kmem_free(a, 128);
    expect(() => k.kmem_free(a, 128)).toThrow(KernelPanic);
    expect(() => k.kmem_alloc(10, 0x40)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => k.kmem_alloc(-1, KM_NOSLEEP)).toThrow(RangeError);
  });
});

/** A driver that keeps a byte buffer in kernel memory and serves read/write/ioctl through uiomove. */
function bufferDriver(k: Kernel, size = 4096) {
  let buf = 0;
  const calls: string[] = [];
  const driver: CharDriver = {
    open(dev) {
      calls.push(`open ${getminor(dev)}`);
      if (!buf) buf = k.kmem_zalloc(size, KM_NOSLEEP) as number;
      return 0;
    },
    close() {
      calls.push('close');
      k.kmem_free(buf, size);
      buf = 0;
      return 0;
    },
    read(dev, uio: Uio) {
      const n = Math.max(0, Math.min(uio.resid, size - uio.offset));
      return k.uiomove(buf + uio.offset, n, UIO_READ, uio);
    },
    write(dev, uio: Uio) {
      const n = Math.max(0, Math.min(uio.resid, size - uio.offset));
      return k.uiomove(buf + uio.offset, n, UIO_WRITE, uio);
    },
    ioctl(dev, cmd) {
      calls.push(`ioctl ${cmd}`);
      return cmd === 1 ? 0 : 25;
    },
  };
  return { driver, calls };
}

describe('processes and system calls', () => {
  it('read and write move bytes between the process memory and kernel memory, for real', async () => {
    const k = boot();
    const { driver, calls } = bufferDriver(k);
    k.install('buf', driver);
    const p = k.spawn();
    const fd = await p.open('/dev/buf');
    const mem = await p.mmap(0n, pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const view = new Uint8Array(await p.view(mem, 16));
    view.set([9, 8, 7, 6]);
    expect(await p.write(fd, mem, 4)).toBe(4);
    expect(await p.write(fd, mem, 2)).toBe(2); // the file offset advanced
    const fd2 = await p.open('/dev/buf');
    const dst = mem + 100n;
    expect(await p.read(fd2, dst, 6)).toBe(6);
    expect([...new Uint8Array(await p.view(dst, 6))]).toEqual([9, 8, 7, 6, 9, 8]);
    await p.ioctl(fd, 1);
    await expect(p.ioctl(fd, 2)).rejects.toMatchObject({ code: 'ENOTTY', syscall: 'ioctl', pid: p.pid });
    await p.close(fd);
    expect(calls).not.toContain('close'); // fd2 is still open
    await p.close(fd2);
    expect(calls.filter((c) => c === 'close')).toEqual(['close']);
    await p.exit();
  });

  it('validates like the real system calls (SPEC A.3.1) and fails with errno-coded errors', async () => {
    const k = boot();
    k.install('buf', bufferDriver(k).driver);
    const p = k.spawn();
    const fd = await p.open('/dev/buf');
    const cases: [Promise<unknown>, string][] = [
      [p.mmap(0n, 0, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 'EINVAL'],
      [p.mmap(0n, pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 1), 'EINVAL'],
      [p.mmap(0n, pageSize, RW, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 'EINVAL'],
      [p.mmap(0n, pageSize, RW, MAP_ANONYMOUS, -1, 0), 'EINVAL'],
      [p.mmap(0n, pageSize, RW, MAP_SHARED | 0x800000, -1, 0), 'EINVAL'],
      [p.mmap(0n, pageSize, 0x10, MAP_SHARED | MAP_ANONYMOUS, -1, 0), 'EINVAL'],
      [p.mmap(0n, pageSize, RW, MAP_SHARED, 99, 0), 'EBADF'],
      [p.mmap(0n, pageSize, RW, MAP_SHARED, fd, 0), 'ENODEV'], // no mapping interface
      [p.mmap(0n, 1000 * pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 'ENOMEM'],
      [p.mmap(1n, pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), 'EINVAL'],
      [p.munmap(p.as.base + 1n, pageSize), 'EINVAL'],
      [p.munmap(p.as.base, 0), 'EINVAL'],
      [p.mprotect(p.as.base, pageSize, PROT_READ), 'ENOMEM'],
      [p.open('/dev/nothing'), 'ENOENT'],
      [p.close(42), 'EBADF'],
      [p.read(42, 0n, 1), 'EBADF'],
    ];
    for (const [call, code] of cases) await expect(call).rejects.toMatchObject({ code });
    await expect(p.mmap('x' as never, 1, 1, 1, -1, 0)).rejects.toThrow(TypeError);
    await expect(p.munmap(-1n, 1)).rejects.toThrow(RangeError);
    await p.exit();
    await expect(p.open('/dev/buf')).rejects.toMatchObject({ code: 'ERR_DEVMAP_PROCESS_EXITED' });
  });

  it('anonymous memory: MAP_SHARED is shared with a forked child, MAP_PRIVATE is copied', async () => {
    const k = boot();
    const p = k.spawn();
    const shared = await p.mmap(0n, pageSize, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    const priv = await p.mmap(0n, pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    new Uint8Array(await p.view(shared, 1))[0] = 1;
    new Uint8Array(await p.view(priv, 1))[0] = 2;
    const c = await p.fork();
    const at = (a: bigint) => c.as.base + (a - p.as.base);
    expect(new Uint8Array(await c.view(at(shared), 1))[0]).toBe(1);
    expect(new Uint8Array(await c.view(at(priv), 1))[0]).toBe(2);
    new Uint8Array(await c.view(at(shared), 1))[0] = 10;
    new Uint8Array(await c.view(at(priv), 1))[0] = 20;
    expect(new Uint8Array(await p.view(shared, 1))[0]).toBe(10);
    expect(new Uint8Array(await p.view(priv, 1))[0]).toBe(2);
    await c.exit();
    await p.exit();
  });

  it('munmap really unmaps and views go stale (over trash aliases, never detached): the hole is free at once, and a new mapping there is not seen through them', async () => {
    const k = boot();
    const p = k.spawn();
    const a = await p.mmap(0n, 3 * pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    // The view lives in a helper's frame only, so that it can be collected later in this test.
    const stale = async (): Promise<WeakRef<Uint8Array>> => {
      const v = new Uint8Array(await p.view(a + BigInt(pageSize), 8));
      v[0] = 1;
      await p.munmap(a + BigInt(pageSize), pageSize);
      // Attached over trash pages: a Node API holding the view finishes normally; the hole reads zeros.
      expect(Mapping.of(v)?.mapped).toBe(false);
      expect(v[0]).toBe(0);
      return new WeakRef(v);
    };
    const v = await stale();
    // The view was over an alias, so nothing holds the hole: the free-range search finds it (first fit).
    const elsewhere = await p.mmap(0n, pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect(elsewhere).toBe(a + BigInt(pageSize));
    new Uint8Array(await p.view(elsewhere, 8))[0] = 5;
    expect(v.deref()?.[0]).toBe(0); // not the new mapping's bytes
    await p.munmap(elsewhere, pageSize);
    await expect(p.access(a + BigInt(pageSize), 1)).rejects.toMatchObject({ code: 'SIGSEGV' });
    await p.access(a, 1, 'write');
    expect(p.pmap().map((e) => e.length)).toEqual([pageSize, pageSize]);
    const again = await p.mmap(a + BigInt(pageSize), pageSize, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    expect(again).toBe(a + BigInt(pageSize));
    expect(v.deref()?.length).toBe(8); // still attached, over its trash
    new Uint8Array(await p.view(again, 8))[0] = 7;
    expect(v.deref()?.[0]).toBe(0);
    // Once the stale view is collected its alias goes; the pages MAP_FIXED placed are left alone.
    for (let i = 0; i < 4; i++) {
      globalThis.gc?.();
      await new Promise((r) => setTimeout(r, 60));
    }
    expect(v.deref()).toBeUndefined();
    expect(realProt(again)).toBe('rw');
    expect(new Uint8Array(await p.view(again, 8))[0]).toBe(7);
    await p.mprotect(a, pageSize, PROT_READ);
    await expect(p.access(a, 1, 'write')).rejects.toMatchObject({ code: 'SIGSEGV' });
    await p.exit();
  });

  it('traces every entry point call, and survives drivers that throw or return garbage', async () => {
    const k = boot();
    const traces: EntryTrace[] = [];
    k.on('entry', (t) => traces.push(t));
    k.install('bad', {
      open: () => {
        throw new Error('driver bug');
      },
      ioctl: () => 'nonsense' as never,
    });
    k.install('slow', { open: async () => new Promise<number>((r) => setTimeout(() => r(16), 1)) });
    const p = k.spawn();
    await expect(p.open('/dev/bad')).rejects.toMatchObject({ code: 'EIO' });
    expect((k.lastDriverError as Error).message).toBe('driver bug');
    await expect(p.open('/dev/slow')).rejects.toMatchObject({ code: 'EBUSY' });
    expect(traces.map((t) => [t.entry, t.driver, t.pid])).toEqual([['open', 'bad', p.pid], ['open', 'slow', p.pid]]);
    expect(traces[0].error).toBeInstanceOf(Error);
    expect(traces[1].result).toBe(16);
    expect(traces[1].durationNs).toBeGreaterThan(0);
    await p.exit();
  });
});
