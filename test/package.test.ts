/*
 * The package as users get it: `npm pack`, then `npm install <tarball>` into a fresh project — once with no
 * compiler at all (the linux-x64 prebuild must load), once forcing a build from source with node-gyp.
 * Both projects then map memory from CommonJS and from an ES module.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'devmap-test-pack-'));
let tarball = '';

const npm = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });

const USE = `
  const m = devmap.mapAnonymous(devmap.pageSize);
  new Uint32Array(m.buffer)[0] = 0xdeadbeef;
  const ok = m.read(0, 4).readUInt32LE(0) === 0xdeadbeef;
  m.unmap();
  const shm = devmap.SharedMemory.memfd('pack', devmap.pageSize);
  shm.close();
  process.stdout.write(String(ok && !m.mapped));
`;

function project(name: string): string {
  const dir = join(work, name);
  execFileSync('mkdir', ['-p', dir]);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `try-${name}`, version: '1.0.0', private: true }));
  writeFileSync(join(dir, 'use.cjs'), `const devmap = require('devmap');${USE}`);
  writeFileSync(join(dir, 'use.mjs'), `import * as devmap from 'devmap';${USE}`);
  return dir;
}

beforeAll(() => {
  const out = npm(['pack', '--json', '--pack-destination', work], root);
  tarball = join(work, JSON.parse(out.slice(out.indexOf('[')))[0].filename);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the published package', () => {
  it('ships the prebuild, built from the current native sources', () => {
    const recorded = readFileSync(join(root, 'prebuilds', 'linux-x64', 'SOURCES'), 'utf8').trim();
    const current = execFileSync(process.execPath, [join(root, 'scripts', 'source-hash.cjs')], { encoding: 'utf8' }).trim();
    expect(recorded, 'prebuilds/linux-x64 is stale: run `npm run prebuild`').toBe(current);
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' });
    expect(listing).toContain('package/prebuilds/linux-x64/devmap.node');
    expect(listing).toContain('package/dist/index.mjs');
    expect(listing).toContain('package/dist/index.d.ts');
  });

  it('installs and works with no compiler available, from the prebuild', () => {
    const dir = project('prebuilt');
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], dir, { CXX: 'false', CC: 'false', MAKE: 'false' });
    expect(existsSync(join(dir, 'node_modules', 'devmap', 'build'))).toBe(false);
    expect(execFileSync(process.execPath, ['use.cjs'], { cwd: dir, encoding: 'utf8' })).toBe('true');
    expect(execFileSync(process.execPath, ['use.mjs'], { cwd: dir, encoding: 'utf8' })).toBe('true');
  }, 120_000);

  it('builds from source with node-gyp when asked, with no network beyond the registry', () => {
    const dir = project('from-source');
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--build-from-source', tarball], dir);
    expect(existsSync(join(dir, 'node_modules', 'devmap', 'build', 'Release', 'devmap.node'))).toBe(true);
    expect(execFileSync(process.execPath, ['use.cjs'], { cwd: dir, encoding: 'utf8' })).toBe('true');
  }, 180_000);
});
