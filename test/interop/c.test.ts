// Node ↔ C: a C program, compiled here, maps a segment devmap created with shm_open + mmap (docs/guide-sharing.md).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedMemory } from '../../lib';
import { fixture, run } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

const source = fixture('interop-c.c');
let dir = '';
let program = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'devmap-interop-'));
  program = join(dir, 'interop-c');
  const cc = await run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', program, source]);
  expect(cc.stderr).toBe('');
  expect(cc.code).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Node ↔ C', () => {
  it('a C program maps a devmap segment, reads it and writes back', async () => {
    const name = uniqueName('c');
    using shm = SharedMemory.create(name, 8192);
    const m = shm.map();
    try {
      const bytes = new Uint8Array(m.buffer);
      bytes.set(new TextEncoder().encode('hello from node'));
      const r = await run(program, [name]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('hello from node (8192 bytes)\n');
      expect(new TextDecoder().decode(bytes.subarray(64, 70))).toBe('from C');
      expect(bytes[70]).toBe(0);
    } finally {
      m.unmap();
      shm.unlink();
    }
  });

  it('reports a missing segment as shm_open failing', async () => {
    const r = await run(program, [uniqueName('missing')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('shm_open: No such file or directory\n');
  });

  it('the guide shows this very program', () => {
    const guide = readFileSync(join(__dirname, '..', '..', 'docs', 'guide-sharing.md'), 'utf8');
    const body = readFileSync(source, 'utf8').split('\n').slice(3).join('\n').trim();
    expect(guide).toContain(body);
  });
});
