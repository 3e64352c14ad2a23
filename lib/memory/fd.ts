/*
 * Descriptor calls on the hot paths of mapFile and SharedMemory, straight to the addon. Node's fs versions
 * of open/fstat/ftruncate/close cost microseconds each (argument normalisation, a Stats object); these are
 * the system calls and a Node-style error, nothing else.
 */
import { check } from '../errors';
import { native } from '../native';

/** O_CLOEXEC (Node's fs.constants leaves it out; the value is the same on x86-64 and arm64). */
export const O_CLOEXEC = 0o2000000;

const statBuf = new Float64Array(4);

export interface FdStat {
  size: number;
  mode: number;
  uid: number;
  gid: number;
}

/** open(2) with O_CLOEXEC. */
export function openFd(path: string, flags: number, mode: number): number {
  return check(native().open(path, flags | O_CLOEXEC, mode), 'open', path);
}

export function closeFd(fd: number): void {
  check(native().close(fd), 'close');
}

export function fstatFd(fd: number, path?: string): FdStat {
  check(native().fstat(fd, statBuf), 'fstat', path);
  return { size: statBuf[0], mode: statBuf[1], uid: statBuf[2], gid: statBuf[3] };
}

/** The size of an open file (fstat's st_size). */
export function sizeOfFd(fd: number, path?: string): number {
  return check(native().fstat_size(fd), 'fstat', path);
}

export function truncateFd(fd: number, size: number, path?: string): void {
  check(native().ftruncate(fd, size), 'ftruncate', path);
}

/** S_IFMT and S_IFREG: the file type bits of st_mode, and a regular file's. */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
