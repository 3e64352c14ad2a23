/** Cross-process wait/notify on words of shared mappings, and a robust cross-process Mutex. See docs/sync.md. */
export { wait, waitAsync, notify, setSpin, getSpin, DEFAULT_SPIN_ITERATIONS } from './futex';
export type { WaitResult, SyncWaitOptions, WaitAsyncOptions, NotifyOptions, SpinOptions } from './futex';
export { Mutex } from './mutex';
export type { LockResult, LockAsyncOptions } from './mutex';
export type { MutexInfo } from './inspect';
