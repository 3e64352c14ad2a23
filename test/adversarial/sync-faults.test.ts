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

describe('lock() asleep on a Mutex whose page the object loses', () => {
  it('throws ERR_DEVMAP_TRUNCATED at its next slice (it slept for ever on the futex before), and exits normally', async () => {
    expect(await outcome('sync-truncated-lock.cjs', uniqueName('trunc-lock'))).toEqual({
      held: { locked: { ownerDied: false } },
      sleeper: { error: 'ERR_DEVMAP_TRUNCATED' },
      sleeperExit: { code: 0, signal: null },
    });
  }, 30_000);
});

describe('a held Mutex pins its pages', () => {
  it('protect() below read+write is refused while it is held', async () => {
    expect(await outcome('sync-held-pages.cjs', uniqueName('pin'), 'protect')).toEqual({
      protectHeld: 'ERR_DEVMAP_BUSY', protectOther: 'ERR_DEVMAP_BUSY', unlock: 'ok', protectFree: 'ok',
    });
  });

  it('resize() that would cut its words off is refused while it is held; one that keeps them is not', async () => {
    expect(await outcome('sync-held-pages.cjs', uniqueName('pin'), 'resize')).toEqual({
      shrinkPast: 'ERR_DEVMAP_BUSY', grow: 'ok', shrinkKeeping: 'ok', unlock: 'ok', shrinkFree: 'ok',
    });
  });
});

describe('a held Mutex whose bytes a stray fill() overwrote', () => {
  for (const pattern of ['zero', 'ones', 'links', 'random']) {
    it(`(${pattern}) is ERR_DEVMAP_MUTEX_CORRUPT on unlock, its neighbours on the robust list keep working`, async () => {
      const out = await outcome('sync-held-pages.cjs', uniqueName('fill'), `fill-${pattern}`);
      expect(out).toEqual({
        unlockCorrupt: 'ERR_DEVMAP_MUTEX_CORRUPT',
        unlockAfter: 'ok',
        unlockBefore: 'ok',
        relockOthers: 'ok',
        lockCorrupt: 'ERR_DEVMAP_MUTEX_NOT_RECOVERABLE',
        reinit: 'ok',
        unmap: 'ok',
      });
    });
  }
});

it('a free Mutex whose lock word was forged to name this thread is ERR_DEVMAP_MUTEX_CORRUPT on unlock', async () => {
  expect(await outcome('sync-held-pages.cjs', uniqueName('forged'), 'forged')).toEqual({
    unlockForged: 'ERR_DEVMAP_MUTEX_CORRUPT', lockForged: 'ERR_DEVMAP_MUTEX_NOT_RECOVERABLE', unmap: 'ok',
  });
});

describe('Workers terminated with waits pending', () => {
  it('at random moments: no crash, and their waiter threads and aliases are gone afterwards', async () => {
    const { before, after } = await outcome('sync-worker-storm.cjs', uniqueName('storm'), '25');
    expect(after).toEqual(before);
  }, 60_000);
});
