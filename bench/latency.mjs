// Per-operation latency distributions: each sample is ONE operation, timed on its own, so the report can
// show the whole distribution (median, tail, outliers) rather than the mean of a batch. The C variants time
// their single operation in C (the N-API call around it is not counted); the JS variants read the
// monotonic clock around the call (about 30–50 ns of overhead per sample, visible at the left of the plot).
// Samples of the variants of a case are interleaved one by one, as the harness does with repetitions.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { now } from './harness.mjs';

const require = createRequire(import.meta.url);
const { mapAnonymous, SharedMemory, pageSize } = require('../dist/index.js');
const baselines = require('./baselines.cjs');
/** lib/sync, once it is built (the ping-pong case needs it). */
const sync = (() => {
  try {
    return require('../dist/sync/index.js');
  } catch {
    return null;
  }
})();

const KiB = 1024;
/**
 * The view a user's cycle makes, kept where V8 cannot prove it unused. The cycles make it without touching a
 * page, as the C baselines map without touching one (a first touch is its own case).
 * @type {Uint8Array | undefined}
 */
let view;
const self = fileURLToPath(import.meta.url);

// The other end of a ping-pong: node bench/latency.mjs pong NAME SPIN ROUNDS. Word 1 says "ready"; then, ROUNDS
// times, wait for word 0 to become 1 and store 0.
if (sync && process.argv[1] === self && process.argv[2] === 'pong') {
  const [name, spin, rounds] = process.argv.slice(3);
  sync.setSpin({ iterations: Number(spin) });
  const shm = SharedMemory.open(name);
  const m = shm.map();
  shm.close();
  const a = new Int32Array(m.buffer);
  Atomics.store(a, 1, 1);
  sync.notify(a, 1);
  for (let i = 0; i < Number(rounds); i++) {
    while (Atomics.load(a, 0) === 0) sync.wait(a, 0, 0);
    Atomics.store(a, 0, 0);
    sync.notify(a, 0, 1);
  }
  m.unmap();
  process.exit(0);
}

/**
 * One side of a ping-pong with a child process spinning `spin` polls before sleeping; `round()` times one
 * round trip (store 1, notify, wait for 0). The child is started by the first round (so that listing or
 * filtering out the case starts nothing) and told to serve exactly `rounds` round trips; close() kills it
 * if fewer were asked for.
 */
function pingPonger(spin, rounds) {
  /** @type {Int32Array | null} */
  let a = null;
  let m = null;
  let child = null;
  let exited = null;
  let served = 0;
  const start = () => {
    const name = `devmap-bench-pingpong-${process.pid}-${spin}`;
    const shm = SharedMemory.create(name, 4096);
    m = shm.map();
    shm.close();
    a = new Int32Array(m.buffer);
    // spawn() forks synchronously, so the child runs while this thread blocks in wait() below.
    child = spawn(process.execPath, [self, 'pong', name, String(spin), String(rounds)], { stdio: 'inherit' });
    exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      while (Atomics.load(a, 1) === 0) if (sync.wait(a, 1, 0, 500) === 'timed-out') checkAlive(child);
    } finally {
      SharedMemory.unlink(name); // both ends have it mapped (or the child is gone): the name is not needed
    }
  };
  return {
    round() {
      if (a === null) start();
      sync.setSpin({ iterations: spin });
      const t0 = now();
      Atomics.store(a, 0, 1);
      sync.notify(a, 0, 1);
      while (Atomics.load(a, 0) === 1) if (sync.wait(a, 0, 1, 1000) === 'timed-out') checkAlive(child);
      served++;
      return now() - t0;
    },
    async close() {
      if (child === null) return;
      if (served < rounds) child.kill('SIGKILL');
      await exited;
      m.unmap();
    },
  };
}

export function latencyCases({ quick = false } = {}) {
  const c = baselines;
  const n = quick ? 300 : 3000;
  const shmName = `devmap-bench-latency-${process.pid}`;
  // First writes to pages of one large shared mapping, one page per sample; a new region when it runs out.
  const faultPages = 4096;
  let region = null;
  let next = faultPages;
  const faultOnce = () => {
    if (next === faultPages) {
      region?.unmap();
      region = mapAnonymous(faultPages * pageSize);
      next = 0;
    }
    const u8 = new Uint8Array(region.buffer, next++ * pageSize, 1);
    const t0 = now();
    u8[0] = 1;
    return now() - t0;
  };
  /** @type {import('./harness.mjs').Case[]} */
  const cases = [
    {
      name: 'map+view+unmap 64 KiB anonymous shared, one call',
      n, baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': () => c.c_map_unmap(64 * KiB, 1),
        'devmap mapAnonymous + Uint8Array + unmap': () => {
          const t0 = now();
          const m = mapAnonymous(64 * KiB);
          view = new Uint8Array(m.buffer);
          m.unmap();
          return now() - t0;
        },
      },
    },
    {
      name: 'shm create+map+view+unmap+unlink+close 64 KiB, one cycle',
      n: Math.round(n / 2), baseline: 'C shm_open+ftruncate+fallocate+fsetxattr+fstat+mmap+munmap+close+shm_unlink',
      variants: {
        'C shm_open+ftruncate+fallocate+fsetxattr+fstat+mmap+munmap+close+shm_unlink': () => c.c_shm_cycle(64 * KiB, 1, 1 | 2 | 4),
        'C shm_open+ftruncate+mmap+munmap+close+shm_unlink': () => c.c_shm_cycle(64 * KiB, 1, 0),
        'devmap SharedMemory cycle with a view': () => {
          const t0 = now();
          const s = SharedMemory.create(shmName, 64 * KiB);
          const m = s.map();
          view = new Uint8Array(m.buffer);
          m.unmap();
          s.unlink();
          s.close();
          return now() - t0;
        },
      },
    },
    {
      name: 'page fault: first write to a page of a shared mapping',
      n: n * 4, baseline: 'C map + first touch + unmap of 256 pages, per page',
      variants: {
        'C map + first touch + unmap of 256 pages, per page': () => c.c_first_touch(256 * pageSize, 1) / 256,
        'devmap Uint8Array first write': faultOnce,
      },
    },
  ];
  // Round trips are interleaved between two children (spinning off, spinning at the default); each child
  // is told the exact number of round trips it will serve: the warm-up of sampleCase plus n.
  const rounds = quick ? 500 : 5000;
  const pongs = sync ? [pingPonger(0, rounds + WARMUP), pingPonger(sync.DEFAULT_SPIN_ITERATIONS, rounds + WARMUP)] : [];
  if (sync) cases.push({
    name: 'cross-process ping-pong, one round trip (wait/notify)',
    n: rounds, baseline: 'devmap wait/notify, spin off',
    variants: {
      'devmap wait/notify, spin off': pongs[0].round,
      [`devmap wait/notify, spin ${sync.DEFAULT_SPIN_ITERATIONS}`]: pongs[1].round,
    },
  });
  const cleanup = async () => {
    region?.unmap();
    for (const p of pongs) await p.close();
    sync?.setSpin({ iterations: sync.DEFAULT_SPIN_ITERATIONS });
  };
  return { cases, cleanup };
}

/**
 * Throws if the child has exited. Called from a blocked main thread, where the 'exit' event cannot run:
 * an exited child not yet reaped is a zombie ('Z' in /proc/<pid>/stat).
 */
function checkAlive(child) {
  let state = 'Z';
  try {
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {}
  if (state === 'Z' || state === 'X') throw new Error('the ping-pong child process died (see its output above)');
}

/** Untimed calls of each variant before sampling. */
const WARMUP = 20;

/** Takes `n` samples of every variant, interleaved; returns { name, baseline, variants: [{ variant, samples }] }. */
export function sampleCase({ name, n, baseline, variants }, onProgress) {
  const labels = Object.keys(variants);
  const samples = Object.fromEntries(labels.map((l) => [l, new Float64Array(n)]));
  for (let i = 0; i < WARMUP; i++) for (const l of labels) variants[l]();
  const every = Math.max(1, Math.floor(n / 20));
  for (let i = 0; i < n; i++) {
    for (const l of labels) samples[l][i] = variants[l]();
    if (i % every === 0) onProgress?.(i, n);
  }
  return { name, baseline, n, variants: labels.map((l) => ({ variant: l, samples: [...samples[l]].sort((a, b) => a - b) })) };
}
