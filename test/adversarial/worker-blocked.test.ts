// Workers blocked in devmap's synchronous calls are terminated: terminate() settles, the process exits normally,
// the Worker leaves nothing behind, and a Mutex it was waiting for keeps working for other processes. Before
// wait() and Mutex#lock() slept in slices, the raw futex wait and glibc's pthread_mutex_lock could not be
// interrupted, and terminate() (and so the process) hung forever.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNode } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

const dist = join(__dirname, '..', '..', 'dist', 'index.js');
const HANG_GUARD_MS = 10_000; // terminate() takes about one 50 ms slice; this only tells a hang from slowness

async function outcome(fixture: string, ...args: string[]): Promise<any> {
  const r = await runNode(fixture, [dist, uniqueName('blocked'), ...args], { timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
  return JSON.parse(r.stdout);
}

describe('terminating a Worker blocked in a synchronous call', () => {
  it('wait() with no timeout; Mutex#lock() held by the main thread, by another process, and unlocked as the Worker stops: terminate() settles, nothing leaks, the Mutex works afterwards', async () => {
    const out = await outcome('worker-blocked.cjs');
    for (const what of ['wait', 'lockMain', 'lockPeer', 'lockWoken']) {
      expect(out[what].terminateMs, what).toBeLessThan(HANG_GUARD_MS);
      expect(out[what].leaked, `${what}: fds, the Worker's mappings and threads back at their count`).toBeNull();
    }
    // The main thread unlocked after the Worker was gone; another process then took it, cleanly.
    expect(out.lockMain.peerAfter).toEqual({ ownerDied: false });
    // The holder process unlocked and exited normally; another process, then this one, took it, cleanly.
    expect(out.lockPeer.holder).toEqual({ locked: { ownerDied: false }, exit: { code: 0, signal: null } });
    expect(out.lockPeer.peerAfter).toEqual({ ownerDied: false });
    expect(out.lockPeer.mainAfter).toEqual({ ownerDied: false });
    // Unlocked by the main thread just after terminate(): a lock the stopping Worker took was given back, so
    // the Mutex is free, not owner-died (and the Worker's mapping is gone: see leaked above).
    expect(out.lockWoken.after).toEqual({ locked: false, ownerDied: false });
    expect(out.lockWoken.peerAfter).toEqual({ ownerDied: false });
  }, 90_000);

  it('process.exit() while a Worker sleeps in lock(): Node stops and joins the Worker, and the process exits', async () => {
    expect(await outcome('worker-blocked.cjs', 'exit')).toEqual({ exiting: true });
  }, 90_000);

  it('Workers contending in lock() in a loop, terminated at random moments: each terminate() settles; the Mutex is free or owner-died (only when the Worker died holding it) and works for another process', async () => {
    const out = await outcome('worker-lock-storm.cjs', '40');
    expect(out.workerLocks).toBeGreaterThan(0);
    expect(out.after.fds).toBe(out.before.fds);
    expect(out.after.threads).toBe(out.before.threads);
    // Only a Worker that died holding the Mutex leaves its mapping: the kernel walks its robust list there.
    expect(out.after.mappings).toBe(out.before.mappings + out.diedHolding);
    expect(out.peer).toEqual({ ownerDied: false });
  }, 90_000);
});
