// No wake is lost: a lockAsync that gives up after its sleep ended passes the wake on, even when the mapping
// it waited through is gone. Real processes: a holder, this process as the first waiter, a second waiter.
import { describe, expect, it } from 'vitest';
import { SharedMemory } from '../../lib';
import { Mutex } from '../../lib/sync';
import { trackLeaks } from '../helpers/leaks';
import { SYS_FUTEX, SYS_FUTEX_WAITV, inSyscall, segment, spawnLines, until } from './lines';

trackLeaks();

describe('a lockAsync that gives up passes on the wake it consumed', () => {
  it('unmapped while it waits: the single wake reaches the other process, which gets the lock', async () => {
    const s = segment('lost-wake');
    const holder = spawnLines('sync-child.cjs', ['hold', s.name, '0']);
    let second: ReturnType<typeof spawnLines> | undefined;
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
      // …then a second process sleeps in the C library's lock(), behind it in the kernel's queue.
      second = spawnLines('sync-child.cjs', ['count', s.name, '0', '32', '1']);
      // (FUTEX_WAIT, op 0: a shared futex, which only the lock is; Node's own waits are private)
      await until(() => inSyscall(SYS_FUTEX, second!.proc.pid!, undefined, '0x0'));
      mine.unmap();
      // The holder dies: the kernel marks the lock and wakes exactly one waiter, the first in line: us.
      holder.proc.kill('SIGKILL');
      expect(await first).toBe('ERR_DEVMAP_UNMAPPED');
      expect(await second.next()).toEqual({ done: 1, died: 1 }); // it got the lock: the wake was passed on
      expect(await second.exited).toMatchObject({ code: 0, signal: null });
    } finally {
      holder.proc.kill('SIGKILL');
      second?.proc.kill('SIGKILL');
      s.done();
    }
  }, 20_000);
});
