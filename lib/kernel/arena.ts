/*
 * Physical memory and kmem.
 *
 * The arena is a memfd: the simulated machine's physical memory. The kernel maps it once; a kernel address
 * is the real virtual address of a byte in that mapping, so a driver can hand it to v_mapphys or
 * devmap_umem_setup and the user mapping that results shows the very same pages (a second real mapping of the
 * same memfd pages, not a copy).
 *
 * kmem_alloc draws from the arena through a resource map whose indices are kernel addresses (the seed's
 * rmalloc example uses a map of kernel addresses the same way). Sizes are rounded up to a cache line (64 bytes),
 * so every allocation is cache aligned (KM_CACHEALIGN always holds). An allocation of a page or more — or any
 * KM_PHYSCONTIG one — is page aligned: the map hands out size + page - 64 units and the slack before and after the
 * aligned block is freed again at once (the classic map accepts partial frees). A table of live allocations
 * checks every kmem_free: the address and size must match one allocation exactly, or the call is a
 * KernelPanic and the arena is left as it was.
 */
import { DevmapError, integer, rangeError, string } from '../errors';
import { SharedMemory } from '../memory/shared-memory';
import type { Mapping } from '../memory/mapping';
import { pageSize } from '../memory/page';
import { ResourceMap } from '../rmap';

export const KM_SLEEP = 0;
export const KM_NOSLEEP = 0x0001;
export const KM_CACHEALIGN = 0x0800;
export const KM_NODESPECIFIC = 0x1000000;
export const KM_PHYSCONTIG = 0x8000;
const KM_FLAGS = KM_NOSLEEP | KM_CACHEALIGN | KM_NODESPECIFIC | KM_PHYSCONTIG;

/** The cache line: the quantum of kmem sizes and the alignment of every allocation. */
export const CACHE_LINE = 64;

/** A kernel panic: the simulated kernel refused an impossible request; nothing was changed. */
export class KernelPanic extends DevmapError {
  constructor(message: string) {
    super('ERR_DEVMAP_KERNEL_PANIC', `panic: ${string(message, 'message')}`);
    this.name = 'KernelPanic';
  }
}

export interface ArenaStats {
  size: number;
  freeBytes: number;
  allocations: number;
  allocatedBytes: number;
}

export class Arena {
  readonly size: number;
  /** The kernel address of the arena's first byte. */
  readonly base: number;
  readonly #memory: SharedMemory;
  readonly #mapping: Mapping;
  readonly #bytes: Uint8Array;
  readonly #map: ResourceMap;
  /** Live allocations: kernel address → rounded size. */
  readonly #live = new Map<number, number>();

  constructor(size: number) {
    this.size = Math.ceil(integer(size, 'arenaSize', pageSize) / pageSize) * pageSize;
    this.#memory = SharedMemory.memfd('devmap-arena', this.size);
    try {
      this.#mapping = this.#memory.map();
    } catch (err) {
      this.#memory.close(); // (the mapping table full, say: the descriptor must not wait for a collection)
      throw err;
    }
    this.base = this.#mapping.rawAddress;
    this.#bytes = new Uint8Array(this.#mapping.buffer);
    this.#map = new ResourceMap(this.size / CACHE_LINE + 2, { name: 'kmem' });
    this.#map.free(this.size, this.base);
  }

  /** The arena's descriptor (a memfd), for mapping its pages into address spaces. */
  get fd(): number {
    return this.#memory.fd;
  }

  /** True when [kaddr, kaddr + len) lies inside the arena. */
  contains(kaddr: number, len = 1): boolean {
    return Number.isInteger(kaddr) && kaddr >= this.base && kaddr + len <= this.base + this.size;
  }

  /** The kernel's bytes at [kaddr, kaddr + len). */
  bytes(kaddr: number, len: number): Uint8Array {
    kaddr = integer(kaddr, 'kaddr');
    len = integer(len, 'len');
    if (!this.contains(kaddr, len)) {
      throw rangeError(`a kernel address range inside the arena [0x${this.base.toString(16)}, +${this.size})`, 'kaddr', `0x${kaddr.toString(16)}+${len}`);
    }
    return this.#bytes.subarray(kaddr - this.base, kaddr - this.base + len);
  }

  alloc(size: number, flags: number, zero: boolean): number | null | Promise<number | null> {
    size = integer(size, 'size');
    flags = integer(flags, 'flags', 0, 0x7fffffff);
    if ((flags & ~KM_FLAGS) !== 0) throw rangeError('KM_* flags (KM_NOSLEEP, KM_CACHEALIGN, KM_PHYSCONTIG, KM_NODESPECIFIC)', 'flags', flags);
    const sleep = (flags & KM_NOSLEEP) === 0;
    if (size === 0) return sleep ? Promise.resolve(null) : null; // SPEC B.3: size 0 gives NULL whatever the flags
    const rounded = Math.ceil(size / CACHE_LINE) * CACHE_LINE;
    const aligned = rounded >= pageSize || (flags & KM_PHYSCONTIG) !== 0;
    const units = aligned ? rounded + pageSize - CACHE_LINE : rounded;
    const finish = (addr: number): number => {
      this.#live.set(addr, rounded);
      if (zero) this.bytes(addr, rounded).fill(0);
      return addr;
    };
    const now = aligned ? this.#allocAligned(rounded) : this.#map.alloc(rounded);
    if (now !== 0) return sleep ? Promise.resolve(finish(now)) : finish(now);
    if (!sleep) return null;
    return this.#map.allocWait(units).then((index) => finish(aligned ? this.#align(index, units, rounded) : index));
  }

  /** kmem_free: exactly one earlier allocation's address and size, or a KernelPanic. */
  free(addr: number, size: number): void {
    addr = integer(addr, 'addr');
    size = integer(size, 'size');
    const rounded = Math.ceil(size / CACHE_LINE) * CACHE_LINE;
    const live = this.#live.get(addr);
    if (live === undefined) throw new KernelPanic(`kmem_free(0x${addr.toString(16)}, ${size}): no allocation at this address`);
    if (live !== rounded) {
      throw new KernelPanic(`kmem_free(0x${addr.toString(16)}, ${size}): wrong size (allocated ${live} bytes)`);
    }
    this.#live.delete(addr);
    this.#map.free(rounded, addr);
  }

  stats(): ArenaStats {
    let allocatedBytes = 0;
    for (const s of this.#live.values()) allocatedBytes += s;
    return { size: this.size, freeBytes: this.#map.freeUnits, allocations: this.#live.size, allocatedBytes };
  }

  /** Releases the arena's mapping and memfd (kernel shutdown). */
  destroy(): void {
    this.#map.destroy();
    if (this.#mapping.mapped) this.#mapping.unmap();
    this.#memory.close();
  }

  /**
   * A page-aligned block of `rounded` bytes, or 0. First fit of the exact size is often aligned already (always
   * in an empty arena); otherwise the block is cut from a first fit of size + page - 64.
   */
  #allocAligned(rounded: number): number {
    const exact = this.#map.alloc(rounded);
    if (exact === 0 || exact % pageSize === 0) return exact;
    this.#map.free(rounded, exact);
    const units = rounded + pageSize - CACHE_LINE;
    const index = this.#map.alloc(units);
    return index === 0 ? 0 : this.#align(index, units, rounded);
  }

  /** Keeps the page-aligned block of `rounded` bytes inside [index, index + units) and frees the slack. */
  #align(index: number, units: number, rounded: number): number {
    const addr = Math.ceil(index / pageSize) * pageSize;
    if (addr > index) this.#map.free(addr - index, index);
    const tail = index + units - (addr + rounded);
    if (tail > 0) this.#map.free(tail, addr + rounded);
    return addr;
  }
}
