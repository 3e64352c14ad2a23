/** The ways to make a Mapping: anonymous memory, a file (by path or descriptor), and the shared helper they use. */
import * as fs from 'node:fs';
import { boolean, check, integer, optionalInteger, options, rangeError, typeError } from '../errors';
import { native } from '../native';
import {
  F_GETFL, MADV_HUGEPAGE, MAP_ANONYMOUS, O_ACCMODE, MAP_FIXED, MAP_HUGETLB, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE,
} from './constants';
import { EEXIST, ENOENT, O_CLOEXEC, closeFd, exactMode, fstatFd, objectKey, openFd, truncateFd } from './fd';
import { Mapping, adoptMapping, shrinkMappings } from './mapping';
import { pageSize } from './page';
import { assertMapSlots, mapCountError, takeMapSlots } from './map-count';
import { PUNCH_LIMIT, ROW_LIVE, ROW_TRASH, forkCount, reuse, storeCounts, unreuse } from './quarantine';

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
  // Only a plain shared read+write object can be handed a punched one again (place(), quarantine.ts).
  const plain = shared && p === RW && !populate && huge === false && mapped <= PUNCH_LIMIT;
  const [addr, row, born] = place(mapped, p, flags, -1, 0, undefined, plain);
  if (huge === 'transparent') {
    const rc = native().madvise(addr, mapped, MADV_HUGEPAGE);
    if (rc < 0) {
      native().row_release(row, addr, mapped);
      throw check(rc, 'madvise');
    }
  }
  return adoptMapping({ addr, length, prot: p, shared, granule, row, born });
}

/**
 * mmap(2) of `len` bytes anywhere, with a live row in the range table, as [addr, row, born]: over a released
 * range of that length when quarantine.ts keeps one, else wherever the kernel puts it. A `plain` request (shared
 * anonymous, read+write, nothing else) takes a kept shared anonymous object as it is (punched empty at its
 * release) when no fork began since it was made, so no child can share it: no system call at all. Otherwise MAP_FIXED replaces what is there. `born` is the fork count at which a plain request's object was
 * made (read before the mmap, so a fork racing it only makes the object look shared), else -1.
 */
function place(len: number, prot: number, flags: number, fd: number, offset: number, path?: string, plain = false): [number, number, number] {
  const n = native();
  const kept = reuse(len);
  if (kept !== undefined) {
    const [row, at, was] = kept;
    // A fork that begins after this look copies the new Mapping's object, as it would have copied a fresh one.
    if (plain && was >= 0 && forkCount() === was) {
      n.row_set(row, at, len, ROW_LIVE);
      return [at, row, was];
    }
    // Trash pages may be part of a larger mapping (adjacent trash merges): landing in it may split it in three.
    if (!takeMapSlots(2)) {
      unreuse(len, row, at);
      throw mapCountError(`A mapping of ${len} bytes`);
    }
    const born = plain ? forkCount() : -1;
    const addr = n.mmap(at, len, prot, flags | MAP_FIXED, fd, offset);
    if (addr === at) {
      n.row_set(row, at, len, ROW_LIVE);
      return [at, row, born];
    }
    n.row_set(row, at, len, ROW_TRASH);
    unreuse(len, row, at);
  }
  assertMapSlots(1, `A mapping of ${len} bytes`);
  const born = plain ? forkCount() : -1;
  const addr = check(n.mmap_row(0, len, prot, flags, fd, offset, ROW_LIVE), 'mmap', path);
  return [addr, storeCounts()[0], born];
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

/** A region request read once: every option is a local before the object's size is looked at. */
export interface Region {
  offset: number;
  length: number | undefined;
  prot: number | undefined;
  shared: boolean;
}

/** Reads and type-checks MapRegionOptions once (the snapshot `options()` made). */
export function region(o: MapRegionOptions): Region {
  const offset = optionalInteger(o.offset, 'options.offset', 0);
  if (offset % pageSize !== 0) throw rangeError(`a multiple of the page size ${pageSize}`, 'options.offset', offset);
  const length = o.length === undefined ? undefined : integer(o.length, 'options.length', 1);
  const prot = o.prot === undefined ? undefined : integer(o.prot, 'options.prot', 0, 7);
  return { offset, length, prot, shared: boolean(o.shared, 'options.shared', true) };
}

/**
 * Maps [offset, offset + length) of an open descriptor. The size is the object's as it is now (fstat, after
 * every option was read): touching a page past the end raises SIGBUS, so a range past it is refused here.
 */
export function mapDescriptor(fd: number, r: Region, writable: boolean, path?: string): Mapping {
  const st = fstatFd(fd, path);
  const size = st.size;
  if (size === 0) throw rangeError('an object that is not empty (pass size to give it one)', 'file', path ?? fd);
  if (r.offset >= size) throw rangeError(`an offset below the object's size ${size}`, 'options.offset', r.offset);
  const length = r.length ?? size - r.offset;
  if (r.offset + length > size) {
    throw rangeError(`a length of at most ${size - r.offset} (the object ends there; pages past it fault)`, 'options.length', length);
  }
  const p = r.prot ?? (writable || !r.shared ? RW : PROT_READ);
  const [addr, row] = place(Math.ceil(length / pageSize) * pageSize, p, r.shared ? MAP_SHARED : MAP_PRIVATE, fd, r.offset, path);
  return adoptMapping({ addr, length, prot: p, shared: r.shared, row, object: { key: objectKey(st), offset: r.offset } });
}

export interface MapFileOptions extends MapRegionOptions {
  /** Create the file (O_CREAT | O_EXCL: an existing file is an EEXIST error). */
  create?: boolean;
  /** With create: false means an existing file is reused instead of refused (EEXIST). Default true. */
  exclusive?: boolean;
  /**
   * The size of a file this call creates (required with create). An existing file smaller than `size` is
   * grown to it; a larger one is left as it is, unless `truncate: true` says to cut it.
   */
  size?: number;
  /** Cut an existing file down to `size` (its mappings in this process lose the pages past it first). */
  truncate?: boolean;
  /** Mode for a created file; default 0o600. Applied exactly (the umask does not narrow it); an existing file keeps its own. */
  mode?: number;
}

const FILE_KEYS = [...REGION_KEYS, 'create', 'exclusive', 'size', 'truncate', 'mode'];

/** mmap(2) of a file, by path or by an open descriptor (which stays open and stays the caller's). */
export function mapFile(file: string | number, opts?: MapFileOptions): Mapping {
  const o = options<MapFileOptions>(opts, 'options', FILE_KEYS);
  const r = region(o);
  const create = boolean(o.create, 'options.create', false);
  const exclusive = boolean(o.exclusive, 'options.exclusive', true);
  const truncate = boolean(o.truncate, 'options.truncate', false);
  const mode = optionalInteger(o.mode, 'options.mode', 0o600, 0, 0o777);
  const size = o.size === undefined ? undefined : integer(o.size, 'options.size', 1);
  if (create && size === undefined) throw typeError('a size for a file created by mapFile', 'options.size', size);
  if (truncate && size === undefined) throw typeError('a size to truncate to', 'options.size', size);
  const wantWrite = r.prot === undefined || (r.prot & PROT_WRITE) !== 0;

  if (typeof file === 'number') {
    const fd = integer(file, 'file', 0, 0x7fffffff);
    if (create) throw typeError('a path (create needs one)', 'file', file);
    const accessMode = check(native().fcntl(fd, F_GETFL, 0), 'fcntl') & O_ACCMODE;
    if (size !== undefined) resizeExisting(fd, size, truncate);
    return mapDescriptor(fd, r, accessMode === fs.constants.O_RDWR);
  }
  if (typeof file !== 'string') throw typeError('a path string or a file descriptor', 'file', file);
  if (file.length === 0 || file.includes('\0')) throw rangeError('a non-empty path without NUL bytes', 'file', file);

  const writable = (wantWrite && r.shared) || size !== undefined || create;
  const flags = (writable ? fs.constants.O_RDWR : fs.constants.O_RDONLY) | fs.constants.O_NOFOLLOW;
  const { fd, created } = create ? openOrCreate(file, flags, mode, exclusive) : { fd: openFd(file, flags, 0), created: false };
  // Only a file this call created is removed again if mapping it fails.
  let remove = created;
  try {
    if (created) {
      exactMode(fd, mode, file);
      truncateFd(fd, size!, file);
    } else if (size !== undefined) {
      resizeExisting(fd, size, truncate, file);
    }
    const mapping = mapDescriptor(fd, r, writable, file);
    remove = false;
    return mapping;
  } finally {
    closeFd(fd);
    if (remove) fs.rmSync(file, { force: true });
  }
}

/**
 * open(2) that says whether it created the file, race-free: O_CREAT | O_EXCL first; when the file exists
 * (and exclusive is false) an open without O_CREAT; when that finds it gone again, start over.
 */
function openOrCreate(path: string, flags: number, mode: number, exclusive: boolean): { fd: number; created: boolean } {
  for (;;) {
    const fd = native().open(path, flags | fs.constants.O_CREAT | fs.constants.O_EXCL | O_CLOEXEC, mode);
    if (fd >= 0) return { fd, created: true };
    if (fd !== -EEXIST || exclusive) check(fd, 'open', path);
    const existing = native().open(path, flags | O_CLOEXEC, 0);
    if (existing >= 0) return { fd: existing, created: false };
    if (existing !== -ENOENT) check(existing, 'open', path);
  }
}

/** Grows an existing file to `size`; cuts it only with truncate, after taking the lost pages from our mappings. */
function resizeExisting(fd: number, size: number, truncate: boolean, path?: string): void {
  const st = fstatFd(fd, path);
  if (size > st.size) truncateFd(fd, size, path);
  else if (size < st.size && truncate) {
    shrinkMappings(objectKey(st), size);
    truncateFd(fd, size, path);
  }
}
