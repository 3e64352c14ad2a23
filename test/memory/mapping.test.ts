import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  MADV_DONTNEED, MADV_SEQUENTIAL, Mapping, PROT_NONE, PROT_READ, PROT_WRITE, mapAnonymous, pageSize,
} from '../../lib';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

/** The /proc/self/maps lines that overlap [addr, addr + len). */
function mapsOverlapping(addr: bigint, len: number): { start: bigint; end: bigint; perms: string }[] {
  return readFileSync('/proc/self/maps', 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const [range, perms] = l.split(' ');
      const [s, e] = range.split('-').map((x) => BigInt('0x' + x));
      return { start: s, end: e, perms };
    })
    .filter((m) => m.start < addr + BigInt(len) && m.end > addr);
}

/**
 * Bytes of [addr, addr+len) that map the memory object, according to the kernel (shared mappings: after unmap
 * the range holds private trash pages until nothing can reach it, and those are not the object's).
 */
function mappedBytes(addr: bigint, len: number): number {
  let n = 0n;
  for (const m of mapsOverlapping(addr, len).filter((x) => x.perms.endsWith('s'))) {
    const s = m.start > addr ? m.start : addr;
    const e = m.end < addr + BigInt(len) ? m.end : addr + BigInt(len);
    n += e - s;
  }
  return Number(n);
}

describe('mapAnonymous', () => {
  it('maps real shared memory at a real address', () => {
    const m = mapAnonymous(3 * pageSize);
    expect(typeof m.address).toBe('bigint');
    expect(m.address % BigInt(pageSize)).toBe(0n);
    expect(m.length).toBe(3 * pageSize);
    expect(m.mapped).toBe(true);
    expect(m.shared).toBe(true);
    const maps = mapsOverlapping(m.address, m.length);
    expect(maps.length).toBe(1);
    expect(maps[0].perms).toBe('rw-s');
    const u8 = new Uint8Array(m.buffer);
    expect(u8.length).toBe(3 * pageSize);
    expect(u8.every((b) => b === 0)).toBe(true);
    u8[pageSize + 1] = 0xab;
    expect(m.read(pageSize + 1, 1)[0]).toBe(0xab);
    expect(m.buffer).toBe(m.buffer);
    m.unmap();
    expect(m.mapped).toBe(false);
    expect(mappedBytes(m.address, 3 * pageSize)).toBe(0);
  });

  it('keeps the asked-for length and maps whole pages', () => {
    const m = mapAnonymous(1000);
    expect(m.length).toBe(1000);
    expect(m.buffer.byteLength).toBe(1000);
    expect(mappedBytes(m.address, pageSize)).toBe(pageSize);
    m.unmap();
  });

  it('honours shared: false (MAP_PRIVATE), populate and prot', () => {
    const p = mapAnonymous(pageSize, { shared: false, populate: true });
    expect(mapsOverlapping(p.address, pageSize)[0].perms).toBe('rw-p');
    expect(p.residency()[0]).toBe(1);
    p.unmap();
    const r = mapAnonymous(pageSize, { prot: PROT_READ });
    expect(mapsOverlapping(r.address, pageSize)[0].perms).toBe('r--s');
    expect(r.read(0, 4)).toEqual(Buffer.alloc(4));
    r.unmap();
  });

  it('reports MAP_HUGETLB without reserved huge pages as a coded system error, or maps them', () => {
    let m: Mapping | undefined;
    try {
      m = mapAnonymous(1, { hugePages: true });
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOMEM');
      expect((err as NodeJS.ErrnoException).syscall).toBe('mmap');
      return;
    }
    expect(m.granule).toBeGreaterThan(pageSize);
    m.unmap();
  });

  it('windows a mapping larger than one ArrayBuffer can be with view()', () => {
    const size = 5 * 2 ** 30; // reserved, never touched: only the pages written below become memory
    const m = mapAnonymous(size);
    try {
      let whole: ArrayBuffer | undefined;
      try {
        whole = m.buffer;
      } catch (err) {
        expect((err as { code?: string }).code).toBe('ERR_DEVMAP_VIEW_TOO_LARGE'); // Node 20: 4 GiB at most
      }
      if (whole) expect(whole.byteLength).toBe(size);
      const far = new Uint8Array(m.view(size - 2 * pageSize, pageSize));
      far[5] = 42;
      expect(m.read(size - 2 * pageSize + 5, 1)[0]).toBe(42);
    } finally {
      m.unmap();
    }
  });

  it('accepts transparent huge pages advice', () => {
    const m = mapAnonymous(4 * 1024 * 1024, { hugePages: 'transparent' });
    new Uint8Array(m.buffer).fill(1);
    m.unmap();
  });
});

describe('views and partial unmap', () => {
  it('unmaps the head, returning the tail as a new Mapping', () => {
    const m = mapAnonymous(4 * pageSize);
    const whole = new Uint8Array(m.buffer);
    whole[3 * pageSize] = 3;
    const pieces = m.unmap(0, pageSize);
    expect(m.mapped).toBe(false);
    // unmap() does not detach (a Node API may hold the view): the head reads trash, the view says it is stale.
    expect(whole.length).toBe(4 * pageSize);
    expect(Mapping.of(whole)).toBe(m);
    whole[0] = 7;
    expect(whole[0]).toBe(7); // private trash memory, never the object
    expect(pieces.length).toBe(1);
    const [tail] = pieces;
    expect(tail.address).toBe(m.address + BigInt(pageSize));
    expect(tail.length).toBe(3 * pageSize);
    expect(new Uint8Array(tail.buffer)[2 * pageSize]).toBe(3);
    expect(mappedBytes(m.address, pageSize)).toBe(0);
    expect(mappedBytes(tail.address, tail.length)).toBe(tail.length);
    tail.unmap();
  });

  it('unmaps the tail and rounds the length up to whole pages', () => {
    const m = mapAnonymous(4 * pageSize);
    const pieces = m.unmap(2 * pageSize, 1);
    expect(pieces.length).toBe(2);
    expect(pieces[0].length).toBe(2 * pageSize);
    expect(pieces[1].address).toBe(m.address + BigInt(3 * pageSize));
    expect(mappedBytes(m.address + BigInt(2 * pageSize), pageSize)).toBe(0);
    pieces.forEach((p) => p.unmap());
  });

  it('punches a hole in the middle: two pieces, views inside them survive, views across the hole go stale', () => {
    const m = mapAnonymous(5 * pageSize);
    const head = new Uint8Array(m.view(0, pageSize));
    const across = new Uint8Array(m.view(pageSize, 2 * pageSize));
    const tailView = new Uint8Array(m.view(4 * pageSize, 100));
    head[0] = 1;
    tailView[99] = 9;
    across[pageSize] = 4; // in the page the hole takes
    const [a, b] = m.unmap(2 * pageSize, pageSize);
    expect(across.length).toBe(2 * pageSize);
    expect(Mapping.of(across)?.mapped).toBe(false);
    expect(across[pageSize]).toBe(0); // trash pages read zeros
    expect(Mapping.of(head)).toBe(a);
    expect(Mapping.of(tailView)).toBe(b);
    expect(head.length).toBe(pageSize);
    expect(tailView.length).toBe(100);
    expect(head[0]).toBe(1);
    expect(tailView[99]).toBe(9);
    // The hole is really gone, and the kernel shows two separate regions.
    expect(mappedBytes(m.address + BigInt(2 * pageSize), pageSize)).toBe(0);
    expect(a.length).toBe(2 * pageSize);
    expect(b.address).toBe(m.address + BigInt(3 * pageSize));
    expect(b.length).toBe(2 * pageSize);
    // A surviving view now belongs to its piece: unmapping that piece leaves it on trash pages.
    b.unmap();
    expect(Mapping.of(tailView)?.mapped).toBe(false);
    expect(tailView[99]).toBe(0);
    expect(Mapping.of(head)?.mapped).toBe(true);
    a.unmap();
    expect(Mapping.of(head)?.mapped).toBe(false);
    expect(head[0]).toBe(0);
  });

  it('treats unmap of every page as a whole unmap', () => {
    const m = mapAnonymous(2 * pageSize + 5);
    expect(m.unmap(0, 2 * pageSize + 5)).toEqual([]);
    expect(mappedBytes(m.address, 3 * pageSize)).toBe(0);
  });

  it('keeps a tail piece of a non-page-multiple mapping at its true length', () => {
    const m = mapAnonymous(3 * pageSize + 10);
    const [head, tail] = m.unmap(pageSize, pageSize);
    expect(head.length).toBe(pageSize);
    expect(tail.length).toBe(pageSize + 10);
    expect(tail.buffer.byteLength).toBe(pageSize + 10);
    head.unmap();
    tail.unmap();
  });

  it('refuses bad ranges with RangeError and leaves the mapping intact', () => {
    const m = mapAnonymous(2 * pageSize);
    expect(() => m.unmap(1, 10)).toThrow(RangeError);
    expect(() => m.unmap(0, 2 * pageSize + 1)).toThrow(RangeError);
    expect(() => m.unmap(2 * pageSize, 1)).toThrow(RangeError);
    expect(() => m.unmap(0, 0)).toThrow(RangeError);
    expect(() => m.unmap(-4096, 1)).toThrow(RangeError);
    expect(() => m.unmap('0' as never, 1)).toThrow(TypeError);
    expect(() => m.view(0, 2 * pageSize + 1)).toThrow(RangeError);
    expect(m.mapped).toBe(true);
    expect(mappedBytes(m.address, 2 * pageSize)).toBe(2 * pageSize);
    m.unmap();
  });

  it('makes every method of an unmapped Mapping throw ERR_DEVMAP_UNMAPPED', () => {
    const m = mapAnonymous(pageSize);
    m.unmap();
    for (const call of [
      () => m.buffer, () => m.view(), () => m.unmap(), () => m.protect(PROT_READ), () => m.sync(),
      () => m.advise(MADV_SEQUENTIAL), () => m.lock(), () => m.unlock(), () => m.residency(), () => m.read(),
    ]) {
      expect(call).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_UNMAPPED' }));
    }
    // Disposal of an unmapped mapping is a no-op.
    m[Symbol.dispose]();
  });

  it('unmaps at the end of a using-style scope', () => {
    const m = mapAnonymous(pageSize);
    m[Symbol.dispose]();
    expect(m.mapped).toBe(false);
  });
});

describe('protect, advise, sync, lock, residency', () => {
  it('refuses new views of pages protected below read+write, but read() works; the kernel gets it once the old views are gone', async () => {
    const m = mapAnonymous(3 * pageSize);
    let u8: Uint8Array | undefined = new Uint8Array(m.buffer);
    u8[pageSize] = 5;
    const first = new Uint8Array(m.view(0, pageSize));
    m.protect(PROT_READ, pageSize, pageSize);
    // Devmap's record has it at once…
    expect(m.protection(pageSize)).toBe(PROT_READ);
    expect(m.protection(0)).toBe(PROT_READ | PROT_WRITE);
    expect(() => m.buffer).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
    expect(() => m.view(pageSize, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
    expect(m.read(pageSize, 1)[0]).toBe(5);
    expect(new Uint8Array(m.view(2 * pageSize)).length).toBe(pageSize);
    // …the view made before keeps its access (a Node API may be working on it), so the kernel waits for it.
    expect(u8.length).toBe(3 * pageSize);
    u8[pageSize] = 6;
    expect(m.protectionPending).toBe(true);
    expect(mapsOverlapping(m.address + BigInt(pageSize), 1)[0].perms).toBe('rw-s');
    u8 = undefined;
    for (let i = 0; i < 100 && m.protectionPending; i++) {
      globalThis.gc?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(m.protectionPending).toBe(false);
    expect(mapsOverlapping(m.address + BigInt(pageSize), 1)[0].perms).toBe('r--s');
    expect(first.length).toBe(pageSize); // a view of other pages is not in the way
    expect(m.read(pageSize, 1)[0]).toBe(6);
    // With no view over the pages, a lower protection reaches the kernel at once.
    m.protect(PROT_NONE, pageSize, pageSize);
    expect(m.protectionPending).toBe(false);
    expect(mapsOverlapping(m.address + BigInt(pageSize), 1)[0].perms).toBe('---s');
    expect(() => m.read(pageSize, 1)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
    m.protect(PROT_READ | PROT_WRITE);
    expect(new Uint8Array(m.buffer)[pageSize]).toBe(6);
    m.unmap();
  });

  it('a lower protection still waiting is carried by the pieces of a partial unmap, and dropped by unmap', async () => {
    const m = mapAnonymous(4 * pageSize);
    let v: Uint8Array | undefined = new Uint8Array(m.view(2 * pageSize, pageSize));
    m.protect(PROT_NONE, 2 * pageSize, 2 * pageSize);
    expect(m.protectionPending).toBe(true);
    const [head, tail] = m.unmap(pageSize, pageSize);
    expect(m.protectionPending).toBe(false);
    expect(head.protectionPending).toBe(false);
    expect(tail.protectionPending).toBe(true);
    expect(tail.protection(0)).toBe(PROT_NONE);
    v[0] = 1; // still the pages' own access: no fault
    v = undefined;
    for (let i = 0; i < 100 && tail.protectionPending; i++) {
      globalThis.gc?.();
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(tail.protectionPending).toBe(false);
    expect(mapsOverlapping(tail.address, 1)[0].perms).toBe('---s');
    head.unmap();
    tail.unmap();
  });

  it('keeps protection runs across a partial unmap', () => {
    const m = mapAnonymous(4 * pageSize);
    m.protect(PROT_READ, 3 * pageSize, pageSize);
    const [head, tail] = m.unmap(pageSize, pageSize);
    expect(head.protection(0)).toBe(PROT_READ | PROT_WRITE);
    expect(tail.protection(0)).toBe(PROT_READ | PROT_WRITE);
    expect(tail.protection(pageSize)).toBe(PROT_READ);
    expect(() => tail.buffer).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
    head.unmap();
    tail.unmap();
  });

  it('advise(MADV_DONTNEED) really drops private pages; poisoning advice is refused', () => {
    const m = mapAnonymous(pageSize, { shared: false });
    const u8 = new Uint8Array(m.buffer);
    u8[0] = 7;
    m.advise(MADV_DONTNEED);
    expect(u8[0]).toBe(0);
    expect(() => m.advise(100 /* MADV_HWPOISON */)).toThrow(RangeError);
    expect(() => m.advise(101 /* MADV_SOFT_OFFLINE */)).toThrow(RangeError);
    m.unmap();
  });

  it('residency() follows first touch, lock() and unlock() work', () => {
    const m = mapAnonymous(4 * pageSize);
    expect(Array.from(m.residency())).toEqual([0, 0, 0, 0]);
    new Uint8Array(m.buffer)[2 * pageSize] = 1;
    expect(Array.from(m.residency())).toEqual([0, 0, 1, 0]);
    m.lock(0, pageSize);
    // AddressSanitizer replaces mlock with a no-op (npm run test:asan preloads it); elsewhere the page is faulted in.
    if (!process.env.LD_PRELOAD?.includes('libasan')) expect(m.residency()[0]).toBe(1);
    m.unlock(0, pageSize);
    m.sync({ async: true });
    m.sync({ offset: pageSize, length: pageSize, invalidate: true });
    expect(() => m.sync({ offest: 0 } as never)).toThrow(/did you mean "offset"/);
    m.unmap();
  });
});

describe('finalization', () => {
  it('unmaps a Mapping that is dropped, but not while a view is reachable', async () => {
    const gc = globalThis.gc!;
    let view: Uint8Array | undefined;
    let address = 0n;
    (() => {
      const m = mapAnonymous(2 * pageSize);
      address = m.address;
      view = new Uint8Array(m.view(pageSize, 16));
      view[0] = 42;
    })();
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(mappedBytes(address, 2 * pageSize)).toBe(2 * pageSize);
    expect(view![0]).toBe(42);
    view = undefined;
    for (let i = 0; i < 10 && mappedBytes(address, 2 * pageSize) > 0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(mappedBytes(address, 2 * pageSize)).toBe(0);
  });
});
