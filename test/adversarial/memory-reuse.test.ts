// Reuse of released ranges (lib/memory/quarantine.ts): unmap punches a plain shared anonymous object empty and
// keeps it, and the next Mapping of its length gets it back with no mmap. The trash-page rule must still hold:
// an escaped view (a BYOB-moved store, a thread-pool request) whose range is later reused never sees or writes
// the next Mapping's bytes, a reused range reads zeros, and nothing that stays on a mapping (advice, a lock, a
// child's copy after fork) passes to the next one. Each scenario runs in a child process that must exit
// normally with no signal.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { fixture } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

function scenario(name: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, ['--expose-gc', fixture('memory-reuse.cjs'), name], { encoding: 'utf8', timeout: 60_000 });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('reusing released ranges', () => {
  it('a store moved out by a BYOB read keeps its range out of reuse while it lives; its writes reach nobody; the release punches them out; the range then comes back as the same object, zero', () => {
    expect(scenario('escape-then-reuse')).toEqual({
      afterUnmap: true, reusedEarly: false, sawEscape: false, movedIntact: true, escapeResident: true, releasedResident: 0,
      reused: true, sameObject: true, zero: true,
    });
  });

  it('a range whose object was truncated under its Mapping comes back to the next Mapping untruncated', () => {
    expect(scenario('truncated-row')).toEqual({ truncated: true, reused: true, reusedTruncated: false, reads: 1 });
  });

  it('a stale view over a punched object that was truncated afterwards (through /proc/self/map_files) touches a trash page, not SIGBUS', () => {
    const r = scenario('sigbus-in-punched');
    if (r.unavailable === undefined) expect(r).toEqual({ after: 9, first: 0 });
  });

  it('thread-pool requests on unmapped views (randomFill writing, deflate reading) never touch the Mappings made meanwhile; reused ranges are zero', () => {
    expect(scenario('thread-pool-reuse')).toEqual({ deflated: 8, dirtyAtMap: 0, leakedIntoOutput: 0, freshIntact: true, reusedDirty: 0 });
  });

  it('after a fork (child_process spawns fork first) a released object is not handed out again: the next Mapping gets a new one', () => {
    expect(scenario('fork')).toEqual({ sameWithoutFork: true, spawned: 0, reusedAfterFork: true, newObjectAfterFork: true, zero: true });
  });

  it('advice, a lock or another protection on a Mapping never pass to the next one; only a plain one is handed on as it is', () => {
    const r = scenario('not-plain');
    for (const name of ['dontfork', 'random', 'locked', 'reprotected']) {
      expect(r[name], name).not.toBe('same object');
      if (r[name] !== 'elsewhere') expect(r[name + 'Flags'], name).toEqual([]);
    }
    expect(r.plain).toBe('same object');
  });

  it('a mapping past 16 MiB gets trash pages at unmap, not a punch (its object and commit charge go at once)', () => {
    expect(scenario('large')).toEqual({ objectGone: true, zero: 0 });
  });

  it("a Worker's pooled ranges are unmapped at its teardown", () => {
    expect(scenario('worker-pool')).toEqual({ pooledInWorker: true, leftAfterExit: 0 });
  });
});
