// The whole benchmark suite, as `devmap bench` (and `npm run bench`) runs it:
//   node bench/run.mjs [--quick] [--filter PATTERN] [--json] [--report FILE] [--svg DIR] [--list]
//
// Every case runs beside its C baseline in the same process, variants interleaved repetition by repetition
// (bench/harness.mjs); resource maps run their own calibrated, CPU-clock benchmark (bench/rmap.mjs); latency
// cases take single-operation samples (bench/latency.mjs). The result is one JSON document: the machine,
// the ratio table (`results`), the rmap scaling series and the latency distributions, which bench/report.mjs
// turns into HTML and SVG.
//
// Adding a suite: a module exporting `fooCases({ quick }) → { cases, cleanup }` in the harness's case format
// is one entry in SUITES.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { machine, markdown, runCase } from './harness.mjs';
import { sampleCase } from './latency.mjs';
import { checkOutputs } from './outputs.mjs';
import { htmlReport, svgCharts } from './report.mjs';

/** Suites in the harness's case format, run in this order. */
export const SUITES = [
  { name: 'memory', module: './memory.mjs', exportName: 'memoryCases' },
  { name: 'kernel', module: './kernel.mjs', exportName: 'kernelCases' },
  { name: 'sync', module: './sync.mjs', exportName: 'syncCases' },
  { name: 'channel', module: './channel.mjs', exportName: 'channelCases' },
  { name: 'clients', module: './clients.mjs', exportName: 'clientsCases' },
  { name: 'faults', module: './faults.mjs', exportName: 'faultsCases' },
];
/** Suites of per-operation samples (bench/latency.mjs format). */
export const LATENCY_SUITES = [{ name: 'latency', module: './latency.mjs', exportName: 'latencyCases' }];

const rmapCaseName = (ranges) => `rmalloc(3)+rmfree(3) with ${ranges} free ranges`;

/**
 * Runs the suite; returns the results document. `filter(name)` picks cases by "suite: case name".
 * @param {{ quick?: boolean, filter?: (name: string) => boolean, progress?: (p: object) => void }} [options]
 */
export async function runSuite({ quick = false, filter = () => true, progress = () => {} } = {}) {
  const started = Date.now();
  const plan = await planCases({ quick, filter });
  const total = plan.count;
  let done = 0;
  const step = (label) => (i, n) => progress({ label, done, total, i, n });
  const results = [];
  const latency = [];
  let scaling = null;
  try {
    for (const suite of plan.harness) {
      for (const kase of suite.cases) {
        const label = `${suite.name}: ${kase.name}`;
        const t0 = Date.now();
        const r = await runCase({ ...kase, onProgress: (_, i, n) => step(label)(i, n) });
        results.push({ suite: suite.name, ...r, seconds: (Date.now() - t0) / 1000 });
        done++;
      }
    }
    if (plan.rmapSizes.length > 0) {
      const { runRmap, BASELINE } = await import('./rmap.mjs');
      const label = 'rmap: rmalloc+rmfree against free ranges';
      step(label)(0, plan.rmapSizes.length);
      const t0 = Date.now();
      scaling = runRmap({ quick, sizes: plan.rmapSizes, onProgress: (_, i, n) => { done++; step(label)(i, n); } });
      for (const r of scaling.results) {
        results.push({
          suite: 'rmap', name: rmapCaseName(r.ranges), baseline: BASELINE, reps: scaling.reps,
          rows: r.rows.map(({ vsC, ...row }) => ({ ...row, ratio: vsC })),
          seconds: (Date.now() - t0) / 1000 / scaling.results.length,
        });
      }
    }
    for (const suite of plan.latency) {
      for (const kase of suite.cases) {
        const label = `${suite.name}: ${kase.name}`;
        const t0 = Date.now();
        latency.push({ ...summarize(sampleCase(kase, step(label))), seconds: (Date.now() - t0) / 1000 });
        done++;
      }
    }
  } finally {
    for (const cleanup of plan.cleanups) await cleanup();
  }
  return { machine: { ...machine(), load: loadAverage() }, quick, seconds: (Date.now() - started) / 1000, results, scaling, latency };
}

/** Loads every suite and keeps the cases the filter picks. */
async function planCases({ quick, filter }) {
  const plan = { harness: [], latency: [], rmapSizes: [], cleanups: [], count: 0 };
  for (const [list, into] of [[SUITES, plan.harness], [LATENCY_SUITES, plan.latency]]) {
    for (const suite of list) {
      const mod = await import(suite.module);
      const { cases, cleanup } = await mod[suite.exportName]({ quick });
      plan.cleanups.push(cleanup);
      const picked = cases.filter((c) => filter(`${suite.name}: ${c.name}`));
      if (picked.length > 0) into.push({ name: suite.name, cases: picked });
      plan.count += picked.length;
    }
  }
  const { SIZES } = await import('./rmap.mjs');
  plan.rmapSizes = SIZES.filter((n) => filter(`rmap: ${rmapCaseName(n)}`));
  plan.count += plan.rmapSizes.length;
  return plan;
}

/** Percentiles of sorted samples. */
function summarize({ name, baseline, n, variants }) {
  const q = (s, p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return {
    name, baseline, n,
    variants: variants.map(({ variant, samples }) => ({ variant, p50: q(samples, 0.5), p90: q(samples, 0.9), p99: q(samples, 0.99), max: samples[samples.length - 1], samples })),
  };
}

const loadAverage = () => os.loadavg().map((x) => Number(x.toFixed(2)));

/** A progress reporter for stderr: one rewritten line on a terminal, a line per case otherwise. */
export function stderrProgress(stream = process.stderr) {
  let last = '';
  return ({ label, done, total, i, n }) => {
    if (stream.isTTY) {
      const line = `[${done + 1}/${total}] ${label}  ${i}/${n}`;
      stream.write(`\r${line.slice(0, (stream.columns ?? 100) - 1).padEnd(last.length)}`);
      last = line;
    } else if (label !== last) {
      stream.write(`[${done + 1}/${total}] ${label}\n`);
      last = label;
    }
  };
}

/**
 * What `devmap bench` does with its validated options; resolves to the exit status.
 * @param {{ quick?: boolean, filter?: (name: string) => boolean, json?: boolean, report?: string, svgDir?: string, list?: boolean }} [options]
 */
export async function runBench({ quick = false, filter, json = false, report, svgDir, list = false } = {}) {
  checkOutputs({ report, svgDir }); // before the run, not after a minute of it
  if (list) {
    const plan = await planCases({ quick: true, filter: filter ?? (() => true) });
    for (const cleanup of plan.cleanups) await cleanup();
    for (const s of [...plan.harness, ...plan.latency]) for (const c of s.cases) console.log(`${s.name}: ${c.name}`);
    for (const n of plan.rmapSizes) console.log(`rmap: ${rmapCaseName(n)}`);
    return 0;
  }
  const progress = stderrProgress();
  const data = await runSuite({ quick, filter, progress });
  if (process.stderr.isTTY) process.stderr.write('\n');
  if (data.results.length === 0 && data.latency.length === 0) {
    process.stderr.write('devmap bench: no case matches the filter (devmap bench --list shows them)\n');
    return 1;
  }
  if (json) console.log(JSON.stringify(data, (k, v) => (k === 'samples' ? undefined : v), 2));
  else console.log(textReport(data));
  if (report !== undefined) {
    writeFileSync(report, htmlReport(data));
    process.stderr.write(`wrote ${report}\n`);
  }
  if (svgDir !== undefined) {
    mkdirSync(svgDir, { recursive: true });
    for (const [file, svg] of Object.entries(svgCharts(data))) {
      writeFileSync(join(svgDir, file), svg);
      process.stderr.write(`wrote ${join(svgDir, file)}\n`);
    }
  }
  return 0;
}

const fmt = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(1)} ns`);

/** The markdown printed by default: the machine, the ratio table, latency percentiles. */
export function textReport(data) {
  const m = data.machine;
  const lines = [
    `Machine: ${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, page ${m.pageSize} bytes, load ${m.load.join(' ')}; ${m.date}; ${data.seconds.toFixed(0)} s${data.quick ? ' (--quick)' : ''}`,
    '',
  ];
  if (data.results.length > 0) lines.push(markdown(data.results.map((r) => ({ ...r, name: `${r.suite}: ${r.name}` }))), '');
  const perSuite = new Map();
  for (const r of [...data.results, ...data.latency.map((c) => ({ ...c, suite: 'latency' }))]) perSuite.set(r.suite, (perSuite.get(r.suite) ?? 0) + r.seconds);
  if (perSuite.size > 0) lines.push(`Time per suite: ${[...perSuite].map(([s, t]) => `${s} ${t.toFixed(0)} s`).join(', ')}`, '');
  if (data.latency.length > 0) {
    lines.push('| latency, one operation | variant | p50 | p90 | p99 | max |', '| --- | --- | ---: | ---: | ---: | ---: |');
    for (const c of data.latency) for (const v of c.variants) lines.push(`| ${c.name} | ${v.variant} | ${fmt(v.p50)} | ${fmt(v.p90)} | ${fmt(v.p99)} | ${fmt(v.max)} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const value = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  const pattern = value('--filter');
  process.exitCode = await runBench({
    quick: argv.includes('--quick'), json: argv.includes('--json'), list: argv.includes('--list'),
    filter: pattern === undefined ? undefined : (name) => name.includes(pattern),
    report: value('--report'), svgDir: value('--svg'),
  });
}
