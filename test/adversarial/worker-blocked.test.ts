// A Worker blocked in a synchronous devmap wait() with no timeout is terminated: terminate() settles and the
// process exits normally. Before the wait slept in slices, the raw futex call could not be interrupted, and
// terminate() (and so the process) hung forever.
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

it('terminating a Worker blocked in wait() settles, and the process exits normally', async () => {
  const r = await runNode('worker-blocked.cjs', [join(__dirname, '..', '..', 'dist', 'index.js')], { timeout: 30_000 });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(typeof out.waited).toBe('number');
}, 60_000);
