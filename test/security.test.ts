// The claims of docs/security.md that no other test already makes.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SharedMemory, mapFile, pageSize } from '../lib';
import { fixture } from './helpers/child';
import { trackLeaks, uniqueName } from './helpers/leaks';

trackLeaks();

const dir = mkdtempSync(join(tmpdir(), 'devmap-test-sec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;

describe('security', () => {
  it('mapFile does not follow a symbolic link (O_NOFOLLOW)', () => {
    const target = join(dir, 'target');
    writeFileSync(target, Buffer.alloc(pageSize));
    const link = join(dir, 'link');
    symlinkSync(target, link);
    expect(() => mapFile(link)).toThrow(expect.objectContaining({ code: 'ELOOP', path: link }));
    mapFile(target).unmap();
  });

  it('descriptors are close-on-exec: a spawned child inherits none of them', () => {
    const name = uniqueName('cloexec');
    const shm = SharedMemory.create(name, pageSize);
    const memfd = SharedMemory.memfd('cloexec', pageSize);
    const dup = SharedMemory.fromFd(memfd.fd);
    try {
      const fds = spawnSync('sh', ['-c', 'ls -l /proc/$$/fd'], { encoding: 'utf8' }).stdout;
      expect(fds).not.toMatch(/memfd:|\/dev\/shm\//);
    } finally {
      shm.unlink();
      for (const s of [shm, memfd, dup]) s.close();
    }
  });

  it.runIf(isRoot)('another user cannot open a default (0600) segment, and can open one made 0644 read-only only', (ctx) => {
    // The probe runs this Node as uid 65534; a Node binary that user cannot execute (a private cache) cannot run it.
    const canRun = spawnSync(process.execPath, ['-e', '0'], { uid: 65534, gid: 65534 });
    if (canRun.error || canRun.status !== 0) ctx.skip();
    const name = uniqueName('sec');
    const shm = SharedMemory.create(name, pageSize);
    const open = SharedMemory.create(`${name}-open`, pageSize, { mode: 0o644 });
    chmodSync(dir, 0o755);
    const probe = (n: string, readOnly: boolean) =>
      spawnSync(process.execPath, [fixture('open-shm.cjs'), n, String(readOnly)], { uid: 65534, gid: 65534, encoding: 'utf8' }).stdout.trim();
    try {
      expect(probe(name, true)).toBe('EACCES');
      expect(probe(`${name}-open`, false)).toBe('EACCES');
      expect(probe(`${name}-open`, true)).toBe('ok');
    } finally {
      shm.unlink();
      shm.close();
      open.unlink();
      open.close();
    }
  });
});
