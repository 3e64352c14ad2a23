/*
 * The package as users get it. `npm pack`, then `npm install <tarball>` into a fresh project — once with no
 * compiler at all (the linux-x64 prebuild must load), once with install scripts denied (the same: the
 * prebuild is found at run time), once forcing a build from source with node-gyp. The projects then use
 * devmap as a user does: require() from CommonJS, import from an ES module, and `tsc --strict` over a
 * TypeScript file against the shipped declarations. Then the two ways to install a checkout: from a git URL
 * and from a directory, each from a copy of this tree with nothing built and nothing installed.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trackLeaks } from './helpers/leaks';

trackLeaks();

const root = join(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'devmap-test-pack-'));
let tarball = '';
let listing: string[] = [];

const npm = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
const install = (spec: string, dir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', ...extra, spec], dir, env);
const node = (file: string, cwd: string) => execFileSync(process.execPath, [file], { cwd, encoding: 'utf8' });

const USE = `
  const m = devmap.mapAnonymous(devmap.pageSize);
  new Uint32Array(m.buffer)[0] = 0xdeadbeef;
  const ok = m.read(0, 4).readUInt32LE(0) === 0xdeadbeef;
  m.unmap();
  const shm = devmap.SharedMemory.memfd('pack', devmap.pageSize);
  shm.close();
  process.stdout.write(String(ok && !m.mapped));
`;

/** What a TypeScript user writes; `tsc --strict` must accept it, and reject the misuse at the end. */
const TYPED = `
import { Kernel, SharedMemory, mapAnonymous, pageSize, rmallocmap, rmalloc, type Mapping } from 'devmap';

const m: Mapping = mapAnonymous(pageSize, { populate: true });
const words: Uint32Array = new Uint32Array(m.buffer);
words[0] = 1;
const pieces: Mapping[] = m.unmap();
const address: bigint = m.address;
const mp = rmallocmap(4);
const index: number = rmalloc(mp, 1);
const kernel = new Kernel({ arenaSize: 1 << 20 });
void kernel.shutdown();
{
  using shm = SharedMemory.memfd('typed', pageSize);
  const size: number = shm.size;
}
// @ts-expect-error: a mapping's length is a number, not a string
const wrong: string = m.length;
export { pieces, address, index, words, wrong };
`;

function project(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `try-${name}`, version: '1.0.0', private: true }));
  writeFileSync(join(dir, 'use.cjs'), `const devmap = require('devmap');${USE}`);
  writeFileSync(join(dir, 'use.mjs'), `import * as devmap from 'devmap';${USE}`);
  return dir;
}

/** Runs `tsc --strict` (this checkout's compiler) over a user's file in `dir`, as CommonJS and as ESM. */
function typecheck(dir: string): string {
  writeFileSync(join(dir, 'typed.cts'), TYPED);
  writeFileSync(join(dir, 'typed.mts'), TYPED);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022',
        lib: ['es2022', 'esnext.disposable'], types: ['node'], typeRoots: [join(root, 'node_modules', '@types')],
      },
      files: ['typed.cts', 'typed.mts'],
    }),
  );
  return execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir, encoding: 'utf8' });
}

/** A copy of this checkout as a user's clone has it: the tracked (and new) files, nothing built or installed. */
function cleanCopy(name: string): string {
  const dir = join(work, name);
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const f of files) if (existsSync(join(root, f))) cpSync(join(root, f), join(dir, f), { recursive: true });
  return dir;
}

beforeAll(() => {
  // --ignore-scripts: `npm test` has just compiled dist/, and `prepare` would compile it again (the compile
  // empties dist/ first) under the feet of the test files running beside this one. The git-URL install
  // below runs `prepare` in a copy of its own.
  const out = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], root);
  tarball = join(work, JSON.parse(out.slice(out.indexOf('[')))[0].filename);
  listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the published package', () => {
  it('ships the prebuild, built from the current native sources', () => {
    const recorded = readFileSync(join(root, 'prebuilds', 'linux-x64', 'SOURCES'), 'utf8').trim();
    const current = execFileSync(process.execPath, [join(root, 'scripts', 'source-hash.cjs')], { encoding: 'utf8' }).trim();
    expect(recorded, 'prebuilds/linux-x64 is stale: run `npm run prebuild`').toBe(current);
    expect(listing).toEqual(expect.arrayContaining(['prebuilds/linux-x64/devmap.node', 'dist/index.mjs', 'dist/index.d.ts']));
  });

  it('declares only what users may call: no @internal member survives in the shipped .d.ts (stripInternal)', () => {
    const declarations = listing.filter((f) => f.startsWith('dist/') && f.endsWith('.d.ts'));
    expect(declarations.length).toBeGreaterThan(10);
    expect(declarations.filter((f) => readFileSync(join(root, f), 'utf8').includes('@internal'))).toEqual([]);
  });

  it('is complete: LICENSE (the license package.json names), and every document README, the docs and --help point to', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.license).toBe('MIT');
    expect(listing).toContain('LICENSE');
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/);
    // No public home yet: no repository/homepage/bugs field may point at a place the project is not.
    for (const field of ['repository', 'homepage', 'bugs']) expect(pkg[field], field).toBeUndefined();

    const pointed: string[] = [];
    for (const page of listing.filter((f) => f.endsWith('.md'))) {
      const text = readFileSync(join(root, page), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target)) continue; // an absolute URL
        pointed.push(normalize(join(dirname(page), target)));
      }
    }
    const help = execFileSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), '--help'], { encoding: 'utf8' });
    // `npx devmap …` in the checkout runs the bin itself, so it must be executable (tsc writes 0644).
    expect(execFileSync('npx', ['devmap', '--help'], { cwd: root, encoding: 'utf8' })).toBe(help);
    pointed.push(...(help.match(/\bdocs\/[\w-]+\.md\b/g) ?? []));
    expect(pointed.length).toBeGreaterThan(10);
    expect([...new Set(pointed)].filter((p) => !listing.includes(p))).toEqual([]);
  });

  it('installs and works with no compiler available, from the prebuild: require, import, tsc --strict', () => {
    const dir = project('prebuilt');
    install(tarball, dir, [], { CXX: 'false', CC: 'false', MAKE: 'false' });
    expect(existsSync(join(dir, 'node_modules', 'devmap', 'build'))).toBe(false);
    expect(node('use.cjs', dir)).toBe('true');
    expect(node('use.mjs', dir)).toBe('true');
    typecheck(dir);
    // The harness is the one subpath besides the root (docs/guide-performance.md).
    writeFileSync(join(dir, 'harness.mjs'), `import { perOp, runCase } from 'devmap/bench/harness.mjs'; process.stdout.write(typeof perOp + typeof runCase);`);
    expect(node('harness.mjs', dir)).toBe('functionfunction');
    writeFileSync(join(dir, 'private.cjs'), `try { require('devmap/dist/memory/mapping.js'); } catch (e) { process.stdout.write(e.code); }`);
    expect(node('private.cjs', dir)).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
  }, 120_000);

  it('works with its install scripts denied (npm 11 allowScripts): the prebuild loads at run time', () => {
    const dir = project('no-scripts');
    install(tarball, dir, ['--ignore-scripts']);
    expect(node('use.cjs', dir)).toBe('true');
  }, 120_000);

  it('builds from source with node-gyp when asked, with no network beyond the registry', () => {
    const dir = project('from-source');
    install(tarball, dir, ['--build-from-source']);
    expect(existsSync(join(dir, 'node_modules', 'devmap', 'build', 'Release', 'devmap.node'))).toBe(true);
    expect(node('use.cjs', dir)).toBe('true');
  }, 180_000);
});

describe('installing a checkout', () => {
  it('from a git URL: npm clones it, installs its devDependencies, compiles (prepare) and packs it', () => {
    const clone = cleanCopy('git-clone');
    const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: clone, stdio: 'ignore' });
    git('init', '-q');
    git('add', '-A');
    git('commit', '-qm', 'snapshot');
    const dir = project('from-git');
    install(`git+file://${clone}`, dir);
    expect(existsSync(join(dir, 'node_modules', 'devmap', 'dist', 'index.d.ts'))).toBe(true);
    expect(node('use.cjs', dir)).toBe('true');
    expect(node('use.mjs', dir)).toBe('true');
    typecheck(dir);
  }, 240_000);

  it('from a directory: npm links it; prepare installs the checkout\'s own dependencies and compiles it', () => {
    const clone = cleanCopy('dir-clone');
    expect(existsSync(join(clone, 'node_modules'))).toBe(false);
    const dir = project('from-dir');
    install(clone, dir);
    expect(existsSync(join(clone, 'dist', 'index.js'))).toBe(true);
    expect(node('use.cjs', dir)).toBe('true');
    expect(node('use.mjs', dir)).toBe('true');
  }, 240_000);
});
