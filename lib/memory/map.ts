/** The ways to make a Mapping: anonymous memory, a file (by path or descriptor), and the shared helper they use. */
import * as fs from 'node:fs';
import { boolean, check, integer, optionalInteger, options, rangeError, typeError } from '../errors';
import { native } from '../native';
import {
  F_GETFL, MADV_HUGEPAGE, MAP_ANONYMOUS, O_ACCMODE, MAP_HUGETLB, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE,
} from './constants';
import { closeFd, openFd, sizeOfFd, truncateFd } from './fd';
import { Mapping, adoptMapping } from './mapping';
import { pageSize } from './page';

const RW = PROT_READ | PROT_WRITE;

export interface MapAnonymousOptions {
  /** PROT_* bits; default PROT_READ | PROT_WRITE. */
  prot?: number;
  /** MAP_SHARED (default: inherited by forked children, visible to them) or MAP_PRIVATE. */
  shared?: boolean;
  /** MAP_POPULATE: fault every page in now. */
  populate?: boolean;
  /** true: MAP_HUGETLB (needs reserved huge pages); 'transparent': madvise(MADV_HUGEPAGE). */
  hugePages?: boolean | 'transparent';
}

let hugePageSize: number | undefined;
function readHugePageSize(): number {
  const m = /Hugepagesize:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 2 * 1024 * 1024;
}

function protOption(value: unknown, name = 'options.prot'): number {
  return optionalInteger(value, name, RW, 0, 7);
}

/** mmap(2) of anonymous memory: MAP_SHARED | MAP_ANONYMOUS unless shared: false. */
export function mapAnonymous(length: number, opts?: MapAnonymousOptions): Mapping {
  length = integer(length, 'length', 1);
  const o = options<MapAnonymousOptions>(opts, 'options', ['prot', 'shared', 'populate', 'hugePages']);
  const p = protOption(o.prot);
  const shared = boolean(o.shared, 'options.shared', true);
  const populate = boolean(o.populate, 'options.populate', false);
  const huge = o.hugePages ?? false;
  if (huge !== true && huge !== false && huge !== 'transparent') {
    throw typeError("a boolean or 'transparent'", 'options.hugePages', huge);
  }
  const granule = huge === true ? (hugePageSize ??= readHugePageSize()) : pageSize;
  const mapped = Math.ceil(length / granule) * granule;
  const flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0) | (huge === true ? MAP_HUGETLB : 0);
  const addr = check(native().mmap(0, mapped, p, flags, -1, 0), 'mmap');
  if (huge === 'transparent') {
    const rc = native().madvise(addr, mapped, MADV_HUGEPAGE);
    if (rc < 0) {
      native().munmap(addr, mapped);
      throw check(rc, 'madvise');
    }
  }
  return adoptMapping({ addr, length, prot: p, shared, granule });
}

export interface MapRegionOptions {
  /** Byte offset into the object; a multiple of the page size. Default 0. */
  offset?: number;
  /** Bytes to map; default: from offset to the end of the object. */
  length?: number;
  /** PROT_* bits; default read+write (read-only for a descriptor opened read-only). */
  prot?: number;
  /** MAP_SHARED (default) or MAP_PRIVATE (copy-on-write: writes stay in this process). */
  shared?: boolean;
}

export const REGION_KEYS = ['offset', 'length', 'prot', 'shared'] as const;

/**
 * Maps [offset, offset + length) of an open descriptor whose size is `size`. The range must lie inside the
 * object: touching a page past its end raises SIGBUS, so that is refused here rather than discovered later.
 */
export function mapDescriptor(fd: number, size: number, o: MapRegionOptions, writable: boolean, path?: string): Mapping {
  const offset = optionalInteger(o.offset, 'options.offset', 0);
  if (offset % pageSize !== 0) throw rangeError(`a multiple of the page size ${pageSize}`, 'options.offset', offset);
  if (offset >= size) throw rangeError(`an offset below the object's size ${size}`, 'options.offset', offset);
  const length = optionalInteger(o.length, 'options.length', size - offset, 1);
  if (offset + length > size) {
    throw rangeError(`a length of at most ${size - offset} (the object ends there; pages past it fault)`, 'options.length', length);
  }
  const shared = boolean(o.shared, 'options.shared', true);
  const p = optionalInteger(o.prot, 'options.prot', writable || !shared ? RW : PROT_READ, 0, 7);
  const addr = native().mmap(0, Math.ceil(length / pageSize) * pageSize, p, shared ? MAP_SHARED : MAP_PRIVATE, fd, offset);
  check(addr, 'mmap', path);
  return adoptMapping({ addr, length, prot: p, shared });
}

export interface MapFileOptions extends MapRegionOptions {
  /** Create the file (O_CREAT | O_EXCL: an existing file is an EEXIST error). */
  create?: boolean;
  /** With create: false means an existing file is reused instead of refused (EEXIST). Default true. */
  exclusive?: boolean;
  /** Set the file's size first (ftruncate); required with create. */
  size?: number;
  /** Mode for a created file; default 0o600. Applied exactly (the umask does not narrow it). */
  mode?: number;
}

/** mmap(2) of a file, by path or by an open descriptor (which stays open and stays the caller's). */
export function mapFile(file: string | number, opts?: MapFileOptions): Mapping {
  const o = options<MapFileOptions>(opts, 'options', [...REGION_KEYS, 'create', 'exclusive', 'size', 'mode']);
  const create = boolean(o.create, 'options.create', false);
  const exclusive = boolean(o.exclusive, 'options.exclusive', true);
  const mode = optionalInteger(o.mode, 'options.mode', 0o600, 0, 0o777);
  const size = o.size === undefined ? undefined : integer(o.size, 'options.size', 1);
  const shared = boolean(o.shared, 'options.shared', true);
  const wantWrite = o.prot === undefined || (integer(o.prot, 'options.prot', 0, 7) & PROT_WRITE) !== 0;
  if (create && size === undefined) throw typeError('a size for a file created by mapFile', 'options.size', size);

  if (typeof file === 'number') {
    const fd = integer(file, 'file', 0, 0x7fffffff);
    if (create) throw typeError('a path (create needs one)', 'file', file);
    const accessMode = check(native().fcntl(fd, F_GETFL, 0), 'fcntl') & O_ACCMODE;
    if (size !== undefined) truncateFd(fd, size);
    return mapDescriptor(fd, sizeOfFd(fd), o, accessMode === fs.constants.O_RDWR);
  }
  if (typeof file !== 'string') throw typeError('a path string or a file descriptor', 'file', file);
  if (file.length === 0 || file.includes('\0')) throw rangeError('a non-empty path without NUL bytes', 'file', file);

  const writable = (wantWrite && shared) || size !== undefined || create;
  let flags = (writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY) | fs.constants.O_NOFOLLOW;
  if (create) flags |= fs.constants.O_CREAT | (exclusive ? fs.constants.O_EXCL : 0);
  const fd = openFd(file, flags, mode);
  // Only a file this call certainly created (O_EXCL) is removed again if mapping it fails.
  let created = create && exclusive;
  try {
    if (create && (mode & 0o077) !== 0) fs.fchmodSync(fd, mode);
    if (size !== undefined) truncateFd(fd, size, file);
    const fileSize = size ?? sizeOfFd(fd, file);
    if (fileSize === 0) throw rangeError('a file that is not empty (pass size to give it one)', 'file', file);
    const mapping = mapDescriptor(fd, fileSize, o, writable, file);
    created = false;
    return mapping;
  } finally {
    closeFd(fd);
    if (created) fs.rmSync(file, { force: true });
  }
}
