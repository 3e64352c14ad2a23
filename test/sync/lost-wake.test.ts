// No wake is lost: a lockAsync that gives up after its sleep ended passes the wake on, even when the mapping
// it waited through is gone. Real processes: a holder, this process as the first waiter, a second waiter.
//
// The second waiter is the witness, so it must be one that sleeps until a wake reaches it and never looks at
// the lock word on its own: another process's lockAsync (its waiter thread sleeps in futex_waitv, no timeout),
// or a C program in glibc's pthread_mutex_lock (FUTEX_WAIT, no timeout). devmap's own lock() cannot be the
// witness: it sleeps in 50 ms slices of the C library's timed lock and reads the word between two, so it would
// find the dead owner's lock even if the wake had been lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedMemory } from '../../lib';
import { Mutex } from '../../lib/sync';
import { fixture, run } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { SYS_FUTEX, SYS_FUTEX_WAITV, inSyscall, segment, spawnLines, spawnProgramLines, until, type LineChild } from './lines';

trackLeaks();

let dir = '';
let cPeer = '';
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'devmap-lost-wake-'));
  cPeer = join(dir, 'mutex-peer');
  const cc = await run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', cPeer, fixture('mutex-peer.c'), '-lpthread']);
  expect(cc.stderr).toBe('');
  expect(cc.code).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The holder holds; this process's lockAsync sleeps first; `second(name)` starts the witness, and the test
 * waits until `asleep(pid)` says it sleeps in the kernel, behind us in the futex queue. Then this process's
 * mapping is unmapped and the holder is killed: the kernel wakes exactly one waiter, the first in line (us).
 */
async function singleWake(second: (name: string) => LineChild, asleep: (pid: number) => boolean): Promise<void> {
  const s = segment('lost-wake');
  const holder = spawnLines('sync-child.cjs', ['hold', s.name, '0']);
  let witness: LineChild | undefined;
  try {
    Mutex.init(s.a, 0);
    expect((await holder.next()).locked).toEqual({ ownerDied: false });
    // This process waits first, through a mapping of its own…
    const shm = SharedMemory.open(s.name);
    const mine = shm.map();
    shm.close();
    const first = new Mutex(new Int32Array(mine.buffer), 0).lockAsync().then(
      () => 'locked',
      (e: { code: string }) => e.code,
    );
    // (futex_waitv over two words: the waiter thread's control word and the lock word)
    await until(() => inSyscall(SYS_FUTEX_WAITV, 'self', undefined, '0x2'));
    // …then the second process sleeps, behind it in the kernel's queue.
    witness = second(s.name);
    await until(() => asleep(witness!.proc.pid!));
    mine.unmap();
    holder.proc.kill('SIGKILL');
    expect(await first).toBe('ERR_DEVMAP_UNMAPPED');
    expect(await witness.next()).toEqual({ done: 1, died: 1 }); // it got the lock: the wake was passed on
    expect(await witness.exited).toMatchObject({ code: 0, signal: null });
  } finally {
    holder.proc.kill('SIGKILL');
    witness?.proc.kill('SIGKILL');
    s.done();
  }
}

describe('a lockAsync that gives up passes on the wake it consumed', () => {
  it('unmapped while it waits: the single wake reaches another process asleep in lockAsync, which gets the lock', async () => {
    await singleWake(
      (name) => spawnLines('sync-child.cjs', ['count', name, '0', '32', '1', 'async-first']),
      (pid) => inSyscall(SYS_FUTEX_WAITV, pid, undefined, '0x2'),
    );
  }, 20_000);

  it("unmapped while it waits: the single wake reaches a C program asleep in glibc's pthread_mutex_lock, which gets the lock", async () => {
    await singleWake(
      (name) => spawnProgramLines(cPeer, [name, '0']),
      // (FUTEX_WAIT, op 0: a shared futex, which only the lock is)
      (pid) => inSyscall(SYS_FUTEX, pid, undefined, '0x0'),
    );
  }, 20_000);
});
