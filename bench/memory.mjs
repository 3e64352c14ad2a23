// The memory layer beside its C baselines (native/bench/baseline_memory.cc), in one process and one run.
//   npm run compile && node bench/memory.mjs [--quick] [--json]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { machine, markdown, perOp, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const devmap = require('../dist/index.js');
const baselines = require('./baselines.cjs');
const { mapAnonymous, mapFile, SharedMemory } = devmap;

const KiB = 1024;
const MiB = 1024 * KiB;

export function memoryCases({ quick = false } = {}) {
  const c = baselines;
  const reps = quick ? 5 : 21;
  const dir = mkdtempSync(join(tmpdir(), 'devmap-bench-'));
  const file = join(dir, 'one-mib');
  writeFileSync(file, Buffer.alloc(MiB, 1));
  const shmName = `devmap-bench-${process.pid}`;
  const page = devmap.pageSize;
  /** @type {import('./harness.mjs').Case[]} */
  const cases = [
    {
      name: 'map+unmap 64 KiB anonymous shared',
      n: quick ? 2000 : 20000,
      goal: '≤ 1.25×',
      baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': (n) => c.c_map_unmap(64 * KiB, n) / n,
        'devmap mapAnonymous().unmap()': (n) => perOp((k) => { for (let i = 0; i < k; i++) mapAnonymous(64 * KiB).unmap(); }, n),
      },
    },
    {
      name: 'shm create+map+unmap+unlink+close, 64 KiB',
      n: quick ? 500 : 5000,
      goal: '≤ 1.3×',
      baseline: 'C shm cycle',
      variants: {
        'C shm cycle': (n) => c.c_shm_cycle(64 * KiB, n) / n,
        'devmap SharedMemory cycle': (n) => perOp((k) => {
          for (let i = 0; i < k; i++) {
            const s = SharedMemory.create(shmName, 64 * KiB);
            s.map().unmap();
            s.unlink();
            s.close();
          }
        }, n),
      },
    },
    {
      name: 'open+map+unmap a 1 MiB file',
      n: quick ? 1000 : 10000,
      goal: '≤ 1.5×',
      baseline: 'C open+fstat+mmap',
      variants: {
        'C open+fstat+mmap': (n) => c.c_file_map(file, n) / n,
        'devmap mapFile().unmap()': (n) => perOp((k) => { for (let i = 0; i < k; i++) mapFile(file).unmap(); }, n),
      },
    },
    {
      name: 'first touch of 64 MiB (map, write a byte per page, unmap)',
      n: quick ? 2 : 8,
      reps: quick ? 3 : 9,
      goal: '≤ 1.1×',
      baseline: 'C first touch',
      variants: {
        'C first touch': (n) => c.c_first_touch(64 * MiB, n) / n,
        'devmap Uint8Array first touch': (n) => perOp((k) => {
          for (let i = 0; i < k; i++) {
            const m = mapAnonymous(64 * MiB);
            const u8 = new Uint8Array(m.buffer);
            for (let off = 0; off < u8.length; off += page) u8[off] = 1;
            m.unmap();
          }
        }, n),
      },
    },
  ];
  const fillMapping = mapAnonymous(64 * MiB, { populate: true });
  const fillView = new Uint8Array(fillMapping.buffer);
  cases.push({
    name: 'fill 64 MiB (memset)',
    n: quick ? 5 : 20,
    reps: quick ? 3 : 11,
    goal: '≤ 1.1×',
    baseline: 'C memset',
    variants: {
      'C memset': (n) => c.c_fill(Number(fillMapping.address), 64 * MiB, n) / n,
      'devmap Uint8Array.fill': (n) => perOp((k) => { for (let i = 0; i < k; i++) fillView.fill(i & 0xff); }, n),
    },
  });
  const cleanup = () => {
    fillMapping.unmap();
    rmSync(dir, { recursive: true, force: true });
  };
  return { cases: cases.map((x) => ({ reps, ...x })), cleanup };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const { cases, cleanup } = memoryCases({ quick });
  const results = [];
  try {
    for (const kase of cases) {
      results.push(await runCase({ ...kase, onProgress: (name, i, total) => process.stderr.write(`\r${name}: ${i}/${total}   `) }));
    }
  } finally {
    cleanup();
    process.stderr.write('\n');
  }
  if (process.argv.includes('--json')) console.log(JSON.stringify({ machine: machine(), results }, null, 2));
  else console.log(`${JSON.stringify(machine())}\n\n${markdown(results)}`);
}
