import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dist = join(__dirname, '..', 'dist');

describe('platform', () => {
  it('on a platform other than Linux, the package loads and every call throws ERR_DEVMAP_UNSUPPORTED_PLATFORM', () => {
    const script = `
      Object.defineProperty(process, 'platform', { value: 'darwin' });
      const d = require(${JSON.stringify(dist)});
      const codes = [];
      for (const call of [() => d.mapAnonymous(1), () => d.SharedMemory.memfd('x', 1), () => d.SharedMemory.create('x', 1),
                          () => d.SharedMemory.open('x'), () => d.mapFile(require.resolve(${JSON.stringify(dist)}))]) {
        try { call(); codes.push('no error'); } catch (e) { codes.push(e.code); }
      }
      process.stdout.write(JSON.stringify({ codes, pageSize: d.pageSize }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
    expect(out.codes).toEqual(Array(5).fill('ERR_DEVMAP_UNSUPPORTED_PLATFORM'));
    expect(out.pageSize).toBeGreaterThan(0);
  });

  it('loads as an ES module and as CommonJS, with the same objects', () => {
    const script = `
      import * as esm from ${JSON.stringify(join(dist, 'index.mjs'))};
      import { createRequire } from 'node:module';
      const cjs = createRequire(import.meta.url)(${JSON.stringify(join(dist, 'index.js'))});
      const same = Object.keys(cjs).every((k) => esm[k] === cjs[k]) && esm.default === cjs;
      const m = esm.mapAnonymous(4096);
      new Uint8Array(m.buffer)[0] = 1;
      m.unmap();
      process.stdout.write(JSON.stringify({ same, count: Object.keys(cjs).length }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
    expect(out.same).toBe(true);
    expect(out.count).toBeGreaterThan(10);
  });
});
