// Resource maps beside the historical array walk, in one process and one run (docs/bench-rmap.md).
//   npm run compile && node bench/rmap.mjs [--quick] [--json out.json]
//
// Workload, the same for every implementation: a map with N free ranges -- N − 1 ranges of 2 units at
// 1, 5, 9, ... separated by allocated 2-unit blocks, and a last range of 1000 units -- then pairs
//   a = rmalloc(3); rmfree(3, a)
// Only the last range can hold 3 units, so first fit must pass every other range: the historical walk
// reads the whole array twice (rmalloc's scan, rmfree's search for the insertion point); the free merges
// back into the last range and the map is as before, pair after pair. The map is built the way a driver
// would (one rmfree of the whole resource, rmallocs of every block, rmfree of every other block); the two
// array walks get the same array written directly.
//
// Variants: C array walk (native/bench/baseline_rmap.cc, timed in C), JS array walk (the same algorithm over a
// Float64Array), devmap classic (AVL, exact same answers as the walk), devmap illumos (vmem instant fit).
// Repetitions are interleaved variant by variant; each repetition times a batch sized to take ~5 ms of the
// main thread's CPU time (the same clock on both sides, see now()).
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { machine, median } from './harness.mjs';

const require = createRequire(import.meta.url);
const rmap = require('../dist/rmap/index.js');
const addon = require('./baselines.cjs');

/** CPU time of this thread in ns (CLOCK_THREAD_CPUTIME_ID, the clock the C loop uses): time spent descheduled
 * on a busy machine and V8's background threads (compiler, GC helpers) are not counted on either side. */
const now = () => addon.c_rmap_thread_ns();

export const SIZES = [16, 1000, 10_000, 100_000];
export const BASELINE = 'C array walk';

/** The historical Solaris ≤ 7 array algorithm in JS: (addr, size) pairs in one Float64Array, 0-size terminator. */
class ArrayWalk {
  constructor(slots) {
    this.a = new Float64Array(2 * (slots + 1)); // [addr0, size0, addr1, size1, ...]
    this.freeSlots = slots;
  }
  alloc(size) {
    const a = this.a;
    for (let i = 0; a[i + 1] !== 0; i += 2) {
      if (a[i + 1] >= size) {
        const addr = a[i];
        a[i] += size;
        if ((a[i + 1] -= size) === 0) {
          a.copyWithin(i, i + 2);
          this.freeSlots++;
        }
        return addr;
      }
    }
    return 0;
  }
  free(size, addr) {
    if (size === 0 || addr === 0) throw new Error('bad rmfree');
    const a = this.a;
    let i = 0;
    while (a[i + 1] !== 0 && a[i] <= addr) i += 2;
    const hasL = i > 0;
    if (hasL && a[i - 2] + a[i - 1] > addr) throw new Error('bad rmfree');
    if (a[i + 1] !== 0 && addr + size > a[i]) throw new Error('bad rmfree');
    if (hasL && a[i - 2] + a[i - 1] === addr) {
      a[i - 1] += size;
      if (a[i + 1] !== 0 && addr + size === a[i]) {
        a[i - 1] += a[i + 1];
        a.copyWithin(i, i + 2);
        this.freeSlots++;
      }
    } else if (a[i + 1] !== 0 && addr + size === a[i]) {
      a[i] = addr;
      a[i + 1] += size;
    } else {
      if (this.freeSlots === 0) throw new Error('overflow (not part of this workload)');
      a.copyWithin(i + 2, i, a.length - 2);
      a[i] = addr;
      a[i + 1] = size;
      this.freeSlots--;
    }
  }
}

/** Builds the workload's map through the public API; returns the index the pairs must get back. */
function build(n, policy) {
  const total = 4 * (n - 1) + 1000;
  const mp = rmap.rmallocmap(n + 1, { policy });
  rmap.rmfree(mp, total, 1);
  for (let i = 0; i < 2 * (n - 1); i++) rmap.rmalloc(mp, 2);
  const last = rmap.rmalloc(mp, 1000);
  for (let i = 0; i < n - 1; i++) rmap.rmfree(mp, 2, 1 + 4 * i);
  rmap.rmfree(mp, 1000, last);
  if (mp.ranges !== n || last !== 1 + 4 * (n - 1)) throw new Error(`bad ${policy} setup for ${n}`);
  return { mp, last };
}

function variants(n) {
  const classic = build(n, 'classic');
  const illumos = build(n, 'illumos');
  // The array the same rmfrees would leave, written directly (building it through free() is O(n^2)).
  const walk = new ArrayWalk(n + 1);
  for (let i = 0; i < n - 1; i++) walk.a.set([1 + 4 * i, 2], 2 * i);
  walk.a.set([1 + 4 * (n - 1), 1000], 2 * (n - 1));
  walk.freeSlots = 1;
  const last = 1 + 4 * (n - 1);
  const js = (alloc, free) => (iters) => {
    let sink = 0;
    const t0 = now();
    for (let i = 0; i < iters; i++) {
      const a = alloc(3);
      free(3, a);
      sink += a;
    }
    const ns = now() - t0;
    if (sink !== last * iters) throw new Error('wrong index');
    return ns;
  };
  return {
    maps: { classic: classic.mp, illumos: illumos.mp },
    run: {
      'C array walk': (iters) => {
        const ns = addon.c_rmap_pairs(n, iters);
        if (ns < 0) throw new Error('C baseline failed');
        return ns;
      },
      'JS array walk': js((s) => walk.alloc(s), (s, i) => walk.free(s, i)),
      'devmap classic': js((s) => rmap.rmalloc(classic.mp, s), (s, i) => rmap.rmfree(classic.mp, s, i)),
      'devmap illumos': js((s) => rmap.rmalloc(illumos.mp, s), (s, i) => rmap.rmfree(illumos.mp, s, i)),
    },
  };
}

/**
 * Runs the scaling benchmark: for each map size, every variant interleaved repetition by repetition.
 * Returns { reps, results: [{ ranges, rows: [{ variant, medianNs, minNs, maxNs, vsC }], memory }] }.
 * `sizes` picks map sizes; onProgress(ranges, done, total) reports each finished size.
 * @param {{ quick?: boolean, sizes?: number[], onProgress?: (ranges: number, done: number, total: number) => void }} [options]
 */
export function runRmap({ quick = false, sizes = SIZES, onProgress } = {}) {
  const REPS = quick ? 5 : 15;
  const TARGET_NS = quick ? 2e6 : 5e6;
  const results = [];
  for (const n of sizes) {
    const { maps, run } = variants(n);
    const labels = Object.keys(run);
    // Calibrate: iterations per batch so that a batch takes about TARGET_NS (after a warm-up).
    const iters = {};
    for (const l of labels) {
      run[l](1000);
      let k = 64;
      while (run[l](k) < TARGET_NS / 4 && k < 1e8) k *= 4;
      iters[l] = Math.max(16, Math.round((k * TARGET_NS) / Math.max(1, run[l](k))));
    }
    const samples = Object.fromEntries(labels.map((l) => [l, []]));
    for (let r = 0; r < REPS; r++) for (const l of labels) samples[l].push(run[l](iters[l]) / iters[l]);
    const base = median(samples[BASELINE]);
    const rows = labels.map((l) => {
      const med = median(samples[l]);
      return { variant: l, medianNs: med, minNs: Math.min(...samples[l]), maxNs: Math.max(...samples[l]), vsC: med / base };
    });
    const bytes = (mp) => ({ storeBytes: mp.store.byteLength, ranges: mp.ranges, bytesPerRange: mp.store.byteLength / mp.ranges });
    results.push({ ranges: n, rows, memory: { classic: bytes(maps.classic), illumos: bytes(maps.illumos), cArray: 16 } });
    onProgress?.(n, results.length, sizes.length);
  }
  return { reps: REPS, results };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
  const { reps: REPS, results } = runRmap({ quick, onProgress: (n) => process.stderr.write(`${n} ranges done\n`) });

  const fmt = (ns) => (ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(1)} ns`);
  console.log(`rmalloc(3)+rmfree(3) pairs; ${JSON.stringify(machine())}; ${REPS} interleaved repetitions, medians`);
  console.log('| free ranges | variant | median / pair | min..max | vs C array walk |');
  console.log('| ---: | --- | ---: | --- | ---: |');
  for (const r of results) {
    for (const row of r.rows) {
      const ratio = row.variant === 'C array walk' ? '1.00' : row.vsC < 1 ? `${(1 / row.vsC).toFixed(1)}× faster` : `${row.vsC.toFixed(2)}× slower`;
      console.log(`| ${r.ranges} | ${row.variant} | ${fmt(row.medianNs)} | ${fmt(row.minNs)}..${fmt(row.maxNs)} | ${ratio} |`);
    }
  }
  console.log('\n| free ranges | classic store bytes / free range | illumos store bytes / free range |');
  console.log('| ---: | ---: | ---: |');
  for (const r of results) console.log(`| ${r.ranges} | ${r.memory.classic.bytesPerRange.toFixed(1)} | ${r.memory.illumos.bytesPerRange.toFixed(1)} |`);
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ machine: machine(), reps: REPS, results }, null, 2));
}
