/*
 * Descriptor calls on the hot paths of mapFile and SharedMemory, straight to the addon. Node's fs versions
 * of open/fstat/ftruncate/close cost microseconds each (argument normalisation, a Stats object); these are
 * the system calls and a Node-style error, nothing else.
 */
import { fchmodSync } from 'node:fs';
import { check } from '../errors';
import { native } from '../native';

/** O_CLOEXEC (Node's fs.constants leaves it out; the value is the same on x86-64 and arm64). */
export const O_CLOEXEC = 0o2000000;

/** errno values the memory layer branches on (positive; the addon returns them negated). */
export const EEXIST = 17;
export const ENOENT = 2;

const statBuf = new Float64Array(6);

export interface FdStat {
  size: number;
  mode: number;
  uid: number;
  gid: number;
  dev: number;
  ino: number;
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
  return { size: statBuf[0], mode: statBuf[1], uid: statBuf[2], gid: statBuf[3], dev: statBuf[4], ino: statBuf[5] };
}

/** Names the memory object behind a descriptor within this machine: "<st_dev>:<st_ino>". */
export function objectKey(st: FdStat): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * Gives a file this process just created exactly `mode`: open(2) applied the umask, which may have narrowed it
 * (umask 0o277 turns 0600 into 0400, and the creator could not reopen its own segment). One fchmod, only when
 * the umask took bits away.
 */
export function exactMode(fd: number, mode: number, path?: string): void {
  if ((mode & process.umask()) === 0) return;
  try {
    fchmodSync(fd, mode);
  } catch (err) {
    throw Object.assign(err as Error, path === undefined ? {} : { path });
  }
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
