// The process's mapping table (vm.max_map_count, lib/memory/map-count.ts). Each case is a child that fills its
// own table — nothing global changes — and must exit normally. Before: a loop of 65,000 map/view/unmap cycles that
// never yields failed with ENOMEM (every unmapped-but-viewed mapping stayed a VMA of its own); a table filled
// through devmap left V8 nothing to map its next heap page with; a simulated process's views across protection
// round trips took aliases until the kernel refused.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const dist = join(__dirname, '..', '..', 'dist');

async function child(...args: string[]) {
  const r = await runNode('map-count.cjs', [dist, ...args]);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('the mapping table', () => {
  it.each([['no view', ''], ['every tenth view', 'keep']])(
    '150,000 map+view+unmap cycles that never yield (%s kept) keep the table small: stale views\' trash merges',
    async (_, keep) => {
      const out = await child('loop', '150000', ...(keep ? [keep] : []));
      expect(out.done).toBe(true);
      // 150,000 separate mappings would be more than twice the default limit; the waiting punched objects are
      // bounded (4096), trash beside trash is one mapping.
      expect(out.most).toBeLessThan(out.limit / 4);
    },
    120_000,
  );

  it('filled to inside devmap\'s reserve: devmap\'s new mappings are refused with ERR_DEVMAP_MAP_COUNT, V8 goes on, and devmap maps again once room is made', async () => {
    const out = await child('fill');
    expect(out.refused).toEqual({ mapAnonymous: 'ERR_DEVMAP_MAP_COUNT', shared: 'ERR_DEVMAP_MAP_COUNT', reservation: 'ERR_DEVMAP_MAP_COUNT' });
    expect(out.tableWhenRefused).toBeGreaterThan(out.limit - out.reserve);
    expect(out.allocated).toBeGreaterThan(0);
  }, 120_000);

  it('a simulated process\'s views across protection round trips take aliases until the budget says no, before the kernel does', async () => {
    const out = await child('aliases');
    expect(out.aliases).toBeGreaterThan(10);
    expect(out.refused.view).toBe('ERR_DEVMAP_MAP_COUNT');
    // Its own mmap then fails as a real process's does at its limit.
    expect(out.refused.mmap).toBe('ENOMEM');
    expect(out.tableWhenRefused).toBeLessThanOrEqual(out.limit - out.reserve);
  }, 120_000);
});
