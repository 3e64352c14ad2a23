// How `devmap bench` presents its results (bench/goals.mjs, bench/report.mjs, bench/outputs.mjs): every goal
// marked met or missed, charts that name their baselines, labels never cut, a legend for the bars, and the
// output paths checked before anything runs. Rendering is tested on a results document made here (no
// timing decides anything); the path checks run the real CLI.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devmap } from './cli/devmap';
import { trackLeaks } from './helpers/leaks';

trackLeaks();

const root = join(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'devmap-test-bench-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Row = { variant: string; medianNs: number; minNs: number; maxNs: number; ratio: number };
type Result = { suite: string; name: string; baseline: string; goal?: string; goalVariants?: string[]; rows: Row[] };
type Verdict = { goal: string; limit: number; op: string; met: boolean };
interface Goals {
  parseGoal(text: string | undefined, baseline: string): { op: string; limit: number; qualifier: string } | null;
  verdicts(result: Result): Map<string, Verdict>;
}
interface Report {
  htmlReport(data: object): string;
  ratioSvg(data: object): string;
  latencySvg(data: object): string;
  textWidth(s: string, size?: number): number;
}

let goals: Goals;
let report: Report;
let markdown: (results: Result[]) => string;
const esm = (file: string) => import(pathToFileURL(join(root, 'bench', file)).href);
beforeAll(async () => {
  goals = await esm('goals.mjs');
  report = await esm('report.mjs');
  markdown = (await esm('harness.mjs')).markdown;
});

const row = (variant: string, ratio: number): Row => ({ variant, medianNs: 1000 * ratio, minNs: 900 * ratio, maxNs: 1100 * ratio, ratio });
const LONG = 'devmap wait/notify, spin default, { waiters }, with a label long enough that any fixed margin would have cut it';

const RESULTS: Result[] = [
  { suite: 'memory', name: 'map+unmap 64 KiB', baseline: 'C mmap+munmap', goal: '≤ 1.3×', rows: [row('C mmap+munmap', 1), row('devmap mapAnonymous().unmap()', 1.2)] },
  { suite: 'kernel', name: 'through the devmap framework', baseline: 'C mmap+munmap', goal: '≤ 3× (1 handle)', rows: [row('C mmap+munmap', 1), row('devmap framework, 1 handle', 3.5), row('devmap framework, 8 handles', 8)] },
  { suite: 'kernel', name: 'through an IRIX driver', baseline: 'C mmap+munmap', goal: '≤ 3×', rows: [row('C mmap+munmap', 1), row('C MAP_FIXED re-reserve', 0.4), row('kernel mmap+munmap', 2.5)] },
  { suite: 'srmap', name: 'rmalloc+rmfree pair', baseline: 'in-process', goal: 'shared ≤ 2× in-process', rows: [row('in-process', 1), row('shared', 1.5), row('Mutex floor (2 × lock+unlock)', 3)] },
  { suite: 'sync', name: 'ping-pong against Node IPC', baseline: 'process.send', goal: '≤ 0.1×', rows: [row('process.send', 1), row(LONG, 0.05)] },
  { suite: 'kernel', name: 'kmem_alloc+kmem_free', baseline: 'kmem_alloc+kmem_free', rows: [row('kmem_alloc+kmem_free', 1), row('kmem_alloc+kmem_free (1 page)', 1.2)] },
];

const samples = Array.from({ length: 200 }, (_, i) => 1000 + i * 10);
const DATA = {
  machine: { cpu: 'test CPU', cores: 2, kernel: '6.0', node: process.version, pageSize: 4096, date: '2026-12-01', load: [1, 1, 1] },
  seconds: 1,
  quick: false,
  results: RESULTS,
  scaling: null,
  latency: [{ name: 'one round trip', variants: [{ variant: LONG, samples, p50: 2000, p90: 2800, p99: 2980, max: 2990 }] }],
};

/** The verdict of each judged variant, as "variant: met|missed". */
const judged = (r: Result) => [...goals.verdicts(r)].map(([v, x]) => `${v}: ${x.met ? 'met' : 'missed'}`);

describe('goals', () => {
  it('judge the variants their words name, else every variant that is not a C reference', () => {
    expect(judged(RESULTS[0])).toEqual(['devmap mapAnonymous().unmap(): met']);
    expect(judged(RESULTS[1])).toEqual(['devmap framework, 1 handle: missed']);
    expect(judged(RESULTS[2])).toEqual(['kernel mmap+munmap: met']);
    expect(judged(RESULTS[3])).toEqual(['shared: met']);
    expect(judged(RESULTS[4])).toEqual([`${LONG}: met`]);
    expect(judged(RESULTS[5])).toEqual([]);
    expect(judged({ ...RESULTS[1], goalVariants: ['devmap framework, 8 handles'] })).toEqual(['devmap framework, 8 handles: missed']);
    expect(judged({ ...RESULTS[4], goal: '≥ 10×' })).toEqual([`${LONG}: missed`]);
  });

  it('every goal a benchmark case states can be judged', () => {
    const stated = readdirSync(join(root, 'bench'))
      .filter((f) => f.endsWith('.mjs'))
      .flatMap((f) => [...readFileSync(join(root, 'bench', f), 'utf8').matchAll(/\bgoal: '([^']+)'/g)].map((m) => m[1]));
    expect(stated.length).toBeGreaterThan(5);
    expect(stated.filter((g) => goals.parseGoal(g, 'baseline') === null)).toEqual([]);
  });

  it('the markdown table (BENCHMARKS.md, the default output) marks each one met or missed', () => {
    const md = markdown(RESULTS);
    expect(md).toContain('| ≤ 1.3×: met |');
    expect(md).toContain('| ≤ 3× (1 handle): missed |');
    expect(md.match(/: (met|missed) \|/g)).toHaveLength(5);
  });
});

describe('the HTML report', () => {
  it('lists every goal with its verdict, and says how many were met', () => {
    const html = report.htmlReport(DATA);
    expect(html).toContain('<h2>Goals: 4 met, 1 missed</h2>');
    expect(html.match(/<td class="(met|missed)">/g)).toHaveLength(10); // the goals table and the ratio table
    expect(html).toContain('<td class="missed">≤ 3× (1 handle): missed</td>');
  });
});

describe('the ratio chart', () => {
  it('names every baseline, not only C ones', () => {
    const svg = report.ratioSvg(DATA);
    for (const b of ['C mmap+munmap', 'in-process', 'process.send', 'kmem_alloc+kmem_free']) expect(svg).toContain(b);
    expect(svg).toContain('against process.send');
    expect(svg).not.toMatch(/C baseline/);
  });

  it('has a legend for the bars and the goal tick, and a verdict beside each judged bar', () => {
    const svg = report.ratioSvg(DATA);
    expect(svg).toContain('faster than the baseline');
    expect(svg).toContain('slower than the baseline');
    expect(svg).toContain("the case&#39;s goal");
    expect(svg.match(/, <tspan[^>]*>(met|missed)<\/tspan>/g)).toHaveLength(5);
  });

  it('cuts no label, and makes room for the longest', () => {
    const svg = report.ratioSvg(DATA);
    expect(svg).not.toContain('…');
    expect(svg).toContain(`>${LONG}</text>`);
    const width = Number(/width="(\d+)"/.exec(svg)![1]);
    expect(width).toBeGreaterThanOrEqual(report.textWidth(LONG, 11) + 380);
  });
});

describe('the latency chart', () => {
  it('cuts no legend label', () => {
    const svg = report.latencySvg(DATA);
    expect(svg).not.toContain('…');
    expect(svg).toContain(`>${LONG}</text>`);
  });
});

describe('devmap bench output paths', () => {
  // A quick case that would print its table (stdout) and its progress (stderr) if it ran.
  const CASE = ['--quick', '--filter', 'kmem_alloc+kmem_free (256'];

  it.each([
    ['a report in a directory that does not exist', () => ['--report', join(dir, 'missing', 'r.html')], 'does not exist'],
    ['a report path that is a directory', () => ['--report', dir], 'is a directory'],
    ['an SVG directory under a regular file', () => {
      writeFileSync(join(dir, 'plain'), '');
      return ['--svg', join(dir, 'plain', 'svg')];
    }, 'is not a directory'],
  ])('refuses %s before any case runs', async (_what, args, message) => {
    const r = await devmap('bench', ...CASE, ...args());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe(''); // no table: nothing was measured
    expect(r.stderr).not.toContain('kmem_alloc');
  });

  it('accepts a report in an existing directory and an SVG directory it can make', async () => {
    mkdirSync(join(dir, 'ok'));
    const r = await devmap('bench', ...CASE, '--report', join(dir, 'ok', 'r.html'), '--svg', join(dir, 'ok', 'new', 'svg'));
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(dir, 'ok', 'r.html'), 'utf8')).toMatch(/^<!doctype html>/);
  });
});
