// Node ↔ Python through multiprocessing.shared_memory, both ways, with the script docs/guide-sharing.md shows.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SharedMemory } from '../../lib';
import { fixture, run } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

const script = fixture('interop-python.py');

describe('Node ↔ Python multiprocessing.shared_memory', () => {
  it('Python opens a segment devmap created, reads it and writes back; the tracker leaves it alone', async () => {
    const name = uniqueName('py');
    using shm = SharedMemory.create(name, 4096);
    const m = shm.map();
    try {
      const bytes = new Uint8Array(m.buffer);
      bytes.set(new TextEncoder().encode('hello from node'));
      const r = await run('python3', [script, 'open', name]);
      expect(r.stderr).toBe(''); // no resource_tracker "leaked shared_memory" warning
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('hello from node (4096 bytes)\n');
      expect(new TextDecoder().decode(bytes.subarray(64, 75))).toBe('from python');
      expect(existsSync(`/dev/shm/${name}`)).toBe(true); // Python's exit did not unlink it
    } finally {
      m.unmap();
      shm.unlink();
    }
  });

  it('devmap opens a segment Python created', async () => {
    const name = uniqueName('py');
    const r = await run('python3', [script, 'create', name]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    using shm = SharedMemory.open(name);
    shm.unlink(); // our job now: Python left it for us
    const m = shm.map();
    expect(shm.size).toBe(4096);
    expect(new TextDecoder().decode(new Uint8Array(m.buffer, 0, 13))).toBe('hello from py');
    m.unmap();
  });

  it('the guide shows this very script', () => {
    const guide = readFileSync(join(__dirname, '..', '..', 'docs', 'guide-sharing.md'), 'utf8');
    const body = readFileSync(script, 'utf8').split('\n').slice(3).join('\n').trim(); // without the header comment
    expect(guide).toContain(body);
  });
});
