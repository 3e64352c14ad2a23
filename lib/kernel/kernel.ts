/*
 * The simulated kernel: one arena of physical memory, a device switch, processes and a trace of every driver
 * entry point call.
 *
 *  - Devices. install(name, driver) gives the driver a major number; its minors are dev_t values made by
 *    makedev(major, minor) and reached by path ("/dev/<name>" for minor 0, more with mknod()). A driver is a
 *    character-device switch: open, close, read, write, ioctl, and one mapping interface — IRIX drvmap
 *    (map/unmap, lib/irix) or the Solaris devmap framework (devmap, lib/ddi). Each mapping interface
 *    registers a DeviceMapper here, so this layer knows none of them.
 *  - Entry points may be synchronous or return a Promise. They return 0 (or nothing) for success or an errno.
 *    A driver that throws is a driver bug: the system call fails with EIO (the exception is the error's
 *    cause) and the kernel stays consistent.
 *  - Open and map counts per device decide when close(9E) runs: on the last close when nothing is mapped,
 *    or when the last mapping goes away after the last close (SPEC A.6 prologue, B.1).
 *  - Tracing: every entry point call emits an 'entry' event (which entry point, which process, arguments,
 *    result, error, duration). Nothing is measured when no listener is attached.
 */
import { EventEmitter } from 'node:events';
import { DevmapError, integer, options, string } from '../errors';
import { pageSize } from '../memory/page';
import { Arena, KM_SLEEP } from './arena';
import type { AddressSpace, Segment } from './as';
import { EIO } from './errno';
import { Process } from './process';
import { uiomove, type Uio } from './uio';
import { listen as listenHost, type KernelHost, type ListenOptions } from './remote/host';

export const NBITSMINOR = 18;
export const MAXMIN = (1 << NBITSMINOR) - 1;
export const MAXMAJ = 0x3fff;

export function makedev(major: number, minor: number): number {
  return integer(major, 'major', 0, MAXMAJ) * 2 ** NBITSMINOR + integer(minor, 'minor', 0, MAXMIN);
}
export function getmajor(dev: number): number {
  return Math.floor(integer(dev, 'dev') / 2 ** NBITSMINOR);
}
export function getminor(dev: number): number {
  return integer(dev, 'dev') % 2 ** NBITSMINOR;
}

/** What an entry point returns: 0 / nothing for success, or an errno; maybe through a Promise. */
export type EntryResult = number | void | Promise<number | void>;

export interface Cred {
  uid: number;
  gid: number;
  pid: number;
}

/** open(2) flag bits handed to open(9E)/close(9E). */
export const FREAD = 1;
export const FWRITE = 2;
export const OTYP_CHR = 2;

/**
 * A character driver's entry points. The mapping interface members (map/unmap for IRIX, devmap and friends for
 * the devmap framework) are typed by the layers that implement them.
 */
export interface CharDriver {
  open?(dev: number, flag: number, otyp: number, cred: Cred): EntryResult;
  close?(dev: number, flag: number, otyp: number, cred: Cred): EntryResult;
  read?(dev: number, uio: import('./uio').Uio, cred: Cred): EntryResult;
  write?(dev: number, uio: import('./uio').Uio, cred: Cred): EntryResult;
  ioctl?(dev: number, cmd: number, arg: unknown, mode: number, cred: Cred): EntryResult;
  [entry: string]: unknown;
}

/** A mapping interface (IRIX drvmap, the devmap framework): creates the segment for a device mmap. */
export interface DeviceMapper {
  readonly name: string;
  /** True when this driver maps through this interface. */
  handles(driver: CharDriver): boolean;
  /** Maps [off, off + len) of `dev` at `addr` in `proc`; returns the segment or an errno. */
  mmap(req: MapRequest): Promise<Segment | number>;
}

export interface MapRequest {
  kernel: Kernel;
  proc: Process;
  dev: number;
  driver: CharDriver;
  addr: number;
  len: number;
  off: number;
  prot: number;
  maxprot: number;
  /** MAP_SHARED or MAP_PRIVATE. */
  type: number;
  flags: number;
}

export interface EntryTrace {
  /** The entry point, e.g. 'open', 'map', 'devmap_unmap'. */
  entry: string;
  driver: string;
  pid: number | null;
  args: unknown[];
  result: unknown;
  error?: unknown;
  durationNs: number;
}

interface Device {
  name: string;
  driver: CharDriver;
  major: number;
  opens: Map<number, number>;
  mapped: Map<number, number>;
}

const mappers: DeviceMapper[] = [];

/** Called once by each mapping interface layer (lib/irix, lib/ddi) as it loads. */
export function registerMapper(mapper: DeviceMapper): void {
  if (!mappers.some((m) => m.name === mapper.name)) mappers.push(mapper);
}

export interface KernelOptions {
  /** Bytes of physical memory (the arena). Default 64 MiB. */
  arenaSize?: number;
  /** Bytes of address space reserved for each process. Default 256 MiB. */
  addressSpaceSize?: number;
}

export class Kernel extends EventEmitter {
  readonly arena: Arena;
  readonly addressSpaceSize: number;
  readonly #devices = new Map<number, Device>();
  readonly #nodes = new Map<string, number>();
  readonly #processes = new Map<number, Process>();
  #nextPid = 100;
  #down = false;

  constructor(opts?: KernelOptions) {
    super();
    const o = options<KernelOptions>(opts, 'options', ['arenaSize', 'addressSpaceSize']);
    this.addressSpaceSize = o.addressSpaceSize === undefined ? 256 * 2 ** 20 : integer(o.addressSpaceSize, 'options.addressSpaceSize', pageSize, 2 ** 40);
    this.arena = new Arena(o.arenaSize === undefined ? 64 * 2 ** 20 : integer(o.arenaSize, 'options.arenaSize', pageSize, 2 ** 40));
  }

  /** Installs a driver; returns its major number. Its minor 0 is reachable at /dev/<name>. */
  install(name: string, driver: CharDriver): number {
    this.#assertUp();
    name = string(name, 'name');
    if (!/^[A-Za-z][\w.-]{0,31}$/.test(name)) throw new RangeError(`Expected a driver name like "vdk" for name but received ${JSON.stringify(name)}`);
    if (driver === null || typeof driver !== 'object') throw new TypeError('Expected an object of entry points for driver');
    for (const d of this.#devices.values()) {
      if (d.name === name) throw new DevmapError('ERR_DEVMAP_DRIVER_EXISTS', `A driver named ${name} is installed already`);
    }
    const major = this.#devices.size + 1;
    this.#devices.set(major, { name, driver, major, opens: new Map(), mapped: new Map() });
    this.#nodes.set(`/dev/${name}`, makedev(major, 0));
    return major;
  }

  /** Makes a device node: `path` reaches (major, minor). */
  mknod(path: string, dev: number): void {
    path = string(path, 'path');
    if (!path.startsWith('/dev/') || path.length < 6) throw new RangeError(`Expected a path under /dev/ for path but received ${JSON.stringify(path)}`);
    if (!this.#devices.has(getmajor(dev))) throw new DevmapError('ERR_DEVMAP_NO_DRIVER', `No driver has major ${getmajor(dev)}`);
    this.#nodes.set(path, dev);
  }

  /** @internal The device paths made by install() and mknod(). */
  nodePaths(): string[] {
    return [...this.#nodes.keys()];
  }

  /**
   * Serves this kernel to real processes on a new Unix socket at `path` (0600: only this uid may connect, unless
   * options.allowUids names more). Each connection is a Process with the peer's credentials; see
   * lib/kernel/remote/host.ts.
   */
  listen(path: string, options?: ListenOptions): Promise<KernelHost> {
    this.#assertUp();
    return listenHost(this, path, options);
  }

  /** @internal The dev_t at `path`, or undefined. */
  lookup(path: string): number | undefined {
    return this.#nodes.get(path);
  }

  /** @internal */
  device(dev: number): Device | undefined {
    return this.#devices.get(Math.floor(dev / 2 ** NBITSMINOR));
  }

  deviceName(dev: number): string {
    const d = this.device(dev);
    return d ? `${d.name}(${getmajor(dev)},${getminor(dev)})` : `?(${getmajor(dev)},${getminor(dev)})`;
  }

  /** A new process with an empty address space. */
  spawn(): Process {
    this.#assertUp();
    const p = new Process(this, this.#nextPid++, null, internalToken);
    this.#processes.set(p.pid, p);
    return p;
  }

  /** @internal Used by fork. */
  spawnChild(parent: Process): Process {
    const p = new Process(this, this.#nextPid++, parent, internalToken);
    this.#processes.set(p.pid, p);
    return p;
  }

  /** @internal */
  reap(p: Process): void {
    this.#processes.delete(p.pid);
  }

  get processes(): Process[] {
    return [...this.#processes.values()];
  }

  // --- kernel functions for drivers (arrow properties, so `const { kmem_alloc } = kernel` works) ---------

  /** kmem_alloc(size, flags): KM_NOSLEEP gives an address or null at once; otherwise a Promise (KM_SLEEP waits). */
  readonly kmem_alloc = (size: number, flags: number = KM_SLEEP) => this.arena.alloc(size, flags, false);
  /** kmem_zalloc: kmem_alloc of zeroed memory. */
  readonly kmem_zalloc = (size: number, flags: number = KM_SLEEP) => this.arena.alloc(size, flags, true);
  /** kmem_free(addr, size): exactly one earlier allocation, or a KernelPanic. */
  readonly kmem_free = (addr: number, size: number): void => this.arena.free(addr, size);
  /** bzero(kaddr, n). */
  readonly bzero = (kaddr: number, n: number): void => void this.arena.bytes(kaddr, n).fill(0);
  /** bcopy(from, to, n): overlapping ranges are copied as by memmove. */
  readonly bcopy = (from: number, to: number, n: number): void => void this.arena.bytes(to, n).set(this.arena.bytes(from, n));
  /** The kernel's bytes at [kaddr, kaddr + n): a typed view of kernel memory. */
  readonly kbytes = (kaddr: number, n: number): Uint8Array => this.arena.bytes(kaddr, n);
  /** uiomove(kaddr, n, rw, uio): 0 or EFAULT. */
  readonly uiomove = (kaddr: number, n: number, rw: number, uio: Uio): number => uiomove(this.arena, kaddr, n, rw, uio);

  /** Exits every process, then releases physical memory. */
  async shutdown(): Promise<void> {
    if (this.#down) return;
    for (const p of this.processes) await p.exit();
    this.#down = true;
    this.arena.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  /**
   * Calls a driver entry point and turns what it does into an errno: 0 / undefined is success, a positive
   * integer is that errno, a throw or anything else is EIO (the cause is kept on `lastDriverError`).
   */
  async call(pid: number | null, driver: CharDriver, entry: string, args: unknown[]): Promise<number> {
    const fn = driver[entry];
    if (typeof fn !== 'function') return 0;
    const traced = this.listenerCount('entry') > 0;
    const t0 = traced ? process.hrtime.bigint() : 0n;
    let result: unknown;
    let error: unknown;
    try {
      result = fn.apply(driver, args);
      if (result instanceof Promise) result = await result; // a synchronous entry point costs no extra tick
    } catch (err) {
      error = err;
      this.lastDriverError = err;
      this.emit('driver-error', { entry, pid, error: err });
    }
    if (traced) {
      const trace: EntryTrace = {
        entry, driver: this.#driverName(driver), pid, args, result, durationNs: Number(process.hrtime.bigint() - t0),
      };
      if (error !== undefined) trace.error = error;
      this.emit('entry', trace);
    }
    if (error !== undefined) return EIO;
    if (result === undefined || result === 0) return 0;
    if (typeof result === 'number' && Number.isInteger(result) && result > 0) return result;
    this.lastDriverError = new TypeError(`${entry} returned ${String(result)}; expected 0 or an errno`);
    return EIO;
  }

  /** The last exception a driver entry point threw (or a malformed return it made). */
  lastDriverError: unknown = undefined;

  /** @internal The mapping interface a driver uses, if any. */
  mapperFor(driver: CharDriver): DeviceMapper | undefined {
    return mappers.find((m) => m.handles(driver));
  }

  // --- open and map counts ---------------------------------------------------------------------------

  /** @internal */
  countOpen(dev: number, delta: number): number {
    const d = this.device(dev)!;
    const n = (d.opens.get(dev) ?? 0) + delta;
    if (n === 0) d.opens.delete(dev);
    else d.opens.set(dev, n);
    return n;
  }

  /** @internal Adds or removes mapped pages; true when the device is now neither open nor mapped. */
  countMapped(dev: number, deltaPages: number): boolean {
    const d = this.device(dev)!;
    const n = (d.mapped.get(dev) ?? 0) + deltaPages;
    if (n <= 0) d.mapped.delete(dev);
    else d.mapped.set(dev, n);
    return n <= 0 && !d.opens.has(dev);
  }

  /** @internal close(9E): the last descriptor closed and nothing mapped. */
  async closeDevice(dev: number, pid: number | null, flag = FREAD | FWRITE): Promise<void> {
    const d = this.device(dev);
    if (d) await this.call(pid, d.driver, 'close', [dev, flag, OTYP_CHR, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: pid ?? 0 }]);
  }

  /** @internal */
  mappedPages(dev: number): number {
    return this.device(dev)?.mapped.get(dev) ?? 0;
  }

  #driverName(driver: CharDriver): string {
    for (const d of this.#devices.values()) if (d.driver === driver) return d.name;
    return '?';
  }

  #assertUp(): void {
    if (this.#down) throw new DevmapError('ERR_DEVMAP_KERNEL_DOWN', 'This kernel has been shut down');
  }
}

export const internalToken = Symbol('devmap.kernel');
export type { AddressSpace };
