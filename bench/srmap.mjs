// Shared resource map vs in-process resource map: one uncontended rmalloc+rmfree pair (docs/bench-srmap.md).
//   npm run compile && node bench/srmap.mjs [--quick] [--md docs/bench-srmap.md]
//
// Workload: a map given (1, 1000); the pair is a = rmalloc(3); rmfree(3, a) — the free merges back, so every
// pair sees the same map. Variants, interleaved repetition by repetition in one process:
//   in-process        ResourceMap (rmallocmap), growable store, no lock;
//   shared            SharedResourceMap in a shared anonymous mapping: each call takes the robust Mutex,
//                     journals its writes, records/drops the owner record, commits, unlocks, and rmfree bumps
//                     the generation (no wake system call: nobody sleeps);
//   Mutex floor       two uncontended lock()+unlock() of the same Mutex type: the part of a shared pair that
//                     is the C library's robust mutex and two N-API calls per lock.
// Each repetition times a batch of ~N pairs with process.hrtime; the median over repetitions is reported.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { machine, perOp, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const { mapAnonymous } = require('../dist/index.js');
const rmap = require('../dist/rmap/index.js');
const { Mutex } = require('../dist/sync/index.js');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const mdAt = args.indexOf('--md');
const mdPath = mdAt >= 0 ? args[mdAt + 1] : undefined;

function pair(mp) {
  return (n) => {
    let sink = 0;
    for (let i = 0; i < n; i++) {
      const a = rmap.rmalloc(mp, 3);
      rmap.rmfree(mp, 3, a);
      sink += a;
    }
    if (sink !== n) throw new Error('wrong index');
  };
}

function maps(policy) {
  const local = rmap.rmallocmap(16, { policy });
  rmap.rmfree(local, 1000, 1);
  const sizing = { policy, mapsize: 16, capacity: 64, owners: 64 };
  const m = mapAnonymous(rmap.SharedResourceMap.bytesFor(sizing));
  const shared = rmap.SharedResourceMap.create(m, sizing);
  rmap.rmfree(shared, 1000, 1);
  return { local, shared, m };
}

const mm = mapAnonymous(4096);
const mutex = Mutex.init(new Int32Array(mm.buffer), 0);
const floor = (n) => {
  for (let i = 0; i < n; i++) {
    mutex.lock();
    mutex.unlock();
    mutex.lock();
    mutex.unlock();
  }
};

const N = quick ? 20_000 : 100_000;
const reps = quick ? 5 : 15;
const results = [];
for (const policy of ['classic', 'illumos']) {
  const { local, shared, m } = maps(policy);
  const r = await runCase({
    name: `rmalloc+rmfree pair, ${policy}`,
    baseline: 'in-process',
    n: N,
    reps,
    goal: 'shared ≤ 2× in-process',
    variants: {
      'in-process': (n) => perOp(pair(local), n),
      shared: (n) => perOp(pair(shared), n),
      'Mutex floor (2 × lock+unlock)': (n) => perOp(floor, n),
    },
  });
  if (shared.freeUnits !== 1000 || shared.ownersInUse !== 0) throw new Error('shared map not back to its start');
  results.push(r);
  m.unmap();
}

const fmt = (ns) => `${ns.toFixed(1)} ns`;
let md = `| case | variant | median / pair | min..max | vs in-process |\n| --- | --- | --- | --- | --- |\n`;
for (const r of results) {
  for (const row of r.rows) {
    md += `| ${r.name} | ${row.variant} | ${fmt(row.medianNs)} | ${fmt(row.minNs)}..${fmt(row.maxNs)} | ${row.ratio.toFixed(2)}× |\n`;
  }
}
const m = machine();
const header = `Machine: ${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, ${m.date}\n\n`;
console.log(header + md);
if (mdPath) writeFileSync(mdPath, header + md);
