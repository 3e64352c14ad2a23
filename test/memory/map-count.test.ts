// The VMA budget's bookkeeping (lib/memory/map-count.ts): the count is the kernel's, and the budget is one word
// for the whole process, spent by the main thread and every Worker alike (they share one mapping table).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { mapAnonymous, pageSize } from '../../lib';
import { MAP_COUNT_LIMIT, MAP_COUNT_RESERVE, mapCount, takeMapSlots } from '../../lib/memory/map-count';
import { processWords } from '../../lib/memory/tables';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

describe('the VMA budget', () => {
  it('counts the table as the kernel shows it, and reserves an eighth of vm.max_map_count', () => {
    const lines = readFileSync('/proc/self/maps', 'latin1').split('\n').filter((l) => l.length > 0).length;
    // (V8 may map or unmap something between the two reads.)
    expect(Math.abs(mapCount() - lines)).toBeLessThan(16);
    expect(MAP_COUNT_LIMIT).toBe(Number(readFileSync('/proc/sys/vm/max_map_count', 'latin1')));
    expect(MAP_COUNT_RESERVE).toBe(Math.max(256, Math.floor(MAP_COUNT_LIMIT / 8)));
  });

  it('a spent budget counts the table again; new mappings spend it, one per mapping', () => {
    const words = processWords();
    Atomics.store(words, 1, 0); // spent: the next new mapping counts
    const m = mapAnonymous(pageSize, { shared: false });
    const after = Atomics.load(words, 1);
    expect(after).toBeGreaterThan(0);
    expect(after).toBeLessThanOrEqual(Math.ceil((MAP_COUNT_LIMIT - MAP_COUNT_RESERVE - mapCount()) / 2) + 16);
    const more = [1, 2, 3].map(() => mapAnonymous(pageSize, { shared: false }));
    expect(Atomics.load(words, 1)).toBe(after - 3);
    for (const x of [m, ...more]) x.unmap();
    expect(takeMapSlots(MAP_COUNT_LIMIT)).toBe(false); // more than the table: refused whatever the budget
  });

  it('is shared with Workers: their mappings spend the same word', async () => {
    const words = processWords();
    // A budget well inside the real room, so that nobody counts the table meanwhile: what is spent is exact.
    expect(MAP_COUNT_LIMIT - MAP_COUNT_RESERVE - mapCount()).toBeGreaterThan(20_000);
    Atomics.store(words, 1, 10_000);
    const code = `
      const { mapAnonymous, pageSize } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'index.js'))});
      const ms = [];
      for (let i = 0; i < 50; i++) ms.push(mapAnonymous(pageSize, { shared: false }));
      for (const m of ms) m.unmap();
      require('node:worker_threads').parentPort.postMessage('done');`;
    const w = new Worker(code, { eval: true });
    await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(Atomics.load(words, 1)).toBe(10_000 - 50);
  });
});
