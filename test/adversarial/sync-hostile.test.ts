// Hostile arguments against the sync layer: arrays that lie about their length or buffer, and option getters
// that unmap the memory the call is about to use. Run in a child process that must exit normally.
import { expect, it } from 'vitest';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

it('reads arrays through their internal slots and options before the address: coded errors, no signal', async () => {
  const r = await runNode('sync-hostile.cjs');
  expect(r.stderr).toBe('');
  expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
  expect(JSON.parse(r.stdout)).toEqual({
    ownLength: 'ERR_OUT_OF_RANGE',
    subclassLength: 'ERR_OUT_OF_RANGE',
    spoofedBuffer: 'ERR_INVALID_ARG_TYPE',
    proxy: 'ERR_INVALID_ARG_TYPE',
    inheritsOnly: 'ERR_INVALID_ARG_TYPE',
    sharedArrayBuffer: 'ERR_INVALID_ARG_TYPE',
    detachedWithOwnLength: 'ERR_DEVMAP_UNMAPPED',
    mutexDetachedWithOwnLength: 'ERR_DEVMAP_UNMAPPED',
    waitTimeoutGetter: 'ERR_DEVMAP_UNMAPPED',
    waitWaitersGetter: 'ERR_DEVMAP_UNMAPPED',
    notifyWaitersGetter: 'ERR_DEVMAP_UNMAPPED',
    waitAsyncTimeoutGetter: 'ERR_DEVMAP_UNMAPPED',
    waitAsyncSignalGetter: 'ERR_DEVMAP_UNMAPPED',
    lockAsyncTimeoutGetter: 'ERR_DEVMAP_UNMAPPED',
    openOrCreateTimeoutGetter: 'ERR_DEVMAP_UNMAPPED',
  });
});
