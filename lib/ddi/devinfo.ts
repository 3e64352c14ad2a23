/*
 * DevInfo: a device instance (dev_info_t) and its register sets — the device memory devmap_devmem_setup
 * exports. Each register set is a real memory object: a memfd by default, or a POSIX shm segment when it is
 * given a name, so that another real process (a test harness, a device model written in C or Python) can map
 * the same "device pages" with SharedMemory.open(name). The kernel sees a register set through `regs[n].bytes`,
 * its own mapping of it (what ddi_regs_map_setup would give a driver).
 */
import { DevmapError, integer, options, string, typeError } from '../errors';
import type { Mapping } from '../memory/mapping';
import { pageSize } from '../memory/page';
import { SharedMemory } from '../memory/shared-memory';

export interface RegisterSpec {
  /** Bytes; rounded up to whole pages. */
  size: number;
  /** A /dev/shm name to create the register set under, for other processes; default: an anonymous memfd. */
  shm?: string;
}

const constructing = Symbol('devmap.regs');
/** The framework's side of a register set: the descriptor user mappings are made from, and its release. */
let registerInternals: (r: RegisterSet) => { fd: number; destroy(): void };
let newRegisterSet: (spec: RegisterSpec, label: string) => RegisterSet;

export class RegisterSet {
  readonly size: number;
  readonly #memory: SharedMemory;
  readonly #mapping: Mapping;
  readonly bytes: Uint8Array;
  readonly shmName: string | null;

  static {
    newRegisterSet = (spec, label) => new RegisterSet(spec, label, constructing);
    registerInternals = (r) => ({ fd: r.#memory.fd, destroy: () => r.#destroy() });
  }

  private constructor(spec: RegisterSpec, label: string, token: symbol) {
    if (token !== constructing) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'A RegisterSet is made by new DevInfo(name, registers)');
    const o = options<RegisterSpec>(spec, 'register', ['size', 'shm']);
    this.size = Math.ceil(integer(o.size, 'register.size', 1) / pageSize) * pageSize;
    this.shmName = o.shm === undefined ? null : string(o.shm, 'register.shm');
    this.#memory = this.shmName === null ? SharedMemory.memfd(label, this.size) : SharedMemory.create(this.shmName, this.size);
    this.#mapping = this.#memory.map();
    this.bytes = new Uint8Array(this.#mapping.buffer);
  }

  #destroy(): void {
    if (this.#mapping.mapped) this.#mapping.unmap();
    if (this.shmName !== null && !this.#memory.closed) SharedMemory.unlink(this.shmName);
    this.#memory.close();
  }
}

export class DevInfo {
  readonly name: string;
  readonly regs: readonly RegisterSet[];
  #detached = false;

  constructor(name: string, registers: RegisterSpec[] = []) {
    this.name = string(name, 'name');
    if (!Array.isArray(registers)) throw typeError('an array of register specs', 'registers', registers);
    const made: RegisterSet[] = [];
    try {
      registers.forEach((r, i) => made.push(newRegisterSet(r, `${this.name}-reg${i}`)));
    } catch (err) {
      for (const r of made) registerInternals(r).destroy();
      throw err;
    }
    this.regs = made;
  }

  get detached(): boolean {
    return this.#detached;
  }

  /** Releases the register sets (unlinking shm-backed ones). User mappings of them stay valid until unmapped. */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    for (const r of this.regs) registerInternals(r).destroy();
  }

  [Symbol.dispose](): void {
    this.detach();
  }

}

/**
 * Register set `rnumber` of `dip` for the setup helpers, or undefined (not a DevInfo, no such set); a detached
 * device is an error.
 */
export function registerOf(dip: unknown, rnumber: unknown): RegisterSet | undefined {
  if (!(dip instanceof DevInfo)) return undefined;
  if (dip.detached) throw new DevmapError('ERR_DEVMAP_DETACHED', `Device ${dip.name} has been detached`);
  return Number.isInteger(rnumber) ? dip.regs[rnumber as number] : undefined;
}

/** The descriptor behind a register set, for user mappings of it. */
export function registerFd(reg: RegisterSet): number {
  return registerInternals(reg).fd;
}
