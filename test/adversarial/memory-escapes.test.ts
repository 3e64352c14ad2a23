// Adversarial cases for the memory layer (issue 12, classes 1, 2, 3, 5, 10), each in a child process that
// must exit normally with no signal: a peer truncating the object, this process shrinking it, views held by
// the thread pool and moved by BYOB streams across unmap, option getters that unmap, Workers terminated at
// random points.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();
const dir = mkdtempSync(join(tmpdir(), 'devmap-test-adv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function scenario(name: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, ['--expose-gc', fixture('memory-adversary.cjs'), name, dir], { encoding: 'utf8', timeout: 60_000 });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('memory under attack', () => {
  it('a peer truncating a mapped file costs the Mapping: the lost page reads zeros, the next call is ERR_DEVMAP_TRUNCATED, unmap works', () => {
    expect(scenario('peer-truncates')).toEqual({ before: 7, lost: 0, truncated: true, next: 'ERR_DEVMAP_TRUNCATED', unmap: null });
  });

  it('SharedMemory#resize shrinking under a viewed mapping takes the pages away first (no SIGBUS); map() sizes from the object now', () => {
    expect(scenario('own-shrink')).toEqual({ value: 1, next: 'ERR_DEVMAP_TRUNCATED', remap: 1024 });
  });

  it('crypto.randomFill, zlib.deflate and a deflate stream on views unmapped while the request runs: no fault in a pool thread, no abort in zlib', () => {
    expect(scenario('thread-pool')).toEqual({ done: 96 });
  });

  it('a BYOB read moves a view\'s store out; after unmap it stays safe to touch (trash pages, kept until it is collected)', () => {
    expect(scenario('byob')).toEqual({ read: 9, after: 5, still: 5 });
  });

  it('ArrayBuffer.prototype.transfer from another realm (where it exists) is safe within the thread', () => {
    const r = scenario('transfer-other-realm');
    if (r.hasTransfer) expect(r.moved).toBe(3);
  });

  it('protect() below read+write while a thread-pool request, a BYOB read\'s store and another realm\'s transfer() reach the pages: no fault, their writes land, the kernel gets it once they are gone', () => {
    const r = scenario('protect-escapes');
    expect(r.pool).toBe(24);
    expect(r.byob).toEqual([9, 5]);
    if (r.transfer !== undefined) expect(r.transfer).toBe(3);
    const kernel = r.kernel as string[];
    expect(kernel.slice(0, 8)).toEqual(['r--', '---', 'r--', '---', 'r--', '---', 'r--', '---']);
    expect(kernel.slice(8)).toEqual(kernel.slice(8).map(() => 'r--'));
  });

  it('option getters that resize or unmap run before anything is computed', () => {
    expect(scenario('option-getters')).toEqual({ map: 'ERR_OUT_OF_RANGE', sync: 'ERR_DEVMAP_UNMAPPED' });
  });

  it('Workers terminated at random points (during load, mid-map, mid-unmap, with a waitAsync pending) never abort the process; their descriptors and mappings are gone', () => {
    const r = scenario('workers');
    expect(r).toEqual({ fdsLeaked: [], mapsLeaked: 0, memfdsLeft: 0 });
  });
});
