/** The errno values the simulated kernel speaks (Linux numbering), and the error a failed system call throws. */
import { systemError, type SystemError } from '../errors';

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOTTY = 25;
export const ENOSPC = 28;
export const ENOTSUP = 95;

/** A simulated system call's failure: shaped like Node's system errors (code, errno, syscall), with the pid. */
export function syscallError(errno: number, syscall: string, pid: number, cause?: unknown): SystemError & { pid: number } {
  const err = systemError(-errno, syscall) as SystemError & { pid: number };
  err.pid = pid;
  if (cause !== undefined) (err as Error).cause = cause;
  return err;
}
