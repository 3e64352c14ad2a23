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
 * inside drvmap, and ENXIO when the pages are not the kernel's memory. It checks and records; the pages are
 * placed once drvmap has returned 0, and only then does an mmap(MAP_FIXED) remove what was mapped in the range
 * before — a drvmap that refuses leaves the old mapping as it was (devmap's decision for MAP_FIXED, as in
 * SPEC A.3 for the devmap framework).
 */
import { DevmapError, typeError } from '../errors';
import { MAP_SHARED, PROT_WRITE } from '../memory/constants';
import { pageSize } from '../memory/page';
import { Segment, type SegmentOps } from '../kernel/as';
import type { CharDriver, DeviceMapper, EntryResult, MapRequest } from '../kernel/device';
import { EACCES, EFAULT, EINVAL, ENODEV, ENOMEM, ENXIO } from '../kernel/errno';
import { kernelInternals, type Kernel } from '../kernel/kernel';

/**
 * An IRIX driver: the character entry points and drvmap/drvunmap (the prefix is the driver's: vdkmap,
 * vdkunmap, ...). No other member is an entry point, so a misspelling (`mapp`) is a type error.
 */
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
  /** Bytes v_mapphys asked for, placed once drvmap has returned 0. */
  bytes = 0;
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

const constructing = Symbol('devmap.irix');
/** The framework's side of a vhandl_t; set by VHandle's static block, private to this module. */
let handleState: (vt: unknown) => { region: Region; segment: Segment | null };
let newVHandle: (region: Region, segment: Segment | null) => VHandle;
let retire: (vt: VHandle) => void;

/** vhandl_t: the driver's opaque view of one mapping. */
export class VHandle {
  readonly #region: Region;
  /** The segment being created, while drvmap runs; null afterwards and in drvunmap (v_mapphys is for drvmap). */
  #segment: Segment | null;

  static {
    newVHandle = (region, segment) => new VHandle(region, segment, constructing);
    handleState = (vt) => {
      if (!(vt instanceof VHandle)) throw typeError('a vhandl_t (VHandle)', 'vt', vt);
      const state = { region: vt.#region, segment: vt.#segment };
      return state;
    };
  }

  private constructor(region: Region, segment: Segment | null, token: symbol) {
    if (token !== constructing) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'A vhandl_t is made by the kernel');
    this.#region = region;
    this.#segment = segment;
  }

  /** Detaches a handle from its segment once drvmap has returned. */
  static #retire(vt: VHandle): void {
    vt.#segment = null;
  }

  static {
    retire = (vt) => VHandle.#retire(vt);
  }
}

const regionOfHandle = (vt: unknown) => handleState(vt).region;

/** v_gethandle(vt): the unique, address-space independent identity of the mapped object. */
export function v_gethandle(vt: VHandle): number {
  return regionOfHandle(vt).id;
}

/** v_getaddr(vt): the user virtual address of the mapping. */
export function v_getaddr(vt: VHandle): bigint {
  return BigInt(regionOfHandle(vt).addr);
}

/** v_getlen(vt): the mapping's length in bytes, a page multiple. */
export function v_getlen(vt: VHandle): number {
  return regionOfHandle(vt).len;
}

/** v_getprot(vt): the protection the mapping was asked for. */
export function v_getprot(vt: VHandle): number {
  return regionOfHandle(vt).prot;
}

/** v_mapphys(vt, kaddr, len): maps btoc(len) pages of kernel memory, from the page holding kaddr, at v_getaddr(vt). */
export function v_mapphys(vt: VHandle, kaddr: number, len: number): number {
  const { region, segment } = handleState(vt);
  if (segment === null || region.kpage !== -1) return EINVAL;
  if (!Number.isInteger(len) || len <= 0 || len > region.len) return EINVAL;
  if (!Number.isInteger(kaddr)) return ENXIO;
  const bytes = Math.ceil(len / pageSize) * pageSize;
  const kpage = Math.floor(kaddr / pageSize) * pageSize;
  if (!region.kernel.arena.contains(kpage, bytes)) return ENXIO;
  region.kpage = kpage;
  region.bytes = bytes;
  return 0;
}

/** Places the pages v_mapphys recorded (after drvmap returned 0); 0 or an errno. */
function placePages(seg: Segment, region: Region): number {
  if (region.kpage === -1) return 0;
  const arena = region.kernel.arena;
  const piece = seg.as.mapPiece(seg.base, region.bytes, region.prot, MAP_SHARED, arena.fd, region.kpage - arena.base);
  if (typeof piece === 'number') return ENOMEM;
  seg.pieces.push(piece);
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
    const kernel = kernelInternals(region.kernel);
    const upper = seg.as.trim(seg, addr, len);
    if (upper) region.refs++;
    const idle = kernel.countMapped(region.dev, -Math.ceil(len / pageSize));
    if (seg.len === 0 && --region.refs === 0) await drvunmap(region, seg.as.pid);
    if (idle) await kernel.closeDevice(region.dev, seg.as.pid);
  },

  dup(seg, child) {
    const region = regionOf(seg);
    const at = child.rawBase + (seg.base - seg.as.rawBase);
    const copy = new Segment(child, at, seg.len, seg.prot, seg.maxprot, seg.type, seg.off, seg.dev, ops, [], { region } satisfies IrixSegment);
    for (const p of seg.pieces) {
      const regionOffset = seg.off - region.off + (p.addr - seg.base);
      const arena = region.kernel.arena;
      const piece = child.mapPiece(child.rawBase + (p.addr - seg.as.rawBase), p.len, p.mapping.protection(), MAP_SHARED, arena.fd, region.kpage - arena.base + regionOffset);
      if (typeof piece === 'number') {
        for (const q of copy.pieces) q.mapping.unmap();
        throw new DevmapError('ERR_DEVMAP_FORK', `fork: cannot map device memory into the child (errno ${piece})`);
      }
      copy.pieces.push(piece);
    }
    region.refs++;
    kernelInternals(region.kernel).countMapped(region.dev, seg.len / pageSize);
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

/** drvunmap(dev, vt): the last reference to the region went (its return value is ignored, SPEC B.1). */
async function drvunmap(region: Region, pid: number): Promise<void> {
  if (typeof region.driver.unmap !== 'function') return;
  await kernelInternals(region.kernel).call(pid, region.driver, 'unmap', [region.dev, newVHandle(region, null)]);
}

async function drvmapMmap(req: MapRequest): Promise<Segment | number> {
  const { kernel, proc, dev, addr, len, off, prot, maxprot, type } = req;
  const k = kernelInternals(kernel);
  const driver = req.driver as IrixDriver;
  if ((prot & PROT_WRITE) && !(maxprot & PROT_WRITE)) return EACCES;
  const region = new Region(kernel, dev, driver, addr, len, prot, off);
  const seg = new Segment(proc.as, addr, len, prot, maxprot, type, off, dev, ops, [], { region } satisfies IrixSegment);
  const vt = newVHandle(region, seg);
  const rc = await k.call(proc.pid, driver, 'map', [dev, vt, off, len, prot]);
  retire(vt);
  if (rc !== 0) return rc; // nothing was placed: an old mapping under MAP_FIXED is intact
  await req.replace();
  if (placePages(seg, region) !== 0) {
    await drvunmap(region, proc.pid); // the driver accepted a mapping that cannot be made: let it release
    return ENOMEM;
  }
  region.refs = 1;
  k.countMapped(dev, len / pageSize);
  proc.as.insert(seg);
  return seg;
}

/** IRIX drvmap, the mapping interface of drivers with a `map` entry point (hand it to the Kernel). */
export const drvmapInterface: DeviceMapper = {
  name: 'IRIX drvmap',
  entryPoints: ['map', 'unmap'],
  handles: (driver) => typeof (driver as IrixDriver).map === 'function',
  mmap: drvmapMmap,
};
