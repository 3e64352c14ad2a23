/*
 * SharedMemory: a memory object other processes can map — a POSIX shm segment (/dev/shm/<name>), a memfd, or
 * any descriptor handed to us (e.g. inherited through child_process.spawn's stdio).
 *
 * Secure and SIGBUS-free by default:
 *  - create() is O_CREAT | O_EXCL with mode 0600 (applied exactly: the umask cannot narrow a wider mode the
 *    caller asked for, and nothing widens 0600); names are single path components, checked here.
 *  - create() and memfd() reserve the memory at once (fallocate), so a full /dev/shm is an ENOSPC error
 *    from create() and never a SIGBUS on first touch.
 *  - memfd() seals the object against shrinking (F_SEAL_SHRINK), so no peer holding the fd can truncate it
 *    under our mappings. POSIX shm objects cannot be sealed: a peer with write access could truncate one;
 *    docs/security.md says what that means.
 * A SharedMemory owns its descriptor (fromFd() duplicates the one it is given): close() closes it. Mappings made from it stay valid after close().
 */
import * as fs from 'node:fs';
import { DevmapError, boolean, check, integer, options, string, typeError, rangeError } from '../errors';
import { native } from '../native';
import { selfIdentityOf } from '../identity';
import {
  F_ADD_SEALS, F_DUPFD_CLOEXEC, F_GETFL, F_GET_SEALS, O_ACCMODE, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE, MFD_ALLOW_SEALING, MFD_CLOEXEC,
} from './constants';
import { inspect } from 'node:util';
import { EEXIST, ENOENT, O_CLOEXEC, S_IFMT, S_IFREG, closeFd, exactMode, fstatFd, objectKey, truncateFd } from './fd';
import { REGION_KEYS, mapDescriptor, region, type MapRegionOptions } from './map';
import { shrinkMappings, type Mapping } from './mapping';

export type Seal = 'shrink' | 'grow' | 'write' | 'seal';
const SEAL_BITS: Record<Seal, number> = { shrink: F_SEAL_SHRINK, grow: F_SEAL_GROW, write: F_SEAL_WRITE, seal: F_SEAL_SEAL };

/** Largest shm name: NAME_MAX. */
const MAX_NAME = 255;
/** memfd_create(2) allows 249 bytes of name. */
const MAX_MEMFD_NAME = 249;

/**
 * Characters no name may hold: Unicode controls (Cc: C0, DEL, C1), format characters (Cf: bidi overrides,
 * zero-width joiners and spaces, soft hyphen) and the line and paragraph separators (Zl, Zp). Each can make a
 * name print as another, or drive a terminal. A lone surrogate (Cs) has no UTF-8 form at all.
 */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** A POSIX shm name: one path component, no traversal, no control or format characters. */
export function validateShmName(name: unknown, argName = 'name'): string {
  const s = string(name, argName);
  if (s.length === 0 || Buffer.byteLength(s) > MAX_NAME) throw rangeError(`a name of 1 to ${MAX_NAME} bytes`, argName, s);
  if (s.includes('/') || s === '.' || s === '..' || UNPRINTABLE.test(s)) {
    throw rangeError('a name without "/", control, format or separator characters, and other than "." or ".."', argName, s);
  }
  return s;
}

type Kind = 'shm' | 'memfd' | 'fd';

/** The descriptor of a SharedMemory, as its finalizer sees it (without a reference back to the object). */
interface FdCell {
  fd: number;
  open: boolean;
}

/**
 * A SharedMemory dropped without close() closes its descriptor when it is collected, with a warning, as Node's
 * FileHandle does: the descriptor is the object's own (fromFd duplicates), so closing it cannot hurt anyone else.
 */
const fdFinalizer = new FinalizationRegistry<FdCell>((cell) => {
  if (!cell.open) return;
  cell.open = false;
  native().close(cell.fd);
  process.emitWarning(`Closing file descriptor ${cell.fd} of a SharedMemory on garbage collection; call close()`, {
    code: 'DEVMAP_SHM_GC',
  });
});
const internal = Symbol('devmap.internal');

export class SharedMemory {
  #fd: number;
  #cell: FdCell;
  #size: number;
  #name: string | null;
  #kind: Kind;
  #readOnly: boolean;
  #created: boolean;

  /** @internal Use the static methods create(), open(), memfd() and fromFd(). */
  constructor(fd: number, size: number, name: string | null, kind: Kind, readOnly: boolean, token?: symbol, created = false) {
    if (token !== internal) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'SharedMemory is not constructible; use SharedMemory.create(), open(), memfd() or fromFd()');
    this.#fd = fd;
    this.#cell = { fd, open: true };
    fdFinalizer.register(this, this.#cell);
    this.#size = size;
    this.#name = name;
    this.#kind = kind;
    this.#readOnly = readOnly;
    this.#created = created;
  }

  /**
   * Creates /dev/shm/<name>, sized and reserved: exclusively (EEXIST if it exists), or with exclusive: false
   * open-or-create, race-free — `created` then tells the one process that made it to initialize it, and an
   * existing segment of another size is ERR_DEVMAP_SIZE_MISMATCH.
   */
  static create(name: string, size: number, opts?: { mode?: number; exclusive?: boolean }): SharedMemory {
    name = validateShmName(name);
    size = integer(size, 'size', 1);
    const o = options<{ mode: number; exclusive: boolean }>(opts, 'options', ['mode', 'exclusive']);
    const mode = o.mode === undefined ? 0o600 : integer(o.mode, 'options.mode', 0, 0o777);
    const exclusive = boolean(o.exclusive, 'options.exclusive', true);
    if (!exclusive) return openOrCreate(name, size, mode);
    const n = native();
    const path = `/${name}`;
    const fd = check(n.shm_open(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, mode), 'shm_open', name);
    try {
      exactMode(fd, mode, name);
      reserve(fd, size, name);
      recordCreator(fd);
    } catch (err) {
      n.shm_unlink(path);
      closeFd(fd);
      throw err;
    }
    return new SharedMemory(fd, size, name, 'shm', false, internal, true);
  }

  /** SharedMemory.create(name, size, { exclusive: false }). */
  static openOrCreate(name: string, size: number, opts?: { mode?: number }): SharedMemory {
    const o = options<{ mode: number }>(opts, 'options', ['mode']);
    return SharedMemory.create(name, size, { ...o, exclusive: false });
  }

  /** Opens an existing /dev/shm/<name>. readOnly opens O_RDONLY: map it copy-on-write ({ shared: false }) for views. */
  static open(name: string, opts?: { readOnly?: boolean }): SharedMemory {
    name = validateShmName(name);
    const o = options<{ readOnly: boolean }>(opts, 'options', ['readOnly']);
    const readOnly = boolean(o.readOnly, 'options.readOnly', false);
    const fd = check(native().shm_open(`/${name}`, readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR, 0), 'shm_open', name);
    return new SharedMemory(fd, fstatFd(fd, name).size, name, 'shm', readOnly, internal);
  }

  /** An anonymous memfd of `size` bytes, reserved, sealed against shrinking unless seal is false or other seals are named. */
  static memfd(name: string, size: number, opts?: { seal?: boolean | Seal[] }): SharedMemory {
    name = string(name, 'name');
    if (Buffer.byteLength(name) > MAX_MEMFD_NAME || UNPRINTABLE.test(name)) {
      throw rangeError(`a name of at most ${MAX_MEMFD_NAME} bytes without control, format or separator characters`, 'name', name);
    }
    size = integer(size, 'size', 1);
    const o = options<{ seal: boolean | Seal[] }>(opts, 'options', ['seal']);
    const seals = sealBits(o.seal ?? true);
    const fd = check(native().memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING), 'memfd_create');
    try {
      reserve(fd, size);
      if (seals !== 0) check(native().fcntl(fd, F_ADD_SEALS, seals), 'fcntl');
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    return new SharedMemory(fd, size, name, 'memfd', false, internal);
  }

  /**
   * A SharedMemory over a duplicate of an open descriptor (a memfd or shm fd inherited from a parent, say).
   * The caller's descriptor stays the caller's: close() closes only the duplicate.
   */
  static fromFd(fd: number): SharedMemory {
    fd = integer(fd, 'fd', 0, 0x7fffffff);
    const accessMode = check(native().fcntl(fd, F_GETFL, 0), 'fcntl') & O_ACCMODE;
    const st = fstatFd(fd);
    if ((st.mode & S_IFMT) !== S_IFREG) {
      throw new DevmapError('ERR_DEVMAP_NOT_MEMORY', `Descriptor ${fd} is not a memory object or regular file (a pipe, socket or device cannot be mapped)`);
    }
    const dup = check(native().fcntl(fd, F_DUPFD_CLOEXEC, 0), 'fcntl');
    return new SharedMemory(dup, st.size, nameOfFd(fd), 'fd', accessMode === fs.constants.O_RDONLY, internal);
  }

  /** Removes /dev/shm/<name>; mappings and open descriptors keep working. */
  static unlink(name: string): void {
    name = validateShmName(name);
    check(native().shm_unlink(`/${name}`), 'shm_unlink', name);
  }

  get fd(): number {
    this.#assertOpen();
    return this.#fd;
  }
  /** The object's size now (fstat): another handle or process may have resized it since. */
  get size(): number {
    if (this.#fd >= 0) this.#size = fstatFd(this.#fd, this.#name ?? undefined).size;
    return this.#size;
  }
  /** True when this handle created the object (create(), memfd()); false when it opened an existing one. */
  get created(): boolean {
    return this.#created;
  }
  get name(): string | null {
    return this.#name;
  }
  get readOnly(): boolean {
    return this.#readOnly;
  }
  get closed(): boolean {
    return this.#fd < 0;
  }
  /** The seals set on a memfd, as names. */
  get seals(): Seal[] {
    this.#assertOpen();
    const bits = check(native().fcntl(this.#fd, F_GET_SEALS, 0), 'fcntl');
    return (Object.keys(SEAL_BITS) as Seal[]).filter((s) => (bits & SEAL_BITS[s]) !== 0);
  }

  /** Maps [offset, offset + length) of the object. */
  map(opts?: MapRegionOptions): Mapping {
    this.#assertOpen();
    const r = region(options<MapRegionOptions>(opts, 'options', REGION_KEYS));
    this.#assertOpen();
    return mapDescriptor(this.#fd, r, !this.#readOnly, this.#name ?? undefined);
  }

  /** Grows (or, unless sealed, shrinks) the object; growth is reserved like create(). */
  resize(size: number): void {
    this.#assertOpen();
    size = integer(size, 'size', 1);
    if (this.#readOnly) throw new DevmapError('ERR_DEVMAP_READ_ONLY', 'Cannot resize a SharedMemory opened read-only');
    for (const guard of shrinkGuards) guard(this.#fd, size);
    const st = fstatFd(this.#fd, this.#name ?? undefined);
    // A cut takes the lost pages from this thread's mappings of the object first: no SIGBUS for us.
    if (size < st.size) shrinkMappings(objectKey(st), size);
    reserve(this.#fd, size, this.#name ?? undefined);
    this.#size = size;
  }

  /** Removes the name from /dev/shm (shm objects only). */
  unlink(): void {
    if (this.#kind !== 'shm' || this.#name === null) {
      throw new DevmapError('ERR_DEVMAP_NOT_NAMED', 'Only a POSIX shm segment (create/open) has a name to unlink');
    }
    SharedMemory.unlink(this.#name);
  }

  /** Closes the descriptor. Idempotent. */
  close(): void {
    if (this.#fd >= 0) {
      const fd = this.#fd;
      this.#fd = -1;
      this.#cell.open = false;
      closeFd(fd);
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [inspect.custom](): string {
    if (this.#fd < 0) return `SharedMemory { name: ${JSON.stringify(this.#name)}, closed: true }`;
    let seals = '';
    try {
      seals = `, seals: [${this.seals.map((x) => `'${x}'`).join(', ')}]`;
    } catch {
      // not a memfd (EINVAL): no seals to show
    }
    return `SharedMemory { name: ${JSON.stringify(this.#name)}, kind: '${this.#kind}', size: ${this.size}, fd: ${this.#fd}${seals} }`;
  }

  #assertOpen(): void {
    if (this.#fd < 0) throw new DevmapError('ERR_DEVMAP_CLOSED', 'This SharedMemory has been closed');
  }
}

/**
 * Checks that run before resize() sets a size: a guard throws to refuse (lib/sync refuses while a Mutex this
 * thread holds lives in pages past the new end). Registered by the layers above; memory knows none of them.
 */
const shrinkGuards: ((fd: number, size: number) => void)[] = [];
/** @internal */
export function addShrinkGuard(guard: (fd: number, size: number) => void): void {
  shrinkGuards.push(guard);
}

/** ftruncate + fallocate: the size, with every byte's memory reserved now. */
function reserve(fd: number, size: number, path?: string): void {
  truncateFd(fd, size, path);
  check(native().fallocate(fd, 0, 0, size), 'fallocate', path);
}

/**
 * Open-or-create without a window: the segment is made unnamed (O_TMPFILE in /dev/shm), sized, reserved and
 * recorded, then given its name with linkat(2), which fails with EEXIST if the name is taken. So a segment is
 * never seen half-made, and exactly one caller gets created: true. When the name is taken we open it; when it
 * vanished in between (unlinked), we start over.
 */
function openOrCreate(name: string, size: number, mode: number): SharedMemory {
  const n = native();
  for (;;) {
    const fd = check(n.open('/dev/shm', fs.constants.O_RDWR | O_TMPFILE | O_CLOEXEC, mode), 'open', '/dev/shm');
    let linked = -1;
    try {
      exactMode(fd, mode, name);
      reserve(fd, size, name);
      recordCreator(fd);
      linked = n.link_fd(fd, `/dev/shm/${name}`);
      if (linked !== -EEXIST) check(linked, 'linkat', name);
    } finally {
      if (linked !== 0) closeFd(fd);
    }
    if (linked === 0) return new SharedMemory(fd, size, name, 'shm', false, internal, true);
    const existing = n.shm_open(`/${name}`, fs.constants.O_RDWR, 0);
    if (existing === -ENOENT) continue;
    check(existing, 'shm_open', name);
    const actual = fstatFd(existing, name).size;
    if (actual !== size) {
      closeFd(existing);
      throw new DevmapError('ERR_DEVMAP_SIZE_MISMATCH', `Segment ${JSON.stringify(name)} exists with ${actual} bytes, not the ${size} asked for`);
    }
    return new SharedMemory(existing, size, name, 'shm', false, internal, false);
  }
}

/** O_TMPFILE (with O_DIRECTORY, as open(2) requires). */
const O_TMPFILE = 0o20000000 | fs.constants.O_DIRECTORY;

/** The name an inherited descriptor carries in /proc/self/fd: a memfd's label or a /dev/shm segment's name. */
function nameOfFd(fd: number): string | null {
  let target: string;
  try {
    target = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
  const memfd = /^\/memfd:(.*?)(?: \(deleted\))?$/.exec(target);
  if (memfd) return memfd[1];
  if (target.startsWith('/dev/shm/') && !target.endsWith(' (deleted)')) return target.slice('/dev/shm/'.length);
  return null;
}

function sealBits(seal: unknown): number {
  if (seal === true) return F_SEAL_SHRINK;
  if (seal === false) return 0;
  if (!Array.isArray(seal)) throw typeError("a boolean or an array of 'shrink' | 'grow' | 'write' | 'seal'", 'options.seal', seal);
  let bits = 0;
  for (const s of seal) {
    if (!Object.hasOwn(SEAL_BITS, s)) throw rangeError("'shrink', 'grow', 'write' or 'seal'", 'options.seal[]', s);
    bits |= SEAL_BITS[s as Seal];
  }
  return bits;
}

/*
 * The creator record `devmap ls` and `devmap rm --stale` read: the extended attribute user.devmap.creator =
 * "<pid>:<starttime>" on the shm object, starttime being field 22 of /proc/self/stat. A (pid, start time)
 * pair names one process for the life of the machine, so "the creator is gone" is exact even after the pid
 * is reused; the record lives and dies with the inode. Best effort: where the filesystem refuses user xattrs
 * (tmpfs before Linux 6.6) the segment simply has no record.
 */
export const CREATOR_XATTR = 'user.devmap.creator';
let creatorRecord: Buffer | undefined;

function recordCreator(fd: number): void {
  if (creatorRecord === undefined) {
    const me = selfIdentityOf();
    creatorRecord = Buffer.from(`${me.pid}:${me.startTime}`, 'latin1');
  }
  native().fsetxattr(fd, CREATOR_XATTR, creatorRecord, 0);
}
