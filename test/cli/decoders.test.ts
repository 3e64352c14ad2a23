// The read-only decoders `devmap inspect` uses: Mutex.inspect (lib/sync/inspect.ts) and
// SharedResourceMap.inspect, over a Mapping and over a snapshot of its bytes; nothing is locked or written.
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SharedMemory, SharedResourceMap, mapAnonymous } from '../../lib';
import { Mutex } from '../../lib/sync';
import { run } from '../helpers/child';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

describe('Mutex.inspect', () => {
  it('decodes unlocked, locked (holder thread) and owner-died, from the Mapping or a copy of its bytes', async () => {
    const name = uniqueName('mtx-inspect');
    const shm = SharedMemory.create(name, 4096);
    const m = shm.map();
    shm.close();
    onTestFinished(() => {
      SharedMemory.unlink(name);
      m.unmap();
    });
    const mutex = Mutex.init(new Int32Array(m.buffer), 16);
    expect(Mutex.inspect(m, 64)).toMatchObject({ locked: false, owner: 0, ownerDied: false, waiters: false });
    mutex.lock();
    expect(Mutex.inspect(new Uint8Array(m.buffer).slice(), 64)).toMatchObject({ locked: true, owner: Mutex.threadId, ownerDied: false });
    mutex.unlock();
    // A process that dies holding it: the kernel marks the word FUTEX_OWNER_DIED.
    const dist = JSON.stringify(join(__dirname, '..', '..', 'dist', 'index.js'));
    const child = await run(process.execPath, ['-e', `
      const { SharedMemory, Mutex } = require(${dist});
      const shm = SharedMemory.open(${JSON.stringify(name)}); const m = shm.map();
      new Mutex(new Int32Array(m.buffer), 16).lock(); process.exit(0);`]);
    expect(child, child.stderr).toMatchObject({ code: 0, signal: null });
    expect(Mutex.inspect(m, 64)).toMatchObject({ ownerDied: true });
    expect(mutex.lock().ownerDied).toBe(true); // inspecting changed nothing: the next locker is told
    mutex.consistent();
    mutex.unlock();
  });

  it('refuses words without a Mutex and offsets that leave no room, with codes', () => {
    const m = mapAnonymous(4096);
    onTestFinished(() => void m.unmap());
    expect(() => Mutex.inspect(m, 0)).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_MUTEX_UNINITIALIZED' }));
    for (const offset of [4, 4096 - 56, -8, 1.5]) expect(() => Mutex.inspect(m, offset)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => Mutex.inspect({} as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

describe('SharedResourceMap.inspect', () => {
  it('reports the corrupt mark', () => {
    const sizing = { mapsize: 4, owners: 4 };
    const m = mapAnonymous(Math.ceil(SharedResourceMap.bytesFor(sizing) / 4096) * 4096);
    onTestFinished(() => void m.unmap());
    const mp = SharedResourceMap.create(m, sizing);
    expect(SharedResourceMap.inspect(m).corrupt).toBe(false);
    mp.store.h32[5] = 1 << 20; // an out-of-range root: the next operation finds it and marks the map
    expect(() => mp.freeUnits).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_CORRUPT' }));
    expect(SharedResourceMap.inspect(new Uint8Array(m.buffer).slice()).corrupt).toBe(true);
  });
});
