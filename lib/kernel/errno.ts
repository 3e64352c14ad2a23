/*
 * The errno values the simulated kernel speaks: drivers return them and compare against them. Every number comes
 * from the one table (lib/errors.ts `errno`, the platform's os.constants.errno), positive as in C; the error a
 * failed system call throws carries the name as `code` and the negated number as `errno` (lib/kernel/syscall.ts).
 */
import { errno } from '../errors';

export const {
  EPERM, ENOENT, EINTR, EIO, ENXIO, EBADF, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, ENODEV, EINVAL, ENOTTY,
  ENOSPC, ENOSYS, ENOTSUP,
} = errno as Record<string, number>;
