// A small benchmark harness: every case has variants (the JS path and its C baseline, at least) that run in
// the same process and are interleaved repetition by repetition, so drift (frequency scaling, another
// process) hits all variants alike. Each repetition times a batch and records ns per operation; the report
// gives the median, the spread (min..max of repetitions) and the ratio of each variant to the baseline.
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { goalCell } from './goals.mjs';

export const now = () => Number(process.hrtime.bigint());

/** Times `batch(n)` (which runs n operations) and returns ns per operation. */
export function perOp(batch, n) {
  const t0 = now();
  batch(n);
  return (now() - t0) / n;
}

/** Times `await batch(n)` and returns ns per operation. */
export async function perOpAsync(batch, n) {
  const t0 = now();
  await batch(n);
  return (now() - t0) / n;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * @typedef {(n: number) => number | Promise<number>} Variant  runs n operations, returns ns per operation
 * @typedef {object} Case
 * @property {string} name
 * @property {Record<string, Variant>} variants  the JS path(s) and the baseline(s), by label
 * @property {string} baseline  the label the ratios are against
 * @property {number} n  operations per batch
 * @property {number} [reps]  repetitions (default 15)
 * @property {number} [warmup]  repetitions run first and dropped (default 2)
 * @property {string} [goal]  the ratio the case should reach, "≤ 1.3×" (bench/goals.mjs says for which variants)
 * @property {string[]} [goalVariants]  the variants the goal is for, when its words do not say
 * @property {string} [baselineSyscalls]  the system calls the baseline makes, for the report
 * @property {(name: string, done: number, total: number) => void} [onProgress]
 * @typedef {{ variant: string, medianNs: number, minNs: number, maxNs: number, ratio: number }} Row
 * @typedef {{ name: string, baseline: string, n: number, reps: number, goal?: string, goalVariants?: string[], rows: Row[], samples: Record<string, number[]> }} Result
 */

/**
 * Runs one case. `variants` maps a label to a function (n) => nsPerOp, or a Promise of it (a C baseline returns
 * its own timing; a JS variant is usually perOp(fn, n) or perOpAsync(fn, n)). `baseline` names the variant the
 * ratios are against.
 * @param {Case} c
 * @returns {Promise<Result>}
 */
export async function runCase({ name, variants, baseline, n, reps = 15, warmup = 2, goal, goalVariants, onProgress }) {
  const labels = Object.keys(variants);
  const samples = /** @type {Record<string, number[]>} */ (Object.fromEntries(labels.map((l) => [l, []])));
  for (let r = -warmup; r < reps; r++) {
    for (const l of labels) {
      const ns = await variants[l](n);
      // Yield to the event loop between batches, as a program does: finalizers run and objects a WeakRef has
      // seen are released, so one variant's garbage does not tax the next one's collections.
      await new Promise((r) => setImmediate(r));
      if (r >= 0) samples[l].push(ns);
    }
    onProgress?.(name, r + warmup + 1, reps + warmup);
  }
  const base = median(samples[baseline]);
  const rows = labels.map((l) => {
    const med = median(samples[l]);
    return { variant: l, medianNs: med, minNs: Math.min(...samples[l]), maxNs: Math.max(...samples[l]), ratio: med / base };
  });
  // samples: every repetition's ns/op per variant, for distributions (bench/report.mjs).
  return { name, baseline, n, reps, goal, goalVariants, rows, samples };
}

/** The machine's page size, from the built package (undefined when dist/ has not been compiled). */
function pageSizeOf() {
  try {
    return createRequire(import.meta.url)('../dist/index.js').pageSize;
  } catch {
    return undefined;
  }
}

export function machine() {
  let kernel = os.release();
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {}
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    kernel,
    node: process.version,
    pageSize: pageSizeOf(),
    date: new Date().toISOString().slice(0, 10),
  };
}

const fmt = (ns) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(1)} ns`);

/** 1.57×; below 0.1 also how many times faster (0.0016× = 620× faster). */
export const fmtRatio = (r) => (r >= 0.1 ? `${r.toFixed(2)}×` : `${r.toPrecision(2)}× (${(1 / r).toFixed(0)}× faster)`);

/** A markdown table of results; the goal column marks each goal met or missed for the variants it is for. */
export function markdown(results) {
  const lines = ['| case | variant | median / op | min..max | ratio | goal |', '| --- | --- | --- | --- | --- | --- |'];
  for (const r of results) {
    for (const row of r.rows) {
      const ratio = row.variant === r.baseline ? '1.00 (baseline)' : fmtRatio(row.ratio);
      lines.push(`| ${r.name} | ${row.variant} | ${fmt(row.medianNs)} | ${fmt(row.minNs)}..${fmt(row.maxNs)} | ${ratio} | ${goalCell(r, row.variant)} |`);
    }
  }
  return lines.join('\n');
}
