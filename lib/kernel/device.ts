/*
 * The device switch: what a driver is, as the kernel sees it, and what a mapping interface is.
 *
 * A driver is a character-device switch — open, close, read, write, ioctl — plus the entry points of at most one
 * mapping interface (IRIX drvmap: map/unmap, lib/irix; the Solaris devmap framework: devmap, lib/ddi). A mapping
 * interface is a DeviceMapper handed to the Kernel when it is made: the kernel layer knows none of them, and
 * nothing is registered by importing a module. The types here are shared by kernel.ts and process.ts, which
 * therefore do not import each other's values.
 */
import { integer } from '../errors';
import type { Kernel } from './kernel';
import type { Process } from './process';
import type { Segment } from './as';
import type { Uio } from './uio';

export const NBITSMINOR = 18;
export const MAXMIN = (1 << NBITSMINOR) - 1;
export const MAXMAJ = 0x3fff;

/** makedev(major, minor): a dev_t. */
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
 * A character driver's entry points. There is no index signature: a driver type that extends this one names
 * its mapping interface's entry points (IrixDriver, DevmapDriver), so a misspelled entry point is a type error,
 * and Kernel#install refuses one at run time.
 */
export interface CharDriver {
  open?(dev: number, flag: number, otyp: number, cred: Cred): EntryResult;
  close?(dev: number, flag: number, otyp: number, cred: Cred): EntryResult;
  read?(dev: number, uio: Uio, cred: Cred): EntryResult;
  write?(dev: number, uio: Uio, cred: Cred): EntryResult;
  ioctl?(dev: number, cmd: number, arg: unknown, mode: number, cred: Cred): EntryResult;
}

/** The character entry points every driver may have. */
export const CHAR_ENTRY_POINTS: readonly string[] = ['open', 'close', 'read', 'write', 'ioctl'];

/** A mapping interface (IRIX drvmap, the devmap framework): creates the segment for a device mmap. */
export interface DeviceMapper {
  readonly name: string;
  /** The driver entry points this interface calls, beside the character ones. */
  readonly entryPoints: readonly string[];
  /** True when this driver maps through this interface. */
  handles(driver: object): boolean;
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
  /**
   * Removes whatever is mapped in [addr, addr + len) today (MAP_FIXED over existing mappings). The mapper calls
   * it once the driver has accepted the mapping and before it places the new pages — devmap_device's place in
   * SPEC A.3.3 — so a mapping the driver refuses leaves the old one intact.
   */
  replace(): Promise<void>;
}

/** One call of a driver entry point, as the 'entry' event reports it. */
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
