import { existsSync, mkdtempSync, openSync, closeSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { PROT_READ, SharedMemory, mapFile, pageSize } from '../../lib';
import { fixture, runNode } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

const dir = mkdtempSync(join(tmpdir(), 'devmap-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('SharedMemory.create / open', () => {
  it('creates /dev/shm/<name> exclusively, 0600, sized and reserved', () => {
    const name = uniqueName();
    const shm = SharedMemory.create(name, 3 * pageSize);
    try {
      const st = statSync(`/dev/shm/${name}`);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.size).toBe(3 * pageSize);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(3 * pageSize); // fallocate reserved the memory
      expect(shm.name).toBe(name);
      expect(shm.size).toBe(3 * pageSize);
      expect(() => SharedMemory.create(name, pageSize)).toThrow(expect.objectContaining({ code: 'EEXIST', syscall: 'shm_open', path: name }));
    } finally {
      shm.unlink();
      shm.close();
    }
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it('applies a wider mode exactly, whatever the umask', () => {
    const name = uniqueName();
    const old = process.umask(0o077);
    try {
      const shm = SharedMemory.create(name, 1, { mode: 0o640 });
      expect(statSync(`/dev/shm/${name}`).mode & 0o777).toBe(0o640);
      shm.unlink();
      shm.close();
    } finally {
      process.umask(old);
    }
  });

  it('reports a full /dev/shm as ENOSPC at create and leaves nothing behind', () => {
    const name = uniqueName();
    expect(() => SharedMemory.create(name, 2 ** 50)).toThrow(expect.objectContaining({ code: 'ENOSPC', syscall: 'fallocate' }));
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it('opens by name, read-write and read-only; read-only maps copy-on-write or read()', () => {
    const name = uniqueName();
    const shm = SharedMemory.create(name, pageSize);
    const m = shm.map();
    new Uint8Array(m.buffer)[0] = 17;
    const ro = SharedMemory.open(name, { readOnly: true });
    expect(ro.readOnly).toBe(true);
    expect(ro.size).toBe(pageSize);
    const honest = ro.map();
    expect(honest.protection()).toBe(PROT_READ);
    expect(honest.read(0, 1)[0]).toBe(17);
    expect(() => honest.buffer).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_PROTECTION' }));
    expect(() => ro.map({ prot: 3 })).toThrow(expect.objectContaining({ code: 'EACCES' }));
    const cow = ro.map({ shared: false });
    const cowView = new Uint8Array(cow.buffer);
    expect(cowView[0]).toBe(17);
    cowView[0] = 99; // stays in this process
    expect(new Uint8Array(m.buffer)[0]).toBe(17);
    expect(() => ro.resize(2 * pageSize)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_READ_ONLY' }));
    for (const x of [m, honest, cow]) x.unmap();
    ro.close();
    shm.unlink();
    shm.close();
  });

  it('maps at an offset, grows with resize, and refuses ranges past the end', () => {
    const name = uniqueName();
    using shm = SharedMemory.create(name, 2 * pageSize);
    try {
      expect(() => shm.map({ offset: 2 * pageSize })).toThrow(RangeError);
      expect(() => shm.map({ offset: 1 })).toThrow(RangeError);
      expect(() => shm.map({ length: 2 * pageSize + 1 })).toThrow(RangeError);
      shm.resize(4 * pageSize);
      expect(shm.size).toBe(4 * pageSize);
      const m = shm.map({ offset: 3 * pageSize });
      expect(m.length).toBe(pageSize);
      new Uint8Array(m.buffer)[0] = 4;
      const all = shm.map();
      expect(new Uint8Array(all.buffer)[3 * pageSize]).toBe(4);
      m.unmap();
      all.unmap();
    } finally {
      shm.unlink();
    }
  });

  it('validates names: no slashes, no traversal, no control characters, length limits', () => {
    for (const bad of ['', 'a/b', '/x', '..', '.', 'x\u0000y', 'tab\tname', 'x'.repeat(256)]) {
      expect(() => SharedMemory.create(bad, 1), JSON.stringify(bad)).toThrow(RangeError);
      expect(() => SharedMemory.open(bad), JSON.stringify(bad)).toThrow(RangeError);
    }
    expect(() => SharedMemory.create(42 as never, 1)).toThrow(TypeError);
    expect(() => SharedMemory.open(uniqueName())).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('makes every method of a closed SharedMemory throw ERR_DEVMAP_CLOSED; close is idempotent', () => {
    const shm = SharedMemory.memfd('closed', pageSize);
    shm.close();
    shm.close();
    expect(shm.closed).toBe(true);
    for (const call of [() => shm.fd, () => shm.map(), () => shm.resize(2), () => shm.seals]) {
      expect(call).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_CLOSED' }));
    }
    expect(() => shm.unlink()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NOT_NAMED' }));
  });
});

describe('SharedMemory.memfd', () => {
  it('is sealed against shrinking by default, so no peer can truncate it under a mapping', () => {
    const shm = SharedMemory.memfd('sealed', 2 * pageSize);
    expect(shm.seals).toEqual(['shrink']);
    expect(() => ftruncateSync(shm.fd, pageSize)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    shm.resize(3 * pageSize); // growing is still allowed
    expect(() => shm.resize(pageSize)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    const m = shm.map();
    expect(m.length).toBe(3 * pageSize);
    m.unmap();
    shm.close();
  });

  it('takes explicit seals, or none', () => {
    const a = SharedMemory.memfd('a', pageSize, { seal: ['shrink', 'grow', 'seal'] });
    expect(a.seals.sort()).toEqual(['grow', 'seal', 'shrink']);
    const b = SharedMemory.memfd('b', pageSize, { seal: false });
    expect(b.seals).toEqual([]);
    expect(() => SharedMemory.memfd('c', pageSize, { seal: ['shrunk' as never] })).toThrow(RangeError);
    a.close();
    b.close();
  });
});

describe('mapFile', () => {
  it('creates a file exclusively at 0600, maps it, and msync writes it back', () => {
    const path = join(dir, 'created');
    const m = mapFile(path, { create: true, size: 2 * pageSize });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    new Uint8Array(m.buffer).set([1, 2, 3], pageSize);
    m.sync();
    expect([...readFileSync(path).subarray(pageSize, pageSize + 3)]).toEqual([1, 2, 3]);
    m.unmap();
    expect(() => mapFile(path, { create: true, size: pageSize })).toThrow(expect.objectContaining({ code: 'EEXIST', path }));
    // exclusive: false reuses it (and keeps it when mapping fails: this call did not create it)
    const again = mapFile(path, { create: true, exclusive: false, size: 2 * pageSize });
    expect(again.read(pageSize, 3)).toEqual(Buffer.from([1, 2, 3]));
    again.unmap();
    expect(() => mapFile(path, { create: true, exclusive: false, size: pageSize, offset: 2 * pageSize })).toThrow(RangeError);
    expect(existsSync(path)).toBe(true);
  });

  it('maps an existing file by path and by descriptor, at offsets beyond 4 GiB', () => {
    const path = join(dir, 'big');
    const fd = openSync(path, 'w+', 0o600);
    const fiveGiB = 5 * 2 ** 30;
    ftruncateSync(fd, fiveGiB + pageSize); // sparse: no disk is used
    const m = mapFile(fd, { offset: fiveGiB });
    expect(m.length).toBe(pageSize);
    new Uint8Array(m.buffer)[0] = 0x5a;
    m.unmap();
    const again = mapFile(path, { offset: fiveGiB, length: 1, prot: PROT_READ });
    expect(again.read(0, 1)[0]).toBe(0x5a);
    again.unmap();
    closeSync(fd);
    rmSync(path);
  });

  it('refuses a range past the end of the file, empty files, and unknown options', () => {
    const path = join(dir, 'small');
    writeFileSync(path, Buffer.alloc(100));
    expect(() => mapFile(path, { length: pageSize + 1 })).toThrow(RangeError);
    expect(() => mapFile(path, { offset: pageSize })).toThrow(RangeError);
    expect(() => mapFile(path, { lenght: 1 } as never)).toThrow(/did you mean "length"/);
    writeFileSync(join(dir, 'empty'), '');
    expect(() => mapFile(join(dir, 'empty'))).toThrow(RangeError);
    expect(() => mapFile(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'open' }));
    expect(() => mapFile(join(dir, 'x'), { create: true })).toThrow(TypeError);
  });
});

describe('sharing between processes', () => {
  it('by shm name: a child sees the parent bytes and the parent sees the child bytes', async () => {
    const name = uniqueName();
    using shm = SharedMemory.create(name, pageSize);
    const m = shm.map();
    const words = new Uint32Array(m.buffer);
    words[0] = 1234;
    const r = await runNode('share-child.cjs', ['shm', name]);
    shm.unlink();
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1234');
    expect(words[1]).toBe(1235);
    m.unmap();
  });

  it('by file path', async () => {
    const path = join(dir, 'shared-file');
    const m = mapFile(path, { create: true, size: pageSize });
    new Uint32Array(m.buffer)[0] = 77;
    const r = await runNode('share-child.cjs', ['file', path]);
    expect(r.stdout).toBe('77');
    expect(new Uint32Array(m.buffer)[1]).toBe(78);
    m.unmap();
  });

  it("by passing a memfd's descriptor through spawn's stdio", async () => {
    using shm = SharedMemory.memfd('to-child', pageSize);
    const m = shm.map();
    new Uint32Array(m.buffer)[0] = 99;
    const r = await runNode('share-child.cjs', ['fd', '3'], { stdio: ['ignore', 'pipe', 'pipe', shm.fd] });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('99');
    expect(new Uint32Array(m.buffer)[1]).toBe(100);
    m.unmap();
  });

  it('with several children at once, each writing its own stripe', async () => {
    const name = uniqueName();
    using shm = SharedMemory.create(name, pageSize);
    const m = shm.map();
    const words = new Uint32Array(m.buffer);
    words[0] = 5;
    const results = await Promise.all([0, 1, 2, 3].map(() => runNode('share-child.cjs', ['shm', name])));
    shm.unlink();
    expect(results.map((r) => r.stdout)).toEqual(['5', '5', '5', '5']);
    expect(words[1]).toBe(6);
    m.unmap();
  });

  it('with worker threads', async () => {
    const name = uniqueName();
    using shm = SharedMemory.create(name, pageSize);
    const m = shm.map();
    await Promise.all(
      [1, 2, 3].map(
        (id) =>
          new Promise((resolve, reject) => {
            const w = new Worker(fixture('worker-map.cjs'), { workerData: { name, id } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    shm.unlink();
    expect([...new Uint32Array(m.buffer).subarray(0, 4)]).toEqual([0, 10, 20, 30]);
    m.unmap();
  });

  it('a child that touches views after unmap exits normally, with no signal', async () => {
    const r = await runNode('after-unmap.cjs');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    // Views stay attached over trash pages (unmap no longer detaches: a Node API may hold them): the surviving
    // pieces read their ones, the hole zeros; once the pieces go too, nothing but the private writes remains.
    expect(JSON.parse(r.stdout)).toEqual({ sum: 2 * pageSize, whole: 4 * pageSize, part: pageSize / 8, hole: [0, true], after: 0 });
  });

  it('a memfd descriptor inherited by a shell child is the same memory', async () => {
    using shm = SharedMemory.memfd('shell', pageSize);
    const m = shm.map();
    const r = await new Promise<number | null>((resolve) => {
      const c = spawn('sh', ['-c', 'printf hello >&3'], { stdio: ['ignore', 'ignore', 'ignore', shm.fd] });
      c.on('close', resolve);
    });
    expect(r).toBe(0);
    expect(Buffer.from(m.buffer, 0, 5).toString()).toBe('hello');
    m.unmap();
  });
});

describe('SharedMemory lifetime', () => {
  it('a SharedMemory dropped without close() closes its descriptor when collected, with a warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(w.code ?? '');
    process.on('warning', onWarning);
    const before = readdirSync('/proc/self/fd').length;
    (() => {
      SharedMemory.memfd('dropped', pageSize);
    })();
    expect(readdirSync('/proc/self/fd').length).toBe(before + 1);
    for (let i = 0; i < 20 && readdirSync('/proc/self/fd').length > before; i++) {
      globalThis.gc!();
      await new Promise((r) => setTimeout(r, 10));
    }
    process.off('warning', onWarning);
    expect(readdirSync('/proc/self/fd').length).toBe(before);
    expect(warnings).toContain('DEVMAP_SHM_GC');
  });
});
