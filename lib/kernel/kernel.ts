/*
 * The simulated kernel: one arena of physical memory, a device switch, processes and a trace of every driver
 * entry point call.
 *
 *  - Devices. install(name, driver) gives the driver a major number; its minors are dev_t values made by
 *    makedev(major, minor) and reached by path ("/dev/<name>" for minor 0, more with mknod()). A driver is a
 *    character-device switch: open, close, read, write, ioctl, and one mapping interface — IRIX drvmap
 *    (map/unmap, lib/irix) or the Solaris devmap framework (devmap, lib/ddi). The mapping interfaces are
 *    DeviceMappers handed to the constructor (the package's Kernel hands it both), so this layer knows none of
 *    them. install() refuses an entry point no interface of this kernel knows (a misspelling gets a hint) and a
 *    driver that would map through two interfaces.
 *  - Entry points may be synchronous or return a Promise. They return 0 (or nothing) for success or an errno.
 *    A driver that throws is a driver bug: the entry point counts as EIO, the system call's error carries the
 *    exception as its `cause`, and the kernel stays consistent.
 *  - Open and map counts per device decide when close(9E) runs: on the last close when nothing is mapped,
 *    or when the last mapping goes away after the last close (SPEC A.6 prologue, B.1).
 *  - Tracing: every entry point call emits an 'entry' event (which entry point, which process, arguments,
 *    result, error, duration). Nothing is measured when no listener is attached.
 */
import { EventEmitter } from 'node:events';
import { DevmapError, closest, describe, integer, invalidArgValue, options, string, typeError } from '../errors';
import { pageSize } from '../memory/page';
import { Arena, KM_SLEEP } from './arena';
import {
  CHAR_ENTRY_POINTS, FREAD, FWRITE, NBITSMINOR, OTYP_CHR, getmajor, getminor, makedev, type CharDriver,
  type DeviceMapper, type EntryTrace,
} from './device';
import { EIO } from './errno';
import { noteDriverError } from './syscall';
import { createProcess, type Process } from './process';
import { uiomove, type Uio } from './uio';
import { listen as listenHost, type KernelHost, type ListenOptions } from './remote/host';

interface Device {
  name: string;
  driver: CharDriver;
  major: number;
  mapper: DeviceMapper | undefined;
  opens: Map<number, number>;
  mapped: Map<number, number>;
}

/**
 * The kernel's own side, for the layers that implement it (process.ts, the mapping interfaces in lib/irix and
 * lib/ddi); reached through kernelInternals(), which the package does not export.
 */
export interface KernelInternals {
  /** The dev_t at `path`, or undefined. */
  lookup(path: string): number | undefined;
  /** The installed driver behind `dev`. */
  device(dev: number): Device | undefined;
  /** A process forked from `parent` (its address space is still empty). */
  spawnChild(parent: Process): Process;
  /** Forgets an exited process. */
  reap(p: Process): void;
  /** Calls a driver entry point and turns what it does into an errno (see Kernel's essay). */
  call(pid: number | null, driver: object, entry: string, args: unknown[]): Promise<number>;
  /** Adds `delta` to the open count of `dev`; returns the new count. */
  countOpen(dev: number, delta: number): number;
  /** Adds or removes mapped pages; true when the device is now neither open nor mapped. */
  countMapped(dev: number, deltaPages: number): boolean;
  /** close(9E): the last descriptor closed and nothing mapped. */
  closeDevice(dev: number, pid: number | null, flag?: number): Promise<void>;
  mappedPages(dev: number): number;
}

let internalsOf: (k: Kernel) => KernelInternals;
/** The kernel's internals (not part of the package's API). */
export function kernelInternals(kernel: Kernel): KernelInternals {
  return internalsOf(kernel);
}

export interface KernelOptions {
  /** Bytes of physical memory (the arena). Default 64 MiB. */
  arenaSize?: number;
  /** Bytes of address space reserved for each process. Default 256 MiB. */
  addressSpaceSize?: number;
  /**
   * The mapping interfaces drivers of this kernel may use. The package's Kernel passes IRIX drvmap and the devmap
   * framework; a kernel made without any maps anonymous memory only (a device mmap is ENODEV).
   */
  mappers?: readonly DeviceMapper[];
}

const DRIVER_NAME = /^[A-Za-z][\w.-]{0,31}$/;

export class Kernel extends EventEmitter {
  readonly arena: Arena;
  readonly addressSpaceSize: number;
  readonly #mappers: readonly DeviceMapper[];
  readonly #devices = new Map<number, Device>();
  readonly #nodes = new Map<string, number>();
  readonly #processes = new Map<number, Process>();
  #nextPid = 100;
  #down = false;
  readonly #internals: KernelInternals;

  static {
    internalsOf = (k) => {
      if (!(k instanceof Kernel)) throw typeError('a Kernel', 'kernel', k);
      return k.#internals;
    };
  }

  constructor(opts?: KernelOptions) {
    super();
    const o = options<KernelOptions>(opts, 'options', ['arenaSize', 'addressSpaceSize', 'mappers']);
    this.#mappers = mapperList(o.mappers);
    this.addressSpaceSize = o.addressSpaceSize === undefined ? 256 * 2 ** 20 : integer(o.addressSpaceSize, 'options.addressSpaceSize', pageSize, 2 ** 40);
    this.arena = new Arena(o.arenaSize === undefined ? 64 * 2 ** 20 : integer(o.arenaSize, 'options.arenaSize', pageSize, 2 ** 40));
    this.#internals = {
      lookup: (path) => this.#nodes.get(path),
      device: (dev) => this.#devices.get(Math.floor(dev / 2 ** NBITSMINOR)),
      spawnChild: (parent) => this.#newProcess(parent),
      reap: (p) => void this.#processes.delete(p.pid),
      call: (pid, driver, entry, args) => this.#call(pid, driver, entry, args),
      countOpen: (dev, delta) => {
        const d = this.#devices.get(getmajor(dev))!;
        const n = (d.opens.get(dev) ?? 0) + delta;
        if (n === 0) d.opens.delete(dev);
        else d.opens.set(dev, n);
        return n;
      },
      countMapped: (dev, deltaPages) => {
        const d = this.#devices.get(getmajor(dev))!;
        const n = (d.mapped.get(dev) ?? 0) + deltaPages;
        if (n <= 0) d.mapped.delete(dev);
        else d.mapped.set(dev, n);
        return n <= 0 && !d.opens.has(dev);
      },
      closeDevice: async (dev, pid, flag = FREAD | FWRITE) => {
        const d = this.#devices.get(getmajor(dev));
        const cred = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: pid ?? 0 };
        if (d) await this.#call(pid, d.driver, 'close', [dev, flag, OTYP_CHR, cred]);
      },
      mappedPages: (dev) => this.#devices.get(getmajor(dev))?.mapped.get(dev) ?? 0,
    };
  }

  /**
   * Installs a driver; returns its major number. Its minor 0 is reachable at /dev/<name>. The driver's
   * function-valued members must all be entry points this kernel knows (the character ones and those of one
   * mapping interface): a misspelled one is refused with a hint instead of never being called.
   */
  install(name: string, driver: CharDriver): number {
    this.#assertUp();
    name = string(name, 'name');
    if (!DRIVER_NAME.test(name)) {
      throw invalidArgValue(`Expected a driver name like "vdk" (a letter, then up to 31 letters, digits, _ . -) for name but received ${JSON.stringify(name)}`);
    }
    if (driver === null || typeof driver !== 'object') throw typeError('an object of entry points', 'driver', driver);
    const mapper = this.#mapperOf(driver);
    for (const d of this.#devices.values()) {
      if (d.name === name) throw new DevmapError('ERR_DEVMAP_DRIVER_EXISTS', `A driver named ${name} is installed already`);
    }
    const major = this.#devices.size + 1;
    this.#devices.set(major, { name, driver, major, mapper, opens: new Map(), mapped: new Map() });
    this.#nodes.set(`/dev/${name}`, makedev(major, 0));
    return major;
  }

  /** Makes a device node: `path` reaches (major, minor). */
  mknod(path: string, dev: number): void {
    this.#assertUp();
    path = string(path, 'path');
    if (!/^\/dev\/[^/\0]+$/.test(path)) throw invalidArgValue(`Expected a path under /dev/ for path but received ${JSON.stringify(path)}`);
    if (!this.#devices.has(getmajor(dev))) throw new DevmapError('ERR_DEVMAP_NO_DRIVER', `No driver has major ${getmajor(dev)}`);
    this.#nodes.set(path, dev);
  }

  /** The device's name as pmap shows it: name(major,minor). */
  deviceName(dev: number): string {
    const d = this.#devices.get(getmajor(dev));
    return `${d ? d.name : '?'}(${getmajor(dev)},${getminor(dev)})`;
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
  async listen(path: string, options?: ListenOptions): Promise<KernelHost> {
    this.#assertUp();
    const host = await listenHost(this, path, options);
    this.#hosts.add(host);
    return host;
  }

  /** Hosts serving this kernel: shutdown() closes them first (their clients exit like the others). */
  readonly #hosts = new Set<KernelHost>();

  /** A new process with an empty address space. */
  spawn(): Process {
    this.#assertUp();
    return this.#newProcess(null);
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
    // As exit(): refused before anything changes while a held Mutex lives in a process's memory.
    const holding = this.processes.find((p) => p.holdsMutex());
    if (holding !== undefined) {
      throw new DevmapError('ERR_DEVMAP_BUSY', `shutdown: a Mutex in the memory of process ${holding.pid} is held by this thread; unlock it first (nothing was changed)`);
    }
    for (const h of this.#hosts) await h.close();
    this.#hosts.clear();
    for (const p of this.processes) {
      try {
        await p.exit();
      } catch (err) {
        // A Mutex locked since the check above (between two exits): the processes before this one are gone.
        if ((err as { code?: unknown }).code !== 'ERR_DEVMAP_BUSY') throw err;
        throw new DevmapError('ERR_DEVMAP_BUSY', `shutdown: stopped at process ${p.pid}, whose memory holds a Mutex this thread locked meanwhile; the processes before it have exited. Unlock it and call shutdown() again`, { cause: err });
      }
    }
    this.#down = true;
    this.arena.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  /** The last exception a driver entry point threw (or a malformed return it made). */
  lastDriverError: unknown = undefined;

  #newProcess(parent: Process | null): Process {
    const p = createProcess(this, this.#internals, this.#nextPid++, parent);
    this.#processes.set(p.pid, p);
    return p;
  }

  /**
   * Calls a driver entry point and turns what it does into an errno: 0 / undefined is success, a positive
   * integer is that errno, a throw or anything else is EIO. The exception is kept on `lastDriverError` and
   * becomes the cause of the system call's error.
   */
  async #call(pid: number | null, driver: object, entry: string, args: unknown[]): Promise<number> {
    const traced = this.listenerCount('entry') > 0;
    const t0 = traced ? process.hrtime.bigint() : 0n;
    let result: unknown;
    let error: unknown;
    try {
      const fn = (driver as Record<string, unknown>)[entry];
      if (typeof fn !== 'function') return 0;
      result = fn.apply(driver, args);
      if (result instanceof Promise) result = await result; // a synchronous entry point costs no extra tick
    } catch (err) {
      error = err;
    }
    if (error === undefined && result !== undefined && result !== 0 && !(typeof result === 'number' && Number.isInteger(result) && result > 0)) {
      error = new DevmapError('ERR_DEVMAP_DRIVER_RESULT', `${entry} returned ${describe(result)}; expected 0 or an errno`);
    }
    if (error !== undefined) {
      this.lastDriverError = error;
      noteDriverError(error);
      this.emit('driver-error', { entry, pid, error });
    }
    if (traced) {
      const trace: EntryTrace = {
        entry, driver: this.#driverName(driver), pid, args, result, durationNs: Number(process.hrtime.bigint() - t0),
      };
      if (error !== undefined) trace.error = error;
      this.emit('entry', trace);
    }
    if (error !== undefined) return EIO;
    return result === undefined ? 0 : (result as number);
  }

  /** The one mapping interface of this kernel that `driver` uses (or none); refuses unknown entry points. */
  #mapperOf(driver: object): DeviceMapper | undefined {
    const using = this.#mappers.filter((m) => m.handles(driver));
    if (using.length > 1) {
      throw invalidArgValue(
        `A driver maps through one interface, but this one has the entry points of ${using.map((m) => `${m.name} (${m.entryPoints.join(', ')})`).join(' and ')}`,
      );
    }
    const known = [...CHAR_ENTRY_POINTS, ...this.#mappers.flatMap((m) => m.entryPoints)];
    for (const key of functionMembers(driver)) {
      if (known.includes(key)) continue;
      const hint = closest(key, known);
      throw invalidArgValue(
        `Unknown entry point ${JSON.stringify(key)} in driver` + (hint ? ` (did you mean ${JSON.stringify(hint)}?)` : '') +
          `; entry points: ${known.join(', ')}`,
      );
    }
    return using[0];
  }

  #driverName(driver: object): string {
    for (const d of this.#devices.values()) if (d.driver === driver) return d.name;
    return '?';
  }

  #assertUp(): void {
    if (this.#down) throw new DevmapError('ERR_DEVMAP_KERNEL_DOWN', 'This kernel has been shut down');
  }
}

function mapperList(value: unknown): readonly DeviceMapper[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw typeError('an array of mapping interfaces', 'options.mappers', value);
  return value.map((m, i) => {
    const ok = m !== null && typeof m === 'object' && typeof m.name === 'string' && Array.isArray(m.entryPoints) &&
      typeof m.handles === 'function' && typeof m.mmap === 'function';
    if (!ok) throw typeError('a mapping interface (name, entryPoints, handles, mmap)', `options.mappers[${i}]`, m);
    return m as DeviceMapper;
  });
}

/**
 * The names of a driver's function-valued members: own properties and, for a driver made from a class, its
 * prototypes' methods. Accessors are not called (a getter could do anything).
 */
function functionMembers(driver: object): string[] {
  const names: string[] = [];
  for (let o: object | null = driver; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Object.getOwnPropertyNames(o)) {
      if (key === 'constructor') continue;
      const desc = Object.getOwnPropertyDescriptor(o, key)!;
      if (typeof desc.value === 'function' && !names.includes(key)) names.push(key);
    }
  }
  return names;
}

