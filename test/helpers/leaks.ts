// Per-file leak check: open fds and devmap's mappings (shared anonymous, memfd and /dev/shm lines of
// /proc/self/maps) must be back at their baseline when the file's tests end.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect } from 'vitest';
import { emptyPool } from '../../lib/memory/quarantine';

export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Lines of /proc/self/maps that only devmap creates. */
export function sharedMappings(): string[] {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => /\/dev\/zero \(deleted\)|\/memfd:|\/dev\/shm\/|devmap-test/.test(l));
}

export function trackLeaks(): void {
  let fds = 0;
  let maps = 0;
  beforeAll(() => {
    globalThis.gc?.();
    emptyPool();
    fds = openFds();
    maps = sharedMappings().length;
  });
  afterAll(async () => {
    // Views and Mappings dropped without unmap are released by finalizers; give them a chance to run.
    for (let i = 0; i < 3 && globalThis.gc; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    // Released shared anonymous ranges the pool keeps mapped for reuse (lib/memory/quarantine.ts) are not leaks.
    emptyPool();
    expect(openFds(), 'open fds back at baseline').toBe(fds);
    expect(sharedMappings().length, 'shared mappings back at baseline').toBeLessThanOrEqual(maps);
  });
}

let counter = 0;
/** The run's own prefix (set by the global setup), so that concurrent runs never count each other's segments. */
export const runPrefix = `devmap-test-${process.env.DEVMAP_TEST_RUN ?? 'solo'}-`;
/** A /dev/shm name no other test or run uses. */
export function uniqueName(tag = 'seg'): string {
  return `${runPrefix}${process.pid}-${tag}-${counter++}-${Math.random().toString(36).slice(2, 8)}`;
}
