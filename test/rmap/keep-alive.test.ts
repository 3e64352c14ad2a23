// A pending rmalloc_wait keeps the event loop alive, as a pending timer or waitAsync does (issue 14): a
// script that awaits it, with nothing else keeping it alive, waits for the rmfree (here from an unref'd
// timer) and prints its result instead of exiting silently with the Promise pending.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const dist = (rel: string) => JSON.stringify(join(__dirname, '..', '..', 'dist', rel));

const script = (shared: boolean) => `
  const { mapAnonymous } = require(${dist('index.js')});
  const { ResourceMap, SharedResourceMap, rmalloc_wait, rmfree } = require(${dist('rmap/index.js')});
  const mp = ${shared ? 'SharedResourceMap.create(mapAnonymous(1 << 20), { mapsize: 4, onWarning() {} })' : 'new ResourceMap(4, { onWarning() {} })'};
  rmfree(mp, 2, 1);
  setTimeout(() => rmfree(mp, 8, 100), 100).unref(); // this timer alone would not keep the process alive
  rmalloc_wait(mp, 5).then((index) => console.log('got', index));
`;

describe('a pending rmalloc_wait keeps the process alive', () => {
  for (const shared of [false, true]) {
    it(`${shared ? 'SharedResourceMap' : 'ResourceMap'}: the script prints the index it waited for`, async () => {
      const r = await run(process.execPath, ['-e', script(shared)], { timeout: 20_000 });
      expect(r, r.stderr).toMatchObject({ code: 0, signal: null });
      expect(r.stdout.trim()).toBe('got 100');
    });
  }

  it('a ResourceMap whose waiters are all settled lets the process exit', async () => {
    const r = await run(process.execPath, ['-e', `
      const { ResourceMap, rmalloc_wait, rmfree, rmfreemap } = require(${dist('rmap/index.js')});
      const a = new ResourceMap(4); const b = new ResourceMap(4); const c = new ResourceMap(4);
      rmalloc_wait(a, 1).then((i) => console.log('a', i)); rmfree(a, 1, 7);
      rmalloc_wait(b, 1, { signal: AbortSignal.timeout(10) }).catch((e) => console.log('b', e.code));
      rmalloc_wait(c, 1).catch((e) => console.log('c', e.code)); rmfreemap(c);`], { timeout: 20_000 });
    expect(r, r.stderr).toMatchObject({ code: 0, signal: null });
    expect(r.stdout.trim().split('\n').sort()).toEqual(['a 7', 'b ABORT_ERR', 'c ERR_DEVMAP_RMAP_FREED']);
  });
});
