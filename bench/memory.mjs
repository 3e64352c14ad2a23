// The memory layer beside its C baselines (native/bench/baseline_memory.cc), in one process and one run.
//   npm run compile && node bench/memory.mjs [--quick] [--json]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { machine, markdown, perOp, perOpAsync, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const devmap = require('../dist/index.js');
const baselines = require('./baselines.cjs');
const { mapAnonymous, mapFile, SharedMemory } = devmap;

const KiB = 1024;
/**
 * The view a user's cycle makes, kept where V8 cannot prove it unused. The cycles make it without touching a
 * page, as the C baselines map without touching one (a first touch is its own case).
 * @type {Uint8Array | undefined}
 */
let view;
const MiB = 1024 * KiB;

export function memoryCases({ quick = false } = {}) {
  const c = baselines;
  const reps = quick ? 5 : 21;
  const dir = mkdtempSync(join(tmpdir(), 'devmap-bench-'));
  const file = join(dir, 'one-mib');
  writeFileSync(file, Buffer.alloc(MiB, 1));
  const shmName = `devmap-bench-${process.pid}`;
  const page = devmap.pageSize;
  /** `k` SharedMemory cycles as users run them: create, map, a view, unmap, unlink, close. */
  const shmCycles = (k) => {
    for (let i = 0; i < k; i++) {
      const s = SharedMemory.create(shmName, 64 * KiB);
      const m = s.map();
      view = new Uint8Array(m.buffer);
      m.unmap();
      s.unlink();
      s.close();
    }
  };
  /** @type {import('./harness.mjs').Case[]} */
  // Each C baseline names the system calls it makes; a "like-for-like" one makes the calls devmap makes.
  const cases = [
    {
      name: 'map+view+unmap 64 KiB anonymous shared (the user\'s cycle)',
      n: quick ? 2000 : 20000,
      goal: '≤ 1.3×',
      baseline: 'C mmap+munmap',
      goalVariants: ['devmap mapAnonymous + Uint8Array + unmap'],
      variants: {
        'C mmap+munmap': (n) => c.c_map_unmap(64 * KiB, n) / n,
        'devmap mapAnonymous + Uint8Array + unmap': (n) => perOp((k) => {
          for (let i = 0; i < k; i++) {
            const m = mapAnonymous(64 * KiB);
            view = new Uint8Array(m.buffer);
            m.unmap();
          }
        }, n),
        'devmap mapAnonymous().unmap() (no view)': (n) => perOp((k) => { for (let i = 0; i < k; i++) mapAnonymous(64 * KiB).unmap(); }, n),
      },
    },
    {
      // The same cycle with the work devmap defers counted: views are released by the garbage collector and
      // Node's finalizer immediates, and a range is given back (pooled, punched or unmapped) after that, so
      // a batch that ends before its event-loop turn leaves that work to whatever runs next. Each timed batch
      // here is 2000 cycles and the turn after them, for C too.
      name: 'map+view+unmap 64 KiB anonymous shared, sustained (2000 cycles and an event-loop turn per batch)',
      n: 2000,
      goal: '≤ 1.3×',
      baseline: 'C mmap+munmap',
      goalVariants: ['devmap mapAnonymous + Uint8Array + unmap'],
      variants: {
        'C mmap+munmap': (n) => perOpAsync(async (k) => {
          c.c_map_unmap(64 * KiB, k);
          await new Promise((r) => setImmediate(r));
        }, n),
        'devmap mapAnonymous + Uint8Array + unmap': (n) => perOpAsync(async (k) => {
          for (let i = 0; i < k; i++) {
            const m = mapAnonymous(64 * KiB);
            view = new Uint8Array(m.buffer);
            m.unmap();
          }
          await new Promise((r) => setImmediate(r));
        }, n),
      },
    },
    {
      name: 'shm create+map+view+unmap+unlink+close, 64 KiB, beside like-for-like C',
      n: quick ? 500 : 5000,
      goal: '≤ 1.3×',
      baseline: 'C shm_open+ftruncate+fallocate+fsetxattr+fstat+mmap+munmap+close+shm_unlink',
      variants: {
        'C shm_open+ftruncate+fallocate+fsetxattr+fstat+mmap+munmap+close+shm_unlink': (n) => c.c_shm_cycle(64 * KiB, n, 1 | 2 | 4) / n,
        'devmap SharedMemory cycle with a view': (n) => perOp((k) => shmCycles(k), n),
      },
    },
    {
      name: 'shm create+map+view+unmap+unlink+close, 64 KiB, beside the plain C cycle',
      n: quick ? 500 : 5000,
      goal: '≤ 2×',
      baseline: 'C shm_open+ftruncate+mmap+munmap+close+shm_unlink',
      variants: {
        'C shm_open+ftruncate+mmap+munmap+close+shm_unlink': (n) => c.c_shm_cycle(64 * KiB, n, 0) / n,
        'devmap SharedMemory cycle with a view': (n) => perOp((k) => shmCycles(k), n),
      },
    },
    {
      name: 'open+map+view+unmap a 1 MiB file',
      n: quick ? 1000 : 10000,
      goal: '≤ 1.5×',
      baseline: 'C open+fstat+mmap+close+munmap',
      variants: {
        'C open+fstat+mmap+close+munmap': (n) => c.c_file_map(file, n) / n,
        'devmap mapFile + Uint8Array + unmap': (n) => perOp((k) => {
          for (let i = 0; i < k; i++) {
            const m = mapFile(file);
            view = new Uint8Array(m.buffer);
            m.unmap();
          }
        }, n),
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
