// Client processes through the kernel host: a real C program (bench/client-bench.c, run under the preload shim)
// maps and unmaps 64 KiB of an IRIX driver's kmem, reads 4 KiB from a driver, and starts as a client (connect,
// open, exit), each beside its raw equivalent measured in the same run: raw mmap+munmap in C here, a pipe
// write+read in the same C program, fork+open(/dev/null)+exit. The C program times its own loop; the host is
// this process's event loop, as it is for a driver writer.
//   npm run compile && node bench/clients.mjs [--quick] [--json]
import { execFileSync, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { installKmemDriver } from './kmem-driver.mjs';
import { machine, markdown, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const d = require('../dist/index.js');
const { clientEnv } = require('../dist/cli/run.js');
const baselines = require('./baselines.cjs');

/** Runs the C client with `args`; resolves with the ns per operation it printed. */
function client(program, env, args) {
  return new Promise((resolve, reject) => {
    execFile(program, args, { env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`client-bench ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(Number(stdout.trim()));
    });
  });
}

export async function clientsCases({ quick = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'devmap-bench-clients-'));
  const program = join(dir, 'client-bench');
  try {
    execFileSync('cc', ['-O2', '-o', program, fileURLToPath(new URL('./client-bench.c', import.meta.url))], { stdio: 'pipe' });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`bench clients: skipped, no C compiler (${err.message.split('\n')[0]})\n`);
    return { cases: [], cleanup: async () => undefined };
  }
  const kernel = new d.Kernel({ arenaSize: 16 * 2 ** 20, addressSpaceSize: 64 * 2 ** 20 });
  installKmemDriver(d, kernel, 'bench');
  const kbuf = /** @type {number} */ (kernel.kmem_zalloc(4096, d.KM_NOSLEEP));
  kernel.install('src', { read: (dev, uio) => kernel.uiomove(kbuf, 4096, d.UIO_READ, uio) });
  const host = await kernel.listen(join(dir, 'kernel.sock'));
  const env = clientEnv(host.path, ['/dev/bench', '/dev/src']);
  const plain = { ...process.env };
  const len = 64 * 1024;
  const reps = quick ? 5 : 11;
  const n = quick ? 300 : 3000;
  const cases = [
    {
      name: `a C client's mmap+munmap of ${len / 1024} KiB through the host (IRIX driver, kmem)`,
      n, reps, goal: '≤ 10×', goalVariants: ['C client under the shim, through the host'], baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': (k) => baselines.c_map_unmap(len, k) / k,
        'C client under the shim, through the host': (k) => client(program, env, ['mmap', String(k), String(len), '/dev/bench']),
      },
    },
    {
      name: 'a C client\'s read(2) of 4 KiB through the host (uiomove from kmem)',
      n, reps, baseline: 'C write+read of 4 KiB through a pipe',
      variants: {
        'C write+read of 4 KiB through a pipe': (k) => client(program, plain, ['pipe', String(k)]),
        'C client read(2) through the host': (k) => client(program, env, ['read', String(k), '/dev/src']),
      },
    },
    {
      name: 'a client process: fork, connect + hello + open, exit (the host runs the exit path)',
      n: quick ? 20 : 100, reps, baseline: 'C fork + open(/dev/null) + exit',
      variants: {
        'C fork + open(/dev/null) + exit': (k) => client(program, env, ['spawn', String(k), '-']),
        'C fork + open of a served device + exit': (k) => client(program, env, ['spawn', String(k), '/dev/bench']),
      },
    },
  ];
  return {
    cases,
    cleanup: async () => {
      await host.close();
      kernel.kmem_free(kbuf, 4096);
      await kernel.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const { cases, cleanup } = await clientsCases({ quick });
  const results = [];
  for (const k of cases) results.push(await runCase(k));
  await cleanup();
  if (process.argv.includes('--json')) console.log(JSON.stringify({ machine: machine(), results }, null, 2));
  else console.log(`${JSON.stringify(machine())}\n\n${markdown(results)}`);
}
