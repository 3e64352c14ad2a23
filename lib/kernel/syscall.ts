/*
 * The system call in progress, and the error it fails with.
 *
 * A simulated system call runs inside runSyscall(): a store per call (AsyncLocalStorage), so that concurrent calls
 * of several processes never mix. When a driver entry point throws during the call, the kernel notes the exception
 * there (the first one wins), and the call's error — built by syscallError() — carries it as its `cause`. The
 * error itself is shaped like Node's system errors: the errno's name as `code`, the negated number as `errno`,
 * the system call, and the simulated pid.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { systemError, type SystemError } from '../errors';

const syscalls = new AsyncLocalStorage<{ cause: unknown }>();

/** Runs one system call. */
export function runSyscall<T>(fn: () => Promise<T>): Promise<T> {
  return syscalls.run({ cause: undefined }, fn);
}

/** Records a driver exception for the current system call (the first one is kept). */
export function noteDriverError(error: unknown): void {
  const store = syscalls.getStore();
  if (store && store.cause === undefined) store.cause = error;
}

/** The first exception a driver entry point threw during the current system call, if any. */
export function causeOfSyscall(): unknown {
  return syscalls.getStore()?.cause;
}

/**
 * A simulated system call's failure for a positive `errno` (the C convention): code, errno (negative, as Node's),
 * syscall, pid, and the driver's exception as `cause` when there is one.
 */
export function syscallError(errno: number, syscall: string, pid: number, cause: unknown = causeOfSyscall()): SystemError & { pid: number } {
  const err = systemError(-errno, syscall) as SystemError & { pid: number };
  err.pid = pid;
  if (cause !== undefined) (err as Error).cause = cause;
  return err;
}
