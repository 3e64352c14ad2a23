// Real faults of a client process (SPEC A.9) beside the same work served in C, in one run:
//  - a fault round trip: a client's touch of an unloaded page → the host's event loop → the driver's
//    devmap_access (TypeScript) → devmap_load → UFFDIO_CONTINUE → the client runs on; beside a C thread serving
//    the same minor faults with UFFDIO_CONTINUE (native/bench/baseline_faults.cc). Both are timed by the client
//    around its touch loop.
//  - devmap_unload of one page of a client, acknowledged by its agent; beside a bare MADV_DONTNEED.
//   npm run compile && node bench/faults.mjs [--quick]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdown, perOp, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const d = require('../dist/index.js');
const c = require('./baselines.cjs');
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
  const dir = mkdtempSync(join(tmpdir(), 'devmap-bench-faults-'));
  const host = await kernel.listen(join(dir, 'k.sock'));
  const child = spawn(process.execPath, [join(here, 'fault-client.cjs'), host.path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const say = conversation(child);
  await say('hold');
  const held = handles[handles.length - 1];
  const reps = quick ? 5 : 11;

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
  return {
    cases,
    cleanup: async () => {
      child.stdin.end('exit\n');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('close', r)));
      await host.close();
      await kernel.shutdown();
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
