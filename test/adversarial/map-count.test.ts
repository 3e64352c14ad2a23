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
    // A new alias is refused, or the mprotect that would split one (ENOMEM, devmap's refusal its cause).
    expect([out.refused.view, out.refused.mprotect]).toContainEqual(expect.stringMatching(/^(ERR_DEVMAP_MAP_COUNT|ENOMEM ERR_DEVMAP_MAP_COUNT)$/));
    // Its own mmap then works (a placement needs fewer entries) or fails as a real process's does at its limit.
    expect([null, 'ENOMEM']).toContain(out.refused.mmap);
    expect(out.tableWhenRefused).toBeLessThanOrEqual(out.limit - out.reserve);
  }, 120_000);

  it.each([
    ['protect of every other page of one large mapping', 'splits', 'protect'],
    ['a partial unmap of every other page of one large mapping', 'splits', 'unmap'],
    ['pending waitAsync calls (each sleeps on an alias of its word\'s page)', 'async', 'wait'],
    ['pending lockAsync calls (each keeps an alias of the lock word\'s page)', 'async', 'lock'],
  ])(
    '%s: refused with ERR_DEVMAP_MAP_COUNT before the reserve (before: ENOMEM at the kernel\'s limit, then V8 aborted)',
    async (_, mode, op) => {
      const out = await child(mode, op);
      expect(out.code).toBe('ERR_DEVMAP_MAP_COUNT');
      expect(out.done ?? out.pending).toBeGreaterThan(100);
      expect(out.tableWhenRefused).toBeLessThanOrEqual(out.limit - out.reserve + 64);
    },
    120_000,
  );

  it('releasing the dropped half of 140,000 stale views does not fill the table by splitting merged trash (before: V8 aborted)', async () => {
    const out = await child('release');
    expect(out.held).toBe(70000);
    // Releases stop cutting merged trash once the table is half full (what devmap may use, less the reserve).
    expect(out.tableWhenRefused).toBeLessThan((out.limit - out.reserve) / 2 + 2000);
  }, 120_000);

  it('trash released while the budget word is low but the table is nearly empty is given back (before: 16 GiB of address space kept, then V8 could not reserve any)', async () => {
    const out = await child('stranded');
    expect(out.retainedKiB).toBeLessThan(2 ** 20); // under 1 GiB of the 16 GiB mapped and unmapped
  }, 120_000);

  it('a simulated munmap over two mappings at the floor is refused before it unmaps anything (before: ENOMEM after the first was gone); one of a whole mapping goes through', async () => {
    const out = await child('simunmap');
    expect(out).toMatchObject({ code: 'ENOMEM', segments: 2, first: 0x5a, whole: 'ok', b: true });
  }, 120_000);

  it('a truncated 140,000-page file read on every other page costs the Mapping, not the process (before: SIGBUS once the zero pages filled the table)', async () => {
    const out = await child('sigbus');
    expect(out.truncated).toBe(true);
    expect(out.sum).toBe(0);
    expect(out.table).toBeLessThan(out.limit - out.reserve);
  }, 120_000);

  it('with the range table full, a partial unmap is refused before anything changes (before: its pieces had no row, and a truncation then killed the process)', async () => {
    const out = await child('rows');
    expect(out.filled).toBe('ENOMEM');
    expect(out.cut).toBe('ENOMEM');
    expect(out.truncated).toBe(true);
  }, 180_000);
});
