// Issue 12/14 edges of the memory layer: exact modes under any umask, names without control or format
// characters, mapFile that never truncates or re-modes an existing file, open-or-create, fromFd's checks,
// inspect, and validated protection() offsets.
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { SharedMemory, mapAnonymous, mapFile, pageSize } from '../../lib';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();
const dir = mkdtempSync(join(tmpdir(), 'devmap-test-hard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hardening', () => {
  it('creates 0600 exactly even under umask 0o277, and the creator can reopen it', () => {
    const old = process.umask(0o277);
    const name = uniqueName();
    try {
      const shm = SharedMemory.create(name, pageSize);
      expect(statSync(`/dev/shm/${name}`).mode & 0o777).toBe(0o600);
      SharedMemory.open(name).close();
      shm.close();
      const m = mapFile(join(dir, 'umask'), { create: true, size: pageSize });
      expect(statSync(join(dir, 'umask')).mode & 0o777).toBe(0o600);
      m.unmap();
    } finally {
      process.umask(old);
      SharedMemory.unlink(name);
    }
  });

  it('refuses names with controls, format characters and separators (Cc, Cf, Zl, Zp)', () => {
    for (const bad of ['a\u0085b', 'a\u202eb', 'a\u200bb', 'a\u2028b', 'a\u2029b', 'a\u00adb', 'a\ud800b']) {
      expect(() => SharedMemory.create(bad, pageSize)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => SharedMemory.memfd(bad, pageSize)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    }
  });

  it('mapFile never truncates or re-modes an existing file unless told to', () => {
    const path = join(dir, 'eight');
    writeFileSync(path, Buffer.alloc(8192, 1), { mode: 0o640 });
    const m = mapFile(path, { size: 1024 });
    expect(statSync(path).size).toBe(8192);
    expect(m.length).toBe(8192);
    const again = mapFile(path, { create: true, exclusive: false, mode: 0o666, size: 1024 });
    expect(statSync(path).size).toBe(8192);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    again.unmap();
    // truncate: true cuts it, taking the pages past the end from m first (no SIGBUS)
    mapFile(path, { size: pageSize, truncate: true, length: pageSize }).unmap();
    expect(statSync(path).size).toBe(pageSize);
    expect(m.truncated).toBe(pageSize < 8192);
    m.unmap();
  });

  it('open-or-create is race-free and tells exactly one caller it created the segment; a size mismatch is coded', () => {
    const name = uniqueName();
    const a = SharedMemory.create(name, pageSize, { exclusive: false });
    const b = SharedMemory.openOrCreate(name, pageSize);
    try {
      expect([a.created, b.created]).toEqual([true, false]);
      expect(statSync(`/dev/shm/${name}`).mode & 0o777).toBe(0o600);
      expect(() => SharedMemory.create(name, 2 * pageSize, { exclusive: false })).toThrow(
        expect.objectContaining({ code: 'ERR_DEVMAP_SIZE_MISMATCH' }),
      );
      expect(inspect(a)).toContain(`name: ${JSON.stringify(name)}`);
      expect(inspect(a)).toMatch(/size: \d+, fd: \d+/);
    } finally {
      a.close();
      b.close();
      SharedMemory.unlink(name);
    }
  });

  it('map() and size follow the object as it is now', () => {
    const a = SharedMemory.memfd('grow', pageSize, { seal: false });
    const b = SharedMemory.fromFd(a.fd);
    a.resize(3 * pageSize);
    expect(b.size).toBe(3 * pageSize);
    const m = b.map();
    expect(m.length).toBe(3 * pageSize);
    m.unmap();
    expect(b.name).toBe('grow');
    expect(inspect(a)).toContain("seals: []");
    a.close();
    b.close();
  });

  it('fromFd refuses a pipe and a character device', () => {
    const child = spawn('sleep', ['5'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const pipeFd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
    const dev = openSync('/dev/null', 'r');
    try {
      expect(() => SharedMemory.fromFd(pipeFd)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NOT_MEMORY' }));
      expect(() => SharedMemory.fromFd(dev)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_NOT_MEMORY' }));
    } finally {
      closeSync(dev);
      child.kill();
    }
  });

  it('protection() validates its offset', () => {
    const m = mapAnonymous(pageSize);
    expect(() => m.protection(-1)).toThrow(RangeError);
    expect(() => m.protection('1' as never)).toThrow(TypeError);
    m.unmap();
  });
});
