// The context-switch case of bench/faults.mjs (devmap bench --filter faults) measures what it says: in both
// variants two real processes take turns on one device page and every touch is a switch — the other process
// unloaded by its agent, the faulting one loaded — or the variant fails instead of reporting a figure.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { trackLeaks } from '../helpers/leaks';

interface BenchCase {
  name: string;
  variants: Record<string, (n: number) => number | Promise<number>>;
}

trackLeaks();

describe('bench: a context switch between two real processes', () => {
  it('both variants serve every touch as a switch and report ns per switch', async () => {
    const { faultsCases } = await import(pathToFileURL(join(__dirname, '..', '..', 'bench', 'faults.mjs')).href);
    const { cases, cleanup } = (await faultsCases({ quick: true })) as { cases: BenchCase[]; cleanup: () => Promise<void> };
    try {
      const ctx = cases.find((c) => c.name.startsWith('a context switch'))!;
      expect(ctx).toBeDefined();
      expect(Object.keys(ctx.variants)).toHaveLength(2);
      for (const variant of Object.values(ctx.variants)) {
        const ns = await variant(20);
        expect(ns).toBeGreaterThan(0);
      }
    } finally {
      await cleanup();
    }
  });
});
