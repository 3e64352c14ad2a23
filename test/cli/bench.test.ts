// devmap bench, run for real on a few quick cases: options, the JSON document, the HTML report and the SVGs.
// Nothing here depends on how fast the machine is: only on the shape of what is produced.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { devmap } from './devmap';

const dir = mkdtempSync(join(tmpdir(), 'devmap-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// One case of each kind: a harness case (kernel), one map size of the resource maps, one latency case.
const FILTER = '/kmem_alloc|with 16 free|map\\+view\\+unmap 64 KiB anonymous shared, one call/';

describe('devmap bench', () => {
  it('--list names the cases of every suite without running them', async () => {
    const r = await devmap('bench', '--list');
    expect(r.code, r.stderr).toBe(0);
    const names = r.stdout.trim().split('\n');
    expect(names).toContain('memory: fill 64 MiB (memset)');
    expect(names).toContain('kernel: kmem_alloc+kmem_free (256 bytes, KM_NOSLEEP)');
    expect(names).toContain('rmap: rmalloc(3)+rmfree(3) with 100000 free ranges');
    expect(names).toContain('latency: page fault: first write to a page of a shared mapping');
    expect(names).toContain('latency: cross-process ping-pong, one round trip (wait/notify)');
    expect(names.some((n) => n.startsWith('sync: '))).toBe(true);
    const filtered = await devmap('bench', '--list', '--filter', FILTER);
    expect(filtered.stdout.trim().split('\n')).toEqual([
      'kernel: kmem_alloc+kmem_free (256 bytes, KM_NOSLEEP)',
      'latency: map+view+unmap 64 KiB anonymous shared, one call',
      'rmap: rmalloc(3)+rmfree(3) with 16 free ranges',
    ]);
  });

  it('runs the picked cases beside their baselines and writes JSON, HTML and SVG', async () => {
    const report = join(dir, 'report.html');
    const svgDir = join(dir, 'svg');
    const r = await devmap('bench', '--quick', '--filter', FILTER, '--json', '--report', report, '--svg', svgDir);
    expect(r.code, r.stderr).toBe(0);
    // Progress on stderr, one line per case when stderr is not a terminal.
    expect(r.stderr).toContain('kernel: kmem_alloc+kmem_free (256 bytes, KM_NOSLEEP)\n');
    const data = JSON.parse(r.stdout);
    expect(Object.keys(data.machine)).toEqual(expect.arrayContaining(['cpu', 'cores', 'kernel', 'node', 'pageSize', 'load']));
    expect(data.machine.node).toBe(process.version);
    expect(data.results.map((x: { suite: string; name: string }) => `${x.suite}: ${x.name}`)).toEqual([
      'kernel: kmem_alloc+kmem_free (256 bytes, KM_NOSLEEP)',
      'rmap: rmalloc(3)+rmfree(3) with 16 free ranges',
    ]);
    for (const result of data.results) {
      const base = result.rows.find((row: { variant: string }) => row.variant === result.baseline);
      expect(base.ratio).toBe(1);
      for (const row of result.rows) {
        expect(row.minNs).toBeLessThanOrEqual(row.medianNs);
        expect(row.medianNs).toBeLessThanOrEqual(row.maxNs);
        expect(row.ratio).toBeCloseTo(row.medianNs / base.medianNs, 9);
      }
    }
    expect(data.results[1].rows.map((row: { variant: string }) => row.variant)).toEqual(['C array walk', 'JS array walk', 'devmap classic', 'devmap illumos']);
    expect(data.latency).toHaveLength(1);
    expect(data.latency[0].variants.map((v: { variant: string }) => v.variant)).toEqual(['C mmap+munmap', 'devmap mapAnonymous + Uint8Array + unmap']);

    const html = readFileSync(report, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain(`<th>Node</th><td>${process.version}</td>`);
    expect(html.match(/<svg /g)).toHaveLength(3);
    // Self-contained: nothing to fetch (the only URL is the SVG namespace, which is never fetched).
    expect(html).not.toMatch(/<script|<link|src=|href=|url\(/);
    expect(html.replaceAll('http://www.w3.org/2000/svg', '')).not.toContain('http');
    for (const file of ['bench-rmap-scaling.svg', 'bench-latency.svg', 'bench-ratios.svg']) {
      expect(readFileSync(join(svgDir, file), 'utf8')).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^]*<\/svg>\n$/);
    }
  });

  it('prints a markdown table by default', async () => {
    const r = await devmap('bench', '--quick', '--filter', 'kmem_alloc');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Machine: .*, \d+ cores, Linux .*, Node v\d+/);
    expect(r.stdout).toContain('| kernel: kmem_alloc+kmem_free (256 bytes, KM_NOSLEEP) | kmem_alloc+kmem_free | ');
    expect(r.stdout).toContain('1.00 (baseline)');
  });

  it('exits 1 when no case matches', async () => {
    const r = await devmap('bench', '--quick', '--filter', 'no such case');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no case matches the filter');
  });

  it.each([
    [['--filter', '/[/'], '--filter: Invalid regular expression'],
    [['--filter'], "option '--filter <value>' argument missing"],
    [['--report', ''], '--report needs a value'],
    [['--repot', 'x.html'], 'unknown option --repot (did you mean --report?)'],
    [['extra'], "unexpected argument 'extra'"],
  ])('refuses bad input %j', async (args, message) => {
    const r = await devmap('bench', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(existsSync(join(dir, 'x.html'))).toBe(false);
  });
});
