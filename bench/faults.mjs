// Real faults of a client process (SPEC A.9) beside the same work served in C, in one run:
//  - a fault round trip: a client's touch of an unloaded page → the host's event loop → the driver's
//    devmap_access (TypeScript) → devmap_load → UFFDIO_CONTINUE → the client runs on; beside a C thread serving
//    the same minor faults with UFFDIO_CONTINUE (native/bench/baseline_faults.cc). Both are timed by the client
//    around its touch loop.
//  - devmap_unload of one page of a client, acknowledged by its agent; beside a bare MADV_DONTNEED.
//  - a context switch between two real processes: two C processes (bench/ctx-client.c) take turns on one device
//    page; every touch is a fault in the process that does not own the page, whose serving unloads the other
//    (its agent's MADV_DONTNEED, acknowledged) and loads this one. devmap: the programs run under the preload
//    shim, and the host's driver (seed 001's shape: devmap_access → devmap_do_ctxmgt → a contextmgt that
//    devmap_unloads the owner and devmap_loads the faulting handle, no context timeout) serves it in TypeScript.
//    C: the same program, the same turn-taking loop (native/bench/ctx_turns.h) and the same agent thread
//    (native/shim/agent.c), served by a C loop doing dm_agent_call(UNLOAD) + UFFDIO_CONTINUE
//    (native/bench/baseline_faults.cc). Both are timed by the leading process around its loop: ns per switch,
//    one byte of turn passing each way per two switches included in both.
//   npm run compile && node bench/faults.mjs [--quick]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdown, perOp, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const d = require('../dist/index.js');
const c = require('./baselines.cjs');
const { native } = require('../dist/native.js');
const { clientEnv } = require('../dist/cli/run.js');
const here = dirname(fileURLToPath(import.meta.url));

/** A line-at-a-time conversation with the client process. */
function conversation(child) {
  let buf = '';
  const waiting = [];
  child.stdout.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(line);
    }
  });
  return (line) => new Promise((done) => {
    waiting.push(done);
    child.stdin.write(`${line}\n`);
  });
}

/** Builds bench/ctx-client.c into `dir`; null (and a note) without a C compiler. */
function buildCtxClient(dir) {
  const program = join(dir, 'ctx-client');
  try {
    execFileSync('cc', ['-O2', '-pthread', '-o', program, join(here, 'ctx-client.c'), join(here, '..', 'native', 'shim', 'agent.c')], { stdio: 'pipe' });
    return program;
  } catch (err) {
    process.stderr.write(`bench faults: context switch skipped, no C compiler (${err.message.split('\n')[0]})\n`);
    return null;
  }
}

/**
 * The context switch of seed 001's driver: devmap_access → devmap_do_ctxmgt, which unloads the owner. Returns
 * the switch counter and the device (for the cleanup to detach).
 */
function installCtxDriver(kernel) {
  const dip = new d.DevInfo('bctx', [{ size: d.pageSize }]);
  let owner = null;
  const stats = { switches: 0, dip };
  const contextmgt = (h, _pvtp, off, len, type, rw) => {
    if (owner && owner !== h && owner.live && d.devmap_unload(owner, owner.dh_uoff, len) === 0) stats.switches++;
    owner = h;
    return d.devmap_load(h, off, len, type, rw);
  };
  kernel.install('bctx', {
    devmap(_dev, dhp, off, len, maplen) {
      maplen.value = len;
      const ops = { devmap_rev: 1, devmap_access: (h, pvtp, aoff, alen, type, rw) => d.devmap_do_ctxmgt(h, pvtp, aoff, alen, type, rw, contextmgt) };
      return d.devmap_devmem_setup(dhp, dip, ops, 0, off, len, d.PROT_ALL, 0);
    },
  });
  return stats;
}

/**
 * Two ctx-client processes under the shim taking `rounds` turns; resolves with the leader's ns per switch.
 * Every touch must have been a switch (the warm-up round has one), or the figure is not of this case.
 */
function devmapSwitches(program, env, rounds, stats) {
  const before = stats.switches;
  const pair = native().socket_pair();
  if (typeof pair === 'number') throw new Error(`socketpair: ${pair}`);
  const start = (role, fd) => spawn(program, ['device', '/dev/bctx', role, String(rounds)], { env, stdio: ['ignore', 'pipe', 'inherit', fd] });
  const leader = start('leader', pair[0]);
  const follower = start('follower', pair[1]);
  native().close(pair[0]);
  native().close(pair[1]);
  let out = '';
  leader.stdout.on('data', (b) => (out += b));
  const done = (child) => new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('close', resolve)));
  return Promise.all([done(leader), done(follower)]).then(([a, b]) => {
    if (a !== 0 || b !== 0) throw new Error(`ctx-client exited ${a}, ${b}`);
    if (stats.switches - before !== 2 * rounds + 1) throw new Error(`${stats.switches - before} context switches for ${rounds} rounds`);
    return Number(out.trim());
  });
}

export async function faultsCases({ quick = false } = {}) {
  const P = d.pageSize;
  const kernel = new d.Kernel({ arenaSize: 2 ** 20, addressSpaceSize: 64 * 2 ** 20 });
  const pages = quick ? 256 : 1024;
  const dip = new d.DevInfo('bflt', [{ size: pages * P }]);
  const handles = [];
  kernel.install('bflt', {
    devmap(_dev, dhp, off, len, maplen) {
      maplen.value = len;
      handles.push(dhp);
      return d.devmap_devmem_setup(dhp, dip, { devmap_rev: 1, devmap_access: d.devmap_default_access }, 0, off, len, d.PROT_ALL, 0);
    },
  });
  const ctxStats = installCtxDriver(kernel);
  const dir = mkdtempSync(join(tmpdir(), 'devmap-bench-faults-'));
  const host = await kernel.listen(join(dir, 'k.sock'));
  const ctxProgram = buildCtxClient(dir);
  const ctxEnv = clientEnv(host.path, ['/dev/bctx']);
  const child = spawn(process.execPath, [join(here, 'fault-client.cjs'), host.path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const say = conversation(child);
  await say('hold');
  const held = handles[handles.length - 1];
  const reps = quick ? 5 : 11;

  /** @type {import('./harness.mjs').Case[]} */
  const cases = [
    {
      name: `a client's fault round trip (touch → devmap_access → devmap_load → resume), ${pages} pages`,
      n: pages, reps, goal: '≤ 3×', baseline: 'C thread serving UFFDIO_CONTINUE',
      variants: {
        'C thread serving UFFDIO_CONTINUE': (k) => c.c_fault_roundtrip(k),
        'devmap host (TypeScript devmap_access)': async (k) => Number((await say(String(k))).split(' ')[0]),
      },
    },
    {
      name: "devmap_unload of one page of a client, acknowledged by its agent",
      n: quick ? 500 : 5000, reps, baseline: 'C MADV_DONTNEED',
      variants: {
        'C MADV_DONTNEED': (k) => c.c_madvise_dontneed(k),
        'devmap_unload (agent round trip)': (k) => perOp((m) => {
          for (let i = 0; i < m; i++) d.devmap_unload(held, held.dh_uoff, P);
        }, k),
      },
    },
  ];
  if (ctxProgram) {
    cases.push({
      name: 'a context switch between two real processes (a fault, devmap_do_ctxmgt: the owner unloaded by its agent, the faulting one loaded)',
      n: quick ? 200 : 2000, reps, goal: '≤ 3×', baseline: 'C loop serving both uffds (agent UNLOAD + UFFDIO_CONTINUE)',
      variants: {
        'C loop serving both uffds (agent UNLOAD + UFFDIO_CONTINUE)': (k) => c.c_ctx_switch(k, ctxProgram),
        'devmap host (devmap_do_ctxmgt in TypeScript), clients under the shim': (k) => devmapSwitches(ctxProgram, ctxEnv, k, ctxStats),
      },
    });
  }
  return {
    cases,
    cleanup: async () => {
      child.stdin.end('exit\n');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('close', r)));
      await host.close();
      await kernel.shutdown();
      dip.detach();
      ctxStats.dip.detach();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { cases, cleanup } = await faultsCases({ quick: process.argv.includes('--quick') });
  const results = [];
  try {
    for (const k of cases) results.push(await runCase(k));
  } finally {
    await cleanup();
  }
  console.log(markdown(results));
}
