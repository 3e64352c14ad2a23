/*
 * The documentation runs as written. Every ```js block of README.md and of the guides (docs/guide-*.md) is
 * saved as a file and run by this Node as plain JavaScript, exactly as printed: as CommonJS, or as an ES
 * module when it has `import` statements. The suite's own run uses the system Node, the oldest supported line
 * (checked below), so a block that needs a newer Node's syntax fails here; under scripts/node-matrix.mjs the
 * same blocks run on every line. Every ```ts block is type-checked as a user's `tsc --strict` would check it,
 * then transpiled and run the same way. `devmap` resolves as in a user's project: through
 * node_modules/devmap (a link to this checkout) and the package's `exports`.
 *
 * What the pages agree to, so that this test can run them:
 * - A block whose first line is a comment naming a file (`// reader.js`, `# interop-python.py`) is that file,
 *   saved under its name beside the page's other blocks. A named file that another block of the page mentions
 *   in quotes ('reader.js') is run by that block, not on its own.
 * - ```js fragment / ```ts fragment marks a piece of a larger program, shown for its shape: it is not run.
 * - Each runnable block runs twice: the second run fails (EEXIST, O_EXCL) if the first left a segment or a
 *   file behind, so the examples clean up after themselves. It must exit 0 with nothing on stderr, and print
 *   at least one line per `console.log` it contains.
 * Segment names (every name given to SharedMemory.create/open) become names of this run, and /tmp/data.bin a
 * file of its own, so concurrent runs of the suite never meet.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { runPrefix, trackLeaks } from './helpers/leaks';

trackLeaks();

const root = join(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'devmap-test-docs-'));
mkdirSync(join(work, 'node_modules'));
symlinkSync(root, join(work, 'node_modules', 'devmap'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Block {
  page: string;
  index: number;
  lang: string;
  fragment: boolean;
  code: string;
  /** The file name the block's first line gives it, if any. */
  file?: string;
}

const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => /^guide-.*\.md$/.test(f)).map((f) => `docs/${f}`)];

function blocksOf(page: string): Block[] {
  const text = readFileSync(join(root, page), 'utf8');
  return [...text.matchAll(/^```(\w+)([^\n]*)\n([\s\S]*?)^```$/gm)].map((m, index) => {
    const file = /^(?:\/\/|#|\/\*)\s*([\w.-]+\.(?:m?js|cjs|py|c))\b/.exec(m[3])?.[1];
    return { page, index, lang: m[1], fragment: /\bfragment\b/.test(m[2]), code: m[3], file };
  });
}

const all = pages.flatMap(blocksOf);
const code = (b: Block) => b.lang === 'js' || b.lang === 'ts';
const isModule = (source: string) => /^\s*(import|export)\s/m.test(source);

/** The block with this run's segment names and temporary file, as it will be saved. */
function localize(b: Block, names: string[], dir: string): string {
  let source = b.code.replace(/'\/tmp\/data\.bin'/g, JSON.stringify(join(dir, 'data.bin')));
  for (const name of names) source = source.split(`'${name}'`).join(`'${runPrefix}${process.pid}-${name}'`);
  return source;
}

/** The segment names a page uses: every string given to SharedMemory.create() or .open(). */
function segmentNames(blocks: Block[]): string[] {
  const names = new Set<string>();
  for (const b of blocks) for (const m of b.code.matchAll(/SharedMemory\.(?:create|open)\('([^']+)'/g)) names.add(m[1]);
  return [...names];
}

/** A block's file name in the page's directory: its own name, or one made from its place on the page. */
function fileName(b: Block, source: string): string {
  const ext = b.lang === 'ts' || isModule(source) ? '.mjs' : '.cjs';
  return b.file ?? `block-${b.index}${ext}`;
}

/** Saves every block of a page into its own directory; returns what to run. */
function preparePage(page: string) {
  const blocks = all.filter((b) => b.page === page);
  const dir = join(work, page.replace(/[/.]/g, '-'));
  mkdirSync(dir, { recursive: true });
  const names = segmentNames(blocks);
  const runs: { block: Block; file: string }[] = [];
  for (const b of blocks) {
    let source = localize(b, names, dir);
    if (b.lang === 'ts') {
      writeFileSync(join(dir, `block-${b.index}.mts`), source);
      source = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    }
    if (!code(b) && b.file === undefined) continue;
    const file = fileName(b, source);
    writeFileSync(join(dir, file), source);
    if (code(b) && !b.fragment) runs.push({ block: b, file });
  }
  // A named file another block starts ('reader.js') runs from there.
  const started = (r: { block: Block }) =>
    r.block.file !== undefined && blocks.some((o) => o !== r.block && o.code.includes(`'${r.block.file}'`));
  return { dir, runs: runs.filter((r) => !started(r)) };
}

function run(dir: string, file: string) {
  const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

describe('the documentation', () => {
  it('runs on the oldest Node the package supports (unless the Node matrix chose another)', () => {
    const floor = /(\d+)\.(\d+)/.exec(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node)!;
    if (process.env.DEVMAP_NODE_MATRIX_ADDON_EXPECTED !== undefined) return;
    expect(Number(process.versions.node.split('.')[0]), 'the suite should run on the engines floor line').toBe(Number(floor[1]));
  });

  it('has the blocks this test expects: README usage, every guide', () => {
    expect(all.filter((b) => b.page === 'README.md' && code(b) && !b.fragment).length).toBeGreaterThanOrEqual(6);
    expect(pages).toEqual(expect.arrayContaining(['docs/guide-sharing.md', 'docs/guide-performance.md', 'docs/guide-drivers.md']));
  });

  it('links its table of contents to headings that exist (GitHub anchors), and lists every section', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8').replace(/^```[\s\S]*?^```$/gm, '');
    const slug = (h: string) => h.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const headings = [...readme.matchAll(/^#{2,3} (.+)$/gm)].map((m) => m[1]);
    const contents = readme.slice(readme.indexOf('## Contents'), readme.indexOf('\n## ', readme.indexOf('## Contents') + 1));
    const anchors = [...contents.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]);
    expect(anchors.filter((a) => !headings.map(slug).includes(a))).toEqual([]);
    const sections = headings.filter((h) => readme.includes(`\n## ${h}\n`) && h !== 'Contents').map(slug);
    expect(sections.filter((s) => !anchors.includes(s))).toEqual([]);
  });

  it('uses `using` only in TypeScript blocks (plain JavaScript has it only from Node 24)', () => {
    const offending = all.filter((b) => b.lang === 'js' && /^\s*(await\s+)?using\s+\w+\s*=/m.test(b.code));
    expect(offending.map((b) => `${b.page} block ${b.index}`)).toEqual([]);
  });

  it('prints the Python side of guide-sharing exactly as test/interop runs it', () => {
    const shown = all.find((b) => b.page === 'docs/guide-sharing.md' && b.file === 'interop-python.py');
    const fixture = readFileSync(join(root, 'test', 'fixtures', 'interop-python.py'), 'utf8').replace(/^(#[^\n]*\n)+/, '');
    expect(shown?.code.replace(/^#[^\n]*\n/, '')).toBe(fixture);
  });

  it('type-checks every TypeScript block under --strict against the shipped declarations', () => {
    const files: string[] = [];
    for (const page of pages) {
      const { dir } = preparePage(page);
      for (const b of all.filter((x) => x.page === page && x.lang === 'ts' && !x.fragment)) files.push(join(dir, `block-${b.index}.mts`));
    }
    expect(files.length).toBeGreaterThan(0);
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
      types: ['node'],
      typeRoots: [join(root, 'node_modules', '@types')],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? `${d.file.fileName.slice(work.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
      return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    expect(problems).toEqual([]);
  }, 60_000);

  // A page of fragments only (docs/guide-drivers.md today) has nothing to run; its TypeScript is checked above.
  describe.each(pages.filter((p) => preparePage(p).runs.length > 0))('%s', (page) => {
    const { dir, runs } = preparePage(page);
    it.each(runs.map((r) => [`block ${r.block.index} (${r.block.lang}, ${r.file})`, r.file]))('%s runs as written, twice', (_label, file) => {
      const source = readFileSync(join(dir, file as string), 'utf8');
      const prints = source.match(/console\.log\(/g)?.length ?? 0;
      for (const attempt of [1, 2]) {
        const r = run(dir, file as string);
        expect({ attempt, status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ attempt, status: 0, signal: null, stderr: '' });
        // A block that prints shows its output: a handler registered after the events (or a promise that
        // never settles) prints nothing.
        expect(r.stdout.split('\n').length - 1, `${file} printed:\n${r.stdout}`).toBeGreaterThanOrEqual(prints);
      }
    }, 120_000);
  });
});
