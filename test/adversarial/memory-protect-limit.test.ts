// Issue 12, class 9: protect() that the kernel applies only in part (ENOMEM at vm.max_map_count, after it changed
// the first VMA). The child fills its own VMA table — nothing global changes — and must exit normally: devmap's
// record is put back or understated, never left claiming access the kernel took away, and no view stays attached
// over a page that lost it (before the fix: SIGSEGV on the next write through the old view).
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

const dist = join(__dirname, '..', '..', 'dist');

it('a protect() that fails halfway leaves a record that matches the kernel, and no fault', async () => {
  const r = await runNode('memory-protect-limit.cjs', [join(dist, 'index.js'), join(dist, 'native.js')]);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.code).toBe('ENOMEM');
  // Rolled back: page 0 read+write again, pages 1-3 read-only, as before the call.
  expect(out.prot).toEqual([3, 1, 1, 1]);
}, 60_000);
