// The README's code blocks run: each ```js / ```ts block under "Use", "Resource maps" and "the simulated
// kernel" is extracted, compiled as TypeScript and executed against the built package.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'devmap-test-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const blocks = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/```(?:js|ts)\n([\s\S]*?)```/g)].map((m) => m[1]);

describe('README code', () => {
  it('has the usage blocks', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(3);
  });

  it.each(blocks.map((b, i) => [i, b]))('block %i runs', (i, code) => {
    // Run as an async CommonJS module that resolves 'devmap' to this checkout's build.
    const source = (code as string)
      .replace(/from 'devmap'/g, `from ${JSON.stringify(join(root, 'dist', 'index.js'))}`)
      .replace(/require\('devmap'\)/g, `require(${JSON.stringify(join(root, 'dist', 'index.js'))})`)
      .replace(/'\/tmp\/data\.bin'/g, JSON.stringify(join(dir, `data-${i}.bin`)))
      .replace(/SharedMemory\.create\('([^']+)'/g, `SharedMemory.create('devmap-test-readme-${process.pid}-${i}-$1'`)
      .replace(/'my-segment'/g, `'devmap-test-readme-${process.pid}-${i}-my-segment'`);
    const hoisted = source.split('\n').filter((l) => l.startsWith('import ')).join('\n');
    const body = source.split('\n').filter((l) => !l.startsWith('import ')).join('\n');
    const js = ts.transpileModule(`${hoisted}\nexport {};\n(async () => {\n${body}\n})().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const file = join(dir, `block-${i}.cjs`);
    writeFileSync(file, js);
    execFileSync(process.execPath, [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  });
});
