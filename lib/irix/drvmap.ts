/*
 * IRIX drvmap/drvunmap: the segment driver for devices that map memory the IRIX way (SPEC Part B).
 *
 * Objects. A mapping of an IRIX device creates a Region: the mapped memory object. Its identity is what
 * v_gethandle() returns — the same number in the mapping process, in every forked child and at drvunmap
 * time. The driver sees the region through a vhandl_t (VHandle), which it must treat as opaque and never keep;
 * only v_gethandle's value identifies a mapping across calls. Every segment that maps (part of) the region
 * holds a reference: the first mapping, each surviving piece after a partial munmap, each copy made by fork.
 *
 * Lifecycle (SPEC B.1, B.2a; devmap's decision 2):
 *   mmap        → drvmap(dev, vt, off, len, prot) once; it usually calls v_mapphys(vt, kaddr, len), which maps the
 *                 arena pages behind kaddr into the user range for real. An errno from drvmap is mmap's error and
 *                 nothing stays mapped.
 *   fork        → no driver call; the child maps the same arena pages at the same offset of its reservation.
 *   munmap part → no driver call; the pages go, the region keeps its references.
 *   last ref    → drvunmap(dev, vt) exactly once, whichever process drops it, with v_gethandle as at map time.
 *   no drvunmap → munmap fails with ENODEV and the mapping stays (exit still tears it down, silently).
 *
 * v_mapphys maps the page *containing* kaddr (a kernel address that is not page aligned maps from the start
 * of its page, SPEC B.2), btoc(len) pages; it fails with EINVAL when len exceeds the region or the handle is not
 * inside drvmap, and ENXIO when the pages are not the kernel's memory.
 */
import { DevmapError } from '../errors';
import { MAP_SHARED, PROT_WRITE } from '../memory/constants';
import { pageSize } from '../memory/page';
import { Segment, type SegmentOps } from '../kernel/as';
import { EACCES, EFAULT, EINVAL, ENODEV, ENOMEM, ENXIO } from '../kernel/errno';
import { registerMapper, type CharDriver, type EntryResult, type Kernel, type MapRequest } from '../kernel/kernel';

/** An IRIX driver's mapping entry points (the prefix is the driver's: vdkmap, vdkunmap, ...). */
export interface IrixDriver extends CharDriver {
  /** drvmap: 0, or an errno that mmap fails with. */
  map?(dev: number, vt: VHandle, off: number, len: number, prot: number): EntryResult;
  /** drvunmap: called once, when the last reference to the mapping goes; its return value is ignored. */
  unmap?(dev: number, vt: VHandle): EntryResult;
}

let nextHandle = 1;

class Region {
  /** v_gethandle's value. */
  readonly id = nextHandle++;
  refs = 0;
  /** Kernel address of the first page v_mapphys mapped, or -1. */
  kpage = -1;
  constructor(
    readonly kernel: Kernel,
    readonly dev: number,
    readonly driver: IrixDriver,
    /** The user address and length of the mapping that created the region. */
    readonly addr: number,
    readonly len: number,
    readonly prot: number,
    /** The device offset the region was mapped at. */
    readonly off: number,
  ) {}
}

/** vhandl_t: the driver's opaque view of one mapping. */
export class VHandle {
  readonly #region: Region;
  #segment: Segment | null;

  /** @internal */
  constructor(region: Region, segment: Segment | null, token: symbol) {
    if (token !== internal) throw new TypeError('vhandl_t is made by the kernel');
    this.#region = region;
    this.#segment = segment;
  }

  /** @internal */
  static region(vt: unknown): Region {
    if (!(vt instanceof VHandle)) throw new TypeError('Expected a vhandl_t for vt');
    return vt.#region;
  }

  /** @internal The segment being created, while drvmap runs; null afterwards and in drvunmap. */
  static segment(vt: VHandle): Segment | null {
    return vt.#segment;
  }

  /** Detaches the handle from its segment once drvmap has returned: v_mapphys is only for drvmap. */
  static retire(vt: VHandle): void {
    vt.#segment = null;
  }
}

const internal = Symbol('devmap.irix');

/** v_gethandle(vt): the unique, address-space independent identity of the mapped object. */
export function v_gethandle(vt: VHandle): number {
  return VHandle.region(vt).id;
}

/** v_getaddr(vt): the user virtual address of the mapping. */
export function v_getaddr(vt: VHandle): bigint {
  return BigInt(VHandle.region(vt).addr);
}

/** v_getlen(vt): the mapping's length in bytes, a page multiple. */
export function v_getlen(vt: VHandle): number {
  return VHandle.region(vt).len;
}

/** v_getprot(vt): the protection the mapping was asked for. */
export function v_getprot(vt: VHandle): number {
  return VHandle.region(vt).prot;
}

/** v_mapphys(vt, kaddr, len): maps btoc(len) pages of kernel memory, from the page holding kaddr, at v_getaddr(vt). */
export function v_mapphys(vt: VHandle, kaddr: number, len: number): number {
  const region = VHandle.region(vt);
  const seg = VHandle.segment(vt);
  if (seg === null || region.kpage !== -1) return EINVAL;
  if (!Number.isInteger(len) || len <= 0 || len > region.len) return EINVAL;
  if (!Number.isInteger(kaddr)) return ENXIO;
  const bytes = Math.ceil(len / pageSize) * pageSize;
  const kpage = Math.floor(kaddr / pageSize) * pageSize;
  const arena = region.kernel.arena;
  if (!arena.contains(kpage, bytes)) return ENXIO;
  const piece = seg.as.mapPiece(seg.base, bytes, region.prot, MAP_SHARED, arena.fd, kpage - arena.base);
  if (typeof piece === 'number') return ENOMEM;
  seg.pieces.push(piece);
  region.kpage = kpage;
  return 0;
}

interface IrixSegment {
  region: Region;
}

const regionOf = (seg: Segment) => (seg.data as IrixSegment).region;

const ops: SegmentOps = {
  kind: 'irix',

  async unmap(seg, addr, len, reason) {
    const region = regionOf(seg);
    if (reason === 'munmap' && typeof region.driver.unmap !== 'function') return ENODEV; // SPEC B.1
    const kernel = region.kernel;
    const upper = seg.as.trim(seg, addr, len);
    if (upper) region.refs++;
    const idle = kernel.countMapped(region.dev, -Math.ceil(len / pageSize));
    if (seg.len === 0 && --region.refs === 0 && typeof region.driver.unmap === 'function') {
      await kernel.call(seg.as.pid, region.driver, 'unmap', [region.dev, new VHandle(region, null, internal)]);
    }
    if (idle) await kernel.closeDevice(region.dev, seg.as.pid);
  },

  dup(seg, child) {
    const region = regionOf(seg);
    const at = child.base + (seg.base - seg.as.base);
    const copy = new Segment(child, at, seg.len, seg.prot, seg.maxprot, seg.type, seg.off, seg.dev, ops, [], { region } satisfies IrixSegment);
    for (const p of seg.pieces) {
      const regionOffset = seg.off - region.off + (p.addr - seg.base);
      const arena = region.kernel.arena;
      const piece = child.mapPiece(child.base + (p.addr - seg.as.base), p.len, p.mapping.protection(), MAP_SHARED, arena.fd, region.kpage - arena.base + regionOffset);
      if (typeof piece === 'number') {
        for (const q of copy.pieces) q.mapping.unmap();
        throw new DevmapError('ERR_DEVMAP_FORK', `fork: cannot map device memory into the child (errno ${piece})`);
      }
      copy.pieces.push(piece);
    }
    region.refs++;
    region.kernel.countMapped(region.dev, seg.len / pageSize);
    child.insert(copy);
  },

  setprot(seg, addr, len, prot) {
    if ((prot & ~seg.maxprot) !== 0) return EACCES;
    for (const p of seg.pieces) {
      const from = Math.max(p.addr, addr);
      const to = Math.min(p.addr + p.len, addr + len);
      if (from < to) p.mapping.protect(prot, from - p.addr, to - from);
    }
    if (addr === seg.base && len === seg.len) seg.prot = prot;
    return 0;
  },

  fault(seg, addr, len, rw) {
    const need = rw === 'write' ? PROT_WRITE : 1;
    let cursor = addr;
    while (cursor < addr + len) {
      const p = seg.pieces.find((q) => q.addr <= cursor && cursor < q.addr + q.len);
      if (!p || (p.mapping.protection(cursor - p.addr) & need) === 0) return EFAULT;
      cursor = p.addr + p.len;
    }
    return 0;
  },

  label(seg) {
    return `vhandle ${regionOf(seg).id}`;
  },
};

registerMapper({
  name: 'irix',
  handles: (driver) => typeof driver.map === 'function',
  async mmap(req: MapRequest) {
    const { kernel, proc, dev, addr, len, off, prot, maxprot, type } = req;
    const driver = req.driver as IrixDriver;
    if ((prot & PROT_WRITE) && !(maxprot & PROT_WRITE)) return EACCES;
    const region = new Region(kernel, dev, driver, addr, len, prot, off);
    const seg = new Segment(proc.as, addr, len, prot, maxprot, type, off, dev, ops, [], { region } satisfies IrixSegment);
    const vt = new VHandle(region, seg, internal);
    const rc = await kernel.call(proc.pid, driver, 'map', [dev, vt, off, len, prot]);
    VHandle.retire(vt);
    if (rc !== 0) {
      for (const p of seg.pieces) p.mapping.unmap();
      return rc;
    }
    region.refs = 1;
    kernel.countMapped(dev, len / pageSize);
    proc.as.insert(seg);
    return seg;
  },
});
