/*
 * devmap bench: validates its options here and runs the suite in bench/run.mjs (shipped in the package),
 * which measures every case beside its C baseline and writes the report.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse, UsageError } from './args';
import type { Command } from './command';

export const bench: Command = {
  name: 'bench',
  summary: 'run the benchmark suite beside its C baselines; --report writes an HTML page',
  help: `Usage: devmap bench [--quick] [--filter PATTERN] [--json] [--report FILE] [--svg DIR] [--list]

Runs devmap's benchmarks, each beside its C baseline in the same process and run: memory (map/unmap,
shm create, file mapping, first touch, fill), the simulated kernel (mmap through an IRIX driver,
kmem_alloc), cross-process sync (ping-pong, Mutex), resource maps (both policies and the C array walk,
scaling with free ranges) and per-operation latency distributions (faults, map/unmap, ping-pong). Repetitions of the variants of a case are interleaved; medians,
spread (min..max) and the ratio to the baseline are reported. Progress goes to stderr.

Takes about a minute on a 2-core machine; --quick takes a few seconds (less precise).

Options:
  --quick           fewer, shorter repetitions
  --filter PATTERN  only cases whose "suite: name" contains PATTERN, or matches it as /regex/flags
  --json            print the results as JSON instead of a markdown table
  --report FILE     also write a self-contained HTML report (charts inline, no network needed)
  --svg DIR         also write the charts as SVG files into DIR (bench-rmap-scaling.svg, bench-latency.svg,
                    bench-ratios.svg), as BENCHMARKS.md shows them
  --list            list the cases and exit
`,
  async run(argv) {
    const { values, positionals } = parse('bench', argv, {
      quick: { type: 'boolean' }, filter: { type: 'string' }, json: { type: 'boolean' },
      report: { type: 'string' }, svg: { type: 'string' }, list: { type: 'boolean' },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`, 'bench');
    for (const key of ['report', 'svg', 'filter'] as const) {
      if (values[key] === '') throw new UsageError(`--${key} needs a value`, 'bench');
    }
    const filter = values.filter === undefined ? undefined : matcher(values.filter as string);
    const runner = join(__dirname, '..', '..', 'bench', 'run.mjs');
    if (!existsSync(runner)) throw new Error(`the benchmark suite is missing: ${runner}`);
    const { runBench } = (await importEsm(pathToFileURL(runner).href)) as { runBench(o: object): Promise<number> };
    return runBench({
      quick: values.quick === true, filter, json: values.json === true, list: values.list === true,
      report: values.report, svgDir: values.svg,
    });
  },
};

/** "/re/flags" is a regular expression; anything else is a plain substring. */
export function matcher(pattern: string): (name: string) => boolean {
  const re = /^\/(.+)\/([a-z]*)$/.exec(pattern);
  if (re === null) return (name) => name.includes(pattern);
  let regex: RegExp;
  try {
    regex = new RegExp(re[1], re[2]);
  } catch (err) {
    throw new UsageError(`--filter: ${(err as Error).message}`, 'bench');
  }
  return (name) => regex.test(name);
}

/*
 * bench/*.mjs are ES modules and this file compiles to CommonJS, where TypeScript rewrites import() into
 * require() (which cannot load ESM on Node 20). A Function body is not rewritten, so this is Node's own
 * dynamic import.
 */
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;
