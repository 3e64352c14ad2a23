/*
 * A simulated process: an address space (real reserved virtual memory), a descriptor table, and the system
 * calls open, close, read, write, ioctl, mmap, munmap, mprotect, fork and exit — plus view() and access(),
 * the explicit page faults through which a user program touches its memory.
 *
 * System calls validate like the real ones before any driver sees them (SPEC A.3.1: zero length, unaligned
 * offset, bad MAP_TYPE, unknown flag bits → EINVAL) and fail with errno-coded errors (`code`, `errno`,
 * `syscall`, `pid`; `cause` when a driver entry point threw during the call). Calls that change or walk the
 * address space are serialized per process, as the address space lock serializes them in a kernel, so an entry
 * point that awaits never sees a half-changed map.
 *
 * Two orders follow illumos and are part of the contract (docs/guide-drivers.md):
 *  - exit closes every descriptor first and then frees the address space, as proc_exit() calls closeall()
 *    before relvm() (usr/src/uts/common/os/exit.c). A device still mapped is not closed by the descriptors
 *    going; its close(9E) runs when the last mapping goes, before that mapping's unmap callbacks (SPEC A.6).
 *  - mmap(MAP_FIXED) removes the old mappings of the range only once the driver has accepted the new one
 *    (devmap_device in SPEC A.3.3, after the devmap(9E) calls of A.3.2; for IRIX, after drvmap returned 0), so
 *    a refused mapping leaves the old one — device or anonymous — as it was.
 */
import { DevmapError, integer, invalidArgValue, rangeError, string, typeError } from '../errors';
import {
  MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_WRITE,
} from '../memory/constants';
import { haveMapSlots } from '../memory/map-count';
import { pageSize } from '../memory/page';
import { AddressSpace, mapAnonymousSegment, type PmapEntry, type Rw } from './as';
import { FREAD, FWRITE, OTYP_CHR, type Cred } from './device';
import { EACCES, EBADF, EFAULT, EINVAL, ENODEV, ENOENT, ENOMEM, ENOTTY, ENXIO } from './errno';
import type { Kernel, KernelInternals } from './kernel';
import { causeOfSyscall, runSyscall, syscallError } from './syscall';
import { makeUio, UIO_READ, UIO_WRITE, type UserCopy } from './uio';

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
/** mmap's MAP_TYPE mask: the type must be exactly MAP_SHARED or MAP_PRIVATE. */
const MAP_TYPE = 0x0f;
const MAP_KNOWN = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE;
/** PROT_USER: added to every user mapping's protection, as mmap(2) does on illumos (SPEC A.3.1). */
export const PROT_USER = 8;
export const PROT_ALL = 0xf;

interface OpenFile {
  dev: number;
  /** FREAD | FWRITE. */
  flag: number;
  offset: number;
  refs: number;
}

const constructing = Symbol('devmap.process');
let construct: (kernel: Kernel, internals: KernelInternals, pid: number, parent: Process | null) => Process;

/**
 * A process of `kernel` (Kernel#spawn and fork make them; the class has no public constructor). The kernel hands
 * over its internals, so this module imports no value from kernel.ts.
 */
export function createProcess(kernel: Kernel, internals: KernelInternals, pid: number, parent: Process | null): Process {
  return construct(kernel, internals, pid, parent);
}

export class Process {
  readonly pid: number;
  readonly kernel: Kernel;
  readonly as: AddressSpace;
  readonly parent: Process | null;
  readonly cred: Cred;
  readonly #k: KernelInternals;
  readonly #files = new Map<number, OpenFile>();
  #exited = false;
  #queue: Promise<unknown> = Promise.resolve();

  static {
    construct = (kernel, internals, pid, parent) => new Process(kernel, internals, pid, parent, constructing);
  }

  private constructor(kernel: Kernel, internals: KernelInternals, pid: number, parent: Process | null, token: symbol) {
    if (token !== constructing) {
      throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'Process is not constructible; use kernel.spawn() or proc.fork()');
    }
    this.kernel = kernel;
    this.#k = internals;
    this.pid = pid;
    this.parent = parent;
    this.as = new AddressSpace(kernel.addressSpaceSize, pid, true);
    this.cred = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid };
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** open(2) of a device node; returns the descriptor. */
  async open(path: string, oflag: number = O_RDWR): Promise<number> {
    this.#assertRunning();
    path = string(path, 'path');
    oflag = integer(oflag, 'oflag', 0, 2);
    return runSyscall(async () => {
      const dev = this.#k.lookup(path);
      if (dev === undefined) throw this.#error(ENOENT, 'open');
      const flag = oflag === O_RDONLY ? FREAD : oflag === O_WRONLY ? FWRITE : FREAD | FWRITE;
      const { driver } = this.#k.device(dev)!;
      const rc = await this.#k.call(this.pid, driver, 'open', [dev, flag, OTYP_CHR, this.cred]);
      if (rc !== 0) throw this.#error(rc, 'open');
      this.#k.countOpen(dev, 1);
      let fd = 3;
      while (this.#files.has(fd)) fd++;
      this.#files.set(fd, { dev, flag, offset: 0, refs: 1 });
      return fd;
    });
  }

  /** close(2). The driver's close runs when the last descriptor of the device closes and nothing is mapped. */
  async close(fd: number): Promise<void> {
    this.#assertRunning();
    const file = this.#file(fd, 'close');
    this.#files.delete(fd);
    return runSyscall(() => this.#release(file));
  }

  /**
   * read(2) into [addr, addr + len) of this process's memory; returns the bytes read. (`copy`, internal: a
   * client process's buffer, lib/kernel/remote.)
   */
  async read(fd: number, addr: bigint, len: number, copy?: UserCopy): Promise<number> {
    return this.#transfer(fd, addr, len, 'read', copy);
  }

  /** write(2) from [addr, addr + len) of this process's memory; returns the bytes written. */
  async write(fd: number, addr: bigint, len: number, copy?: UserCopy): Promise<number> {
    return this.#transfer(fd, addr, len, 'write', copy);
  }

  /** ioctl(2): the driver's return value (an errno ≠ 0 rejects). */
  async ioctl(fd: number, cmd: number, arg?: unknown): Promise<void> {
    this.#assertRunning();
    const file = this.#file(fd, 'ioctl');
    cmd = integer(cmd, 'cmd', 0, 0xffffffff);
    return runSyscall(async () => {
      const { driver } = this.#k.device(file.dev)!;
      if (typeof driver.ioctl !== 'function') throw this.#error(ENOTTY, 'ioctl');
      const rc = await this.#k.call(this.pid, driver, 'ioctl', [file.dev, cmd, arg, file.flag, this.cred]);
      if (rc !== 0) throw this.#error(rc, 'ioctl');
    });
  }

  /**
   * mmap(2). `fd` is -1 with MAP_ANONYMOUS for anonymous memory, else a descriptor of a device whose driver
   * has a mapping interface. Returns the real address of the mapping.
   */
  async mmap(addr: bigint, len: number, prot: number, flags: number, fd: number, off: number): Promise<bigint> {
    this.#assertRunning();
    const at = this.#userAddr(addr);
    len = integer(len, 'len');
    prot = integer(prot, 'prot', 0, 0xffffffff);
    flags = integer(flags, 'flags', 0, 0xffffffff);
    fd = integer(fd, 'fd', -1, 0x7fffffff);
    off = integer(off, 'off');
    return runSyscall(() => this.#serial(() => this.#mmap(at, len, prot, flags, fd, off)));
  }

  /** munmap(2) of [addr, addr + len): whole pages; ranges with nothing mapped are fine. */
  async munmap(addr: bigint, len: number): Promise<void> {
    this.#assertRunning();
    const a = this.#userAddr(addr);
    len = integer(len, 'len');
    return runSyscall(() => this.#serial(() => this.#withinMapLimit('munmap', async () => {
      if (len === 0 || a % pageSize !== 0 || !this.as.contains(a, len)) throw this.#error(EINVAL, 'munmap');
      const end = a + Math.ceil(len / pageSize) * pageSize;
      // Refused before the first step when the mappings it may split could pass devmap's budget (map-count.ts):
      // like Linux, which makes its splits before it removes anything.
      const splits = this.#splitsIn(a, end);
      if (splits > 0 && !haveMapSlots(splits)) throw this.#error(ENOMEM, 'munmap');
      for (const seg of this.as.overlapping(a, end - a)) {
        const from = Math.max(seg.base, a);
        const to = Math.min(seg.end, end);
        const rc = await seg.ops.unmap(seg, from, to - from, 'munmap');
        if (typeof rc === 'number' && rc !== 0) throw this.#error(rc, 'munmap');
      }
    })));
  }

  /** mprotect(2). */
  async mprotect(addr: bigint, len: number, prot: number): Promise<void> {
    this.#assertRunning();
    const a = this.#userAddr(addr);
    len = integer(len, 'len');
    prot = integer(prot, 'prot', 0, 0xffffffff);
    return runSyscall(() => this.#serial(() => this.#withinMapLimit('mprotect', async () => {
      if (a % pageSize !== 0 || (prot & ~7) !== 0 || !this.as.contains(a, len)) throw this.#error(EINVAL, 'mprotect');
      const end = a + Math.ceil(len / pageSize) * pageSize;
      const segs = this.as.overlapping(a, end - a);
      const splits = this.#splitsIn(a, end);
      if (splits > 0 && !haveMapSlots(splits)) throw this.#error(ENOMEM, 'mprotect');
      // Every page must be mapped (ENOMEM otherwise) and allow the protection, before anything changes.
      let cursor = a;
      for (const s of segs) {
        if (s.base > cursor) throw this.#error(ENOMEM, 'mprotect');
        cursor = s.end;
      }
      if (cursor < end) throw this.#error(ENOMEM, 'mprotect');
      for (const s of segs) {
        const rc = s.ops.setprot(s, Math.max(s.base, a), Math.min(s.end, end) - Math.max(s.base, a), prot);
        if (rc !== 0) throw this.#error(rc, 'mprotect');
      }
    })));
  }

  /**
   * Touches [addr, addr + len) as the CPU would for `rw`: this is the page fault. A driver's fault handler
   * (devmap_access) runs for pages without a valid translation; a failure is an error with code 'SIGSEGV'
   * (nothing mapped there, or not with that protection) or 'SIGBUS' (the driver refused).
   */
  async access(addr: bigint, len: number, rw: Rw = 'read'): Promise<void> {
    this.#assertRunning();
    const a = this.#userAddr(addr);
    len = integer(len, 'len', 1);
    if (!RW.includes(rw)) throw invalidArgValue(`Expected 'read', 'write', 'exec' or 'other' for rw but received ${typeof rw === 'string' ? JSON.stringify(rw) : typeof rw}`);
    return runSyscall(() => this.#serial(() => this.#fault(a, len, rw)));
  }

  /**
   * An ArrayBuffer over [addr, addr + len) of this process's memory, after faulting it in for writing. When
   * those pages of shared memory are unmapped, unloaded or protected it reaches them no more (it reads zeros:
   * an alias of them turned to trash, lib/memory/mapping.ts); over private memory it keeps working, as every
   * devmap view does, and a lower protection waits for it.
   */
  async view(addr: bigint, len: number): Promise<ArrayBuffer> {
    this.#assertRunning();
    const a = this.#userAddr(addr);
    len = integer(len, 'len', 1);
    return runSyscall(() => this.#serial(async () => {
      await this.#fault(a, len, 'write');
      const piece = this.as.pieceFor(a, len);
      if (typeof piece === 'number') {
        throw new DevmapError('ERR_DEVMAP_VIEW_SPAN', 'The range crosses mappings; take a view of each mapping');
      }
      return piece.mapping.view(a - piece.addr, len);
    }));
  }

  /**
   * fork(2): a child with a copy of every mapping and descriptor. When a segment driver refuses (devmap_dup
   * fails), the refusing segment has already freed its partial copy — as as_dup() in illumos frees the new
   * segment first (usr/src/uts/common/vm/vm_as.c) — and then the child's earlier copies are unmapped in
   * address order by its exit.
   */
  async fork(): Promise<Process> {
    this.#assertRunning();
    return runSyscall(() => this.#serial(async () => {
      const child = this.#k.spawnChild(this);
      try {
        for (const seg of [...this.as.segments]) await seg.ops.dup(seg, child.as);
      } catch (err) {
        await child.exit();
        const errno = (err as { errno?: unknown }).errno;
        if (typeof errno === 'number') throw err;
        throw syscallError(ENOMEM, 'fork', this.pid, err);
      }
      for (const [fd, file] of this.#files) {
        file.refs++;
        child.#files.set(fd, file);
        this.#k.countOpen(file.dev, 1);
      }
      return child;
    }));
  }

  /**
   * exit(2): closes every descriptor, then unmaps everything (every driver sees its unmaps) and frees the address
   * space — closeall() before relvm(), as illumos' proc_exit() does.
   */
  exit(): Promise<void> {
    if (this.#exited) return Promise.resolve();
    return runSyscall(() => this.#serial(async () => {
      if (this.#exited) return;
      // Refused before anything changes: the pages of a held Mutex cannot go (its words are on this thread's
      // robust list), and an exit that stopped halfway would leave the process without descriptors or memory.
      if (this.holdsMutex()) {
        throw new DevmapError('ERR_DEVMAP_BUSY', `exit: a Mutex in the memory of process ${this.pid} is held by this thread; unlock it first (nothing was changed)`);
      }
      for (const [fd, file] of [...this.#files]) {
        this.#files.delete(fd);
        await this.#release(file);
      }
      for (const seg of [...this.as.segments]) await seg.ops.unmap(seg, seg.base, seg.len, 'exit');
      this.as.destroy();
      this.#exited = true;
      this.#k.reap(this);
    }, true));
  }

  /** @internal True when a Mutex in this process's memory is held by this thread (exit() refuses meanwhile). */
  holdsMutex(): boolean {
    return !this.#exited && this.as.holdsMutex();
  }

  /** The process's mappings, like pmap(1). */
  pmap(): PmapEntry[] {
    return this.as.pmap((dev) => this.kernel.deviceName(dev));
  }

  // --- internals -----------------------------------------------------------------------------------

  async #mmap(addr: number, len: number, prot: number, flags: number, fd: number, off: number): Promise<bigint> {
    const type = flags & MAP_TYPE;
    // SPEC A.3.1 ([grow] smmap_common): checked before any driver is called.
    if ((flags & ~MAP_KNOWN) !== 0 || (type !== MAP_SHARED && type !== MAP_PRIVATE)) throw this.#error(EINVAL, 'mmap');
    if (len === 0 || off % pageSize !== 0 || (prot & ~7) !== 0) throw this.#error(EINVAL, 'mmap');
    const size = Math.ceil(len / pageSize) * pageSize;
    let at: number;
    if (flags & MAP_FIXED) {
      if (addr % pageSize !== 0 || !this.as.contains(addr, size)) throw this.#error(EINVAL, 'mmap');
      at = addr;
    } else {
      at = this.as.findFree(size);
      if (at === 0) throw this.#error(ENOMEM, 'mmap');
    }
    // MAP_FIXED: what is mapped in the range goes when the new mapping is placed, not before (see the essay).
    let replaced = false;
    const replace = async () => {
      if (replaced || !(flags & MAP_FIXED)) return;
      replaced = true;
      for (const seg of this.as.overlapping(at, size)) {
        const from = Math.max(seg.base, at);
        await seg.ops.unmap(seg, from, Math.min(seg.end, at + size) - from, 'replace');
      }
    };
    if (flags & MAP_ANONYMOUS) {
      if (fd !== -1) throw this.#error(EINVAL, 'mmap');
      await replace();
      const seg = mapAnonymousSegment(this.as, at, size, prot, type);
      if (typeof seg === 'number') throw this.#error(seg, 'mmap');
      return BigInt(at);
    }
    const file = this.#files.get(fd);
    if (!file) throw this.#error(EBADF, 'mmap');
    const device = this.#k.device(file.dev)!;
    if (!device.mapper) throw this.#error(ENODEV, 'mmap');
    let maxprot = PROT_ALL;
    if (type === MAP_SHARED && (file.flag & FWRITE) === 0) maxprot &= ~PROT_WRITE;
    if ((file.flag & FREAD) === 0) throw this.#error(EACCES, 'mmap');
    const result = await device.mapper.mmap({
      kernel: this.kernel, proc: this, dev: file.dev, driver: device.driver, addr: at, len: size, off,
      prot, maxprot, type, flags, replace,
    });
    if (typeof result === 'number') throw this.#error(result, 'mmap');
    return BigInt(result.base);
  }

  async #fault(addr: number, len: number, rw: Rw): Promise<void> {
    let cursor = addr;
    const end = addr + len;
    while (cursor < end) {
      const seg = this.as.segmentAt(cursor);
      if (!seg) throw faultError('SIGSEGV', cursor, this.pid);
      const to = Math.min(seg.end, end);
      const rc = await seg.ops.fault(seg, cursor, to - cursor, rw);
      if (rc === EFAULT) throw faultError('SIGSEGV', cursor, this.pid);
      if (rc !== 0) throw faultError('SIGBUS', cursor, this.pid, rc);
      cursor = to;
    }
  }

  async #transfer(fd: number, addr: bigint, len: number, syscall: 'read' | 'write', copy?: UserCopy): Promise<number> {
    this.#assertRunning();
    const file = this.#file(fd, syscall);
    this.#userAddr(addr);
    len = integer(len, 'len');
    if (copy !== undefined && (!(copy.bytes instanceof Uint8Array) || copy.bytes.length !== len || !Number.isInteger(copy.valid) || copy.valid < 0 || copy.valid > len)) {
      throw typeError('{ bytes: a Uint8Array of len bytes, valid: 0..len }', 'copy', copy);
    }
    return runSyscall(async () => {
      const want = syscall === 'read' ? FREAD : FWRITE;
      if ((file.flag & want) === 0) throw this.#error(EBADF, syscall);
      const { driver } = this.#k.device(file.dev)!;
      if (typeof driver[syscall] !== 'function') throw this.#error(ENXIO, syscall);
      const uio = makeUio(this.as, [{ base: addr, len }], file.offset, syscall === 'read' ? UIO_READ : UIO_WRITE, copy ?? null);
      const rc = await this.#k.call(this.pid, driver, syscall, [file.dev, uio, this.cred]);
      const moved = len - uio.resid;
      file.offset += moved;
      if (rc !== 0 && moved === 0) throw this.#error(rc, syscall);
      return moved;
    });
  }

  async #release(file: OpenFile): Promise<void> {
    file.refs--;
    const left = this.#k.countOpen(file.dev, -1);
    if (left === 0 && this.#k.mappedPages(file.dev) === 0) await this.#k.closeDevice(file.dev, this.pid, file.flag);
  }

  #file(fd: number, syscall: string): OpenFile {
    if (typeof fd !== 'number') throw typeError('a descriptor number', 'fd', fd);
    const file = Number.isInteger(fd) ? this.#files.get(fd) : undefined;
    if (!file) throw this.#error(EBADF, syscall);
    return file;
  }

  #userAddr(addr: unknown): number {
    if (typeof addr !== 'bigint') throw typeError('a bigint address', 'addr', addr);
    if (addr < 0n || addr > BigInt(Number.MAX_SAFE_INTEGER)) throw rangeError('a user address', 'addr', addr);
    return Number(addr);
  }

  /** The failed system call's error; a driver exception raised during the call is its cause. */
  #error(errno: number, syscall: string) {
    return syscallError(errno, syscall, this.pid);
  }

  /**
   * The worst case of new mappings a change of [from, to) makes: a real mapping that the range ends inside is cut
   * (with the aliases of its views); one wholly inside is not.
   */
  #splitsIn(from: number, to: number): number {
    let cut = 0;
    for (const seg of this.as.overlapping(from, to - from)) {
      for (const p of seg.pieces) if ((p.addr < from && p.addr + p.len > from) || (p.addr < to && p.addr + p.len > to)) cut++;
    }
    return 4 * cut;
  }

  /**
   * `fn`, with devmap's VMA budget refusing (ERR_DEVMAP_MAP_COUNT) turned into what a real kernel says when a
   * change would pass its own limit of mappings: ENOMEM, with devmap's error as the cause.
   */
  async #withinMapLimit<T>(syscall: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_DEVMAP_MAP_COUNT') throw syscallError(ENOMEM, syscall, this.pid, err);
      throw err;
    }
  }

  #serial<T>(fn: () => Promise<T>, evenIfExited = false): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#exited && !evenIfExited) throw new DevmapError('ERR_DEVMAP_PROCESS_EXITED', `Process ${this.pid} has exited`);
      return fn();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #assertRunning(): void {
    if (this.#exited) throw new DevmapError('ERR_DEVMAP_PROCESS_EXITED', `Process ${this.pid} has exited`);
  }
}

const RW: readonly unknown[] = ['read', 'write', 'exec', 'other'];

/** The error an access gets where a real process would get a signal. */
function faultError(signal: 'SIGSEGV' | 'SIGBUS', addr: number, pid: number, errno?: number): DevmapError {
  const cause = causeOfSyscall();
  const err = new DevmapError(signal, `${signal} at 0x${addr.toString(16)} in process ${pid}` + (errno ? ` (driver returned ${errno})` : ''), cause === undefined ? undefined : { cause });
  Object.assign(err, { address: BigInt(addr), pid, signal });
  return err;
}

