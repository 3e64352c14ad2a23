// The sync layer against memory that goes away or is scribbled on. Every case runs in a child process that
// must exit normally, with no signal.
import { describe, expect, it } from 'vitest';
import { runNode } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

/** Runs a fixture and returns its JSON output, after asserting a normal exit. */
async function outcome(fixture: string, ...args: string[]): Promise<any> {
  const r = await runNode(fixture, args);
  expect(r.stderr).toBe('');
  expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
  return JSON.parse(r.stdout);
}

describe('waitAsync on a page the object loses', () => {
  it('rejects with ERR_DEVMAP_TRUNCATED (no SIGBUS in the waiter thread); other waits go on', async () => {
    expect(await outcome('sync-truncated-wait.cjs', uniqueName('trunc'))).toEqual({ gone: 'ERR_DEVMAP_TRUNCATED', near: 'ok' });
  });
});
