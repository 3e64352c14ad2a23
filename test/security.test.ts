// The claims of docs/security.md that no other test already makes.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SharedMemory, mapFile, pageSize } from '../lib';
import { trackLeaks, uniqueName } from './helpers/leaks';

trackLeaks();

const dir = mkdtempSync(join(tmpdir(), 'devmap-test-sec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;

/*
 * The checkout may sit under a directory other users cannot enter (a home directory of mode 0700): the probe
 * that runs as another user gets a world-readable copy of what it loads, in its own temporary directory — the
 * built package, node-gyp-build, the addon (prebuild, local build, or the DEVMAP_ADDON the run names) and
 * the fixture at the same relative paths.
 */
function worldReadableFixture(name: string): { file: string; env: NodeJS.ProcessEnv; cleanup(): void } {
  const root = join(__dirname, '..');
  const copy = mkdtempSync(join(tmpdir(), 'devmap-test-sec-pkg-'));
  const take = (rel: string) => existsSync(join(root, rel)) && cpSync(join(root, rel), join(copy, rel), { recursive: true });
  for (const rel of ['package.json', 'dist', 'prebuilds', 'build/Release', 'node_modules/node-gyp-build', `test/fixtures/${name}`]) take(rel);
  const env = { ...process.env };
  if (env.DEVMAP_ADDON) {
    cpSync(env.DEVMAP_ADDON, join(copy, 'addon.node'));
    env.DEVMAP_ADDON = join(copy, 'addon.node');
  }
  const open = (path: string) => {
    chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
    if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) open(join(path, entry));
  };
  open(copy);
  return { file: join(copy, 'test', 'fixtures', name), env, cleanup: () => rmSync(copy, { recursive: true, force: true }) };
}

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
    const openShm = worldReadableFixture('open-shm.cjs');
    const probe = (n: string, readOnly: boolean) =>
      spawnSync(process.execPath, [openShm.file, n, String(readOnly)], { uid: 65534, gid: 65534, env: openShm.env, encoding: 'utf8' }).stdout.trim();
    try {
      expect(probe(name, true)).toBe('EACCES');
      expect(probe(`${name}-open`, false)).toBe('EACCES');
      expect(probe(`${name}-open`, true)).toBe('ok');
    } finally {
      shm.unlink();
      shm.close();
      open.unlink();
      open.close();
      openShm.cleanup();
    }
  });
});
