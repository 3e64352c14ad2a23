/*
 * AddressSpace: a simulated process's user address space, made of real virtual addresses.
 *
 * At creation the address space reserves one range of real virtual memory (PROT_NONE, MAP_NORESERVE): nothing
 * else in the Node process can land there. Every user mapping is placed inside it with MAP_FIXED, and a range
 * that is unmapped is re-reserved (mmap PROT_NONE over it) rather than munmapped, so holes stay ours. The
 * address a simulated user sees is the real address (bigint); a fork places each copied mapping at the same
 * offset inside the child's own reservation.
 *
 * The address space is a sorted list of segments, each owned by a segment driver (SegmentOps): anonymous
 * memory (segvn here), IRIX drvmap (lib/irix) or the devmap framework (lib/ddi). A segment's pages are real
 * Mappings ("pieces"), adopted with a releaser that re-reserves and without a finalizer of their own: the
 * reservation is their anchor, and its finalizer releases the whole range if a process is dropped without
 * exit(). Segment drivers own the semantics; this module owns placement, the pieces and views.
 */
import { DevmapError } from '../errors';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../memory/constants';
import { internalView, pinned, type Mapping } from '../memory/mapping';
import { pageSize } from '../memory/page';
import { Reservation } from '../memory/reservation';
import { SharedMemory } from '../memory/shared-memory';
import { EFAULT, EINVAL, ENOMEM } from './errno';

export type Rw = 'read' | 'write' | 'exec' | 'other';
export type UnmapReason = 'munmap' | 'exit' | 'replace';

/** A segment driver: what a segment does when it is unmapped, duplicated, protected or faulted. */
export interface SegmentOps {
  readonly kind: string;
  /**
   * Unmaps [addr, addr + len), which lies inside `seg`, usually through AddressSpace.trim(). `reason` is
   * 'munmap' (may be refused with an errno), 'exit' or 'replace' (MAP_FIXED over it), which always succeed.
   */
  unmap(seg: Segment, addr: number, len: number, reason: UnmapReason): Promise<number | void> | number | void;
  /** Copies `seg` into the child address space (fork). */
  dup(seg: Segment, child: AddressSpace): Promise<void> | void;
  /** mprotect of [addr, addr + len) inside `seg`; returns an errno or 0. */
  setprot(seg: Segment, addr: number, len: number, prot: number): number;
  /** Makes [addr, addr + len) accessible for `rw`, calling the driver's fault handler if needed; errno or 0. */
  fault(seg: Segment, addr: number, len: number, rw: Rw): Promise<number> | number;
  /** A label for pmap: the driver's handle for the page at `addr`. */
  label(seg: Segment, addr: number): string;
  /**
   * True when touching the segment's pages must call into the driver (devmap_access): such a segment cannot
   * be mapped loaded into a client process until real faults exist (SPEC A.9).
   */
  needsFaults?(seg: Segment): boolean;
  /** True when the driver asked to see write faults on pages loaded for reading (DEVMAP_WRITE_FAULTS). */
  needsWriteFaults?(seg: Segment): boolean;
  /** The protection a client with real faults maps the page at `addr` with: its maximal one (SPEC A.9). */
  clientProt?(seg: Segment, addr: number): number;
}

/**
 * The other back end of an address space: a client process (lib/kernel/remote) whose reservation mirrors
 * this one. Each real change made here is told to it, in order, so that it makes the same change at the same
 * offset in its own reservation. Offsets are from the reservation's base.
 */
export interface AddressSpaceMirror {
  /** [off, off + len) now maps `fd` at `fileOff` (fd -1: anonymous memory) with `prot`, MAP_SHARED or MAP_PRIVATE. */
  mapped(off: number, len: number, prot: number, type: number, fd: number, fileOff: number): void;
  /** [off, off + len) is reserved again: nothing is mapped there. */
  reserved(off: number, len: number): void;
  /**
   * Translations of [off, off + len) were loaded (devmap_load): a client with real faults maps them now.
   * `wp` for a DEVMAP_WRITE_FAULTS handle: 'protect' loaded for reading (a write faults), 'unprotect' writable.
   */
  loaded?(off: number, len: number, wp?: 'protect' | 'unprotect'): void;
  /** Translations of [off, off + len) were unloaded (devmap_unload): gone in the client when this returns. */
  unloaded?(off: number, len: number): void;
}

/** One real mapping inside a segment. */
export interface Piece {
  addr: number;
  len: number;
  mapping: Mapping;
}

export class Segment {
  constructor(
    readonly as: AddressSpace,
    public base: number,
    public len: number,
    public prot: number,
    public maxprot: number,
    /** MAP_SHARED or MAP_PRIVATE. */
    public type: number,
    /** Offset in the mapped object of the segment's first byte. */
    public off: number,
    /** The device (dev_t), or null for anonymous memory. */
    public dev: number | null,
    public ops: SegmentOps,
    public pieces: Piece[] = [],
    /** Driver-private state. */
    public data: unknown = undefined,
  ) {}

  get end(): number {
    return this.base + this.len;
  }
}

/**
 * One line of pmap(). Its own fields are what console.table shows — the start address in hex, as pmap(1) prints
 * it — and `address` gives the same address as a bigint, the type of every address in the kernel API.
 */
export class PmapEntry {
  /** The start address in hex, for reading. */
  readonly start: string;
  readonly length: number;
  readonly kind: string;
  readonly device: string | null;
  readonly offset: number;
  readonly prot: string;
  readonly flags: string;
  readonly handle: string;
  readonly #address: bigint;

  constructor(seg: Segment, device: string | null) {
    this.start = `0x${seg.base.toString(16)}`;
    this.length = seg.len;
    this.kind = seg.ops.kind;
    this.device = device;
    this.offset = seg.off;
    this.prot = protString(seg.prot);
    this.flags = seg.type === MAP_SHARED ? 'shared' : 'private';
    this.handle = seg.ops.label(seg, seg.base);
    this.#address = BigInt(seg.base);
  }

  /** The start address. */
  get address(): bigint {
    return this.#address;
  }
}

const protString = (p: number) => (p & PROT_READ ? 'r' : '-') + (p & PROT_WRITE ? 'w' : '-') + (p & 4 ? 'x' : '-');

export class AddressSpace {
  /** The reservation's first address (a bigint, as every user address of the kernel API). */
  readonly base: bigint;
  /** The same address as a number, for the kernel's own arithmetic (as Mapping#rawAddress). */
  readonly rawBase: number;
  readonly size: number;
  readonly #reservation: Reservation;
  readonly segments: Segment[] = [];

  /** The owning process's pid (for traces of entry points called on its behalf). */
  readonly pid: number;

  /** Set for a client process's address space: told of every real change (lib/kernel/remote). */
  mirror: AddressSpaceMirror | null = null;

  /** `aliasViews`: a simulated process's, whose views stand for its translations (see Reservation.reserve). */
  constructor(size: number, pid: number, aliasViews = false) {
    this.pid = pid;
    this.size = Math.ceil(size / pageSize) * pageSize;
    try {
      this.#reservation = Reservation.reserve(this.size, aliasViews);
    } catch (cause) {
      const err = new DevmapError('ERR_DEVMAP_NO_ADDRESS_SPACE', `Cannot reserve ${this.size} bytes of address space`, { cause });
      throw Object.assign(err, { errno: (cause as { errno?: number }).errno });
    }
    this.rawBase = this.#reservation.addr;
    this.base = BigInt(this.rawBase);
    // Every real change is told to the mirror, if one is attached, at its offset from the base.
    this.#reservation.watcher = {
      placed: (addr, len, prot, type, fd, off) => this.mirror?.mapped(addr - this.rawBase, len, prot, type, fd, off),
      reserved: (addr, len) => this.mirror?.reserved(addr - this.rawBase, len),
    };
  }

  /** The first address past the reservation. */
  get end(): bigint {
    return this.base + BigInt(this.size);
  }

  get rawEnd(): number {
    return this.rawBase + this.size;
  }

  /** True while the reservation exists (until destroy()). */
  get alive(): boolean {
    return this.#reservation.alive;
  }

  contains(addr: number, len: number): boolean {
    return addr >= this.rawBase && len >= 0 && addr + len <= this.rawEnd;
  }

  /** The segments that overlap [addr, addr + len), in address order. */
  overlapping(addr: number, len: number): Segment[] {
    return this.segments.filter((s) => s.base < addr + len && s.end > addr);
  }

  segmentAt(addr: number): Segment | undefined {
    return this.segments.find((s) => s.base <= addr && addr < s.end);
  }

  /**
   * First fit: the lowest free range of `len` bytes; 0 when there is none (ENOMEM for the caller). Ranges that
   * wait in quarantine (stale views may still reach them) are not free.
   */
  findFree(len: number): number {
    const taken: [number, number][] = this.segments.map((s) => [s.base, s.end]);
    for (const [a, l] of this.#reservation.held()) taken.push([a, a + l]);
    taken.sort((x, y) => x[0] - y[0]);
    let cursor = this.rawBase;
    for (const [start, end] of taken) {
      if (start - cursor >= len) return cursor;
      cursor = Math.max(cursor, end);
    }
    return this.rawEnd - cursor >= len ? cursor : 0;
  }

  insert(seg: Segment): void {
    let i = 0;
    while (i < this.segments.length && this.segments[i].base < seg.base) i++;
    this.segments.splice(i, 0, seg);
  }

  remove(seg: Segment): void {
    const i = this.segments.indexOf(seg);
    if (i >= 0) this.segments.splice(i, 1);
  }

  /**
   * Maps `len` bytes of an object (`fd` at `off`, or anonymous memory when fd is -1) at `addr`, which lies in
   * the reservation, and returns the piece. The pages are given back by re-reserving them.
   */
  mapPiece(addr: number, len: number, prot: number, type: number, fd: number, off: number): Piece | number {
    const mapping = this.#reservation.place(addr, len, prot, type, fd, off);
    return typeof mapping === 'number' ? mapping : { addr, len, mapping };
  }

  /** Re-reserves [addr, addr + len) that no piece covers (pages a driver never backed; a client applying its
   * host's changes, lib/kernel/remote). */
  rereserve(addr: number, len: number): void {
    this.#reservation.rereserve(addr, len);
  }

  /**
   * Removes [addr, addr + len) from `seg`: unmaps the real pieces (views over them fall onto trash pages, held
   * until nothing reaches them; findFree skips them meanwhile) and shrinks,
   * splits or removes the segment. Returns the segment holding what lies above the range when a middle cut
   * made a new one (it is already inserted), else null.
   */
  trim(seg: Segment, addr: number, len: number): Segment | null {
    const end = addr + len;
    const pieces: Piece[] = [];
    for (const p of seg.pieces) {
      const pEnd = p.addr + p.len;
      if (pEnd <= addr || p.addr >= end) {
        pieces.push(p);
        continue;
      }
      // A piece the user unmapped through Mapping.of(view) (bypassing this kernel) is gone already.
      if (!p.mapping.mapped) continue;
      const from = Math.max(p.addr, addr);
      const to = Math.min(pEnd, end);
      for (const m of p.mapping.unmap(from - p.addr, to - from)) {
        pieces.push({ addr: m.rawAddress, len: m.length, mapping: m });
      }
    }
    // Pages of the range that no piece covered (never backed) are reserved already.
    const below = pieces.filter((p) => p.addr < addr);
    const above = pieces.filter((p) => p.addr >= end);
    if (addr <= seg.base && end >= seg.end) {
      this.remove(seg);
      seg.pieces = [];
      seg.len = 0;
      return null;
    }
    if (addr <= seg.base) {
      seg.off += end - seg.base;
      seg.len = seg.end - end;
      seg.base = end;
      seg.pieces = above;
      return null;
    }
    if (end >= seg.end) {
      seg.len = addr - seg.base;
      seg.pieces = below;
      return null;
    }
    const upper = new Segment(this, end, seg.end - end, seg.prot, seg.maxprot, seg.type, seg.off + (end - seg.base), seg.dev, seg.ops, above, seg.data);
    seg.len = addr - seg.base;
    seg.pieces = below;
    this.insert(upper);
    return upper;
  }

  /** The piece holding all of [addr, addr + len), or a reason why there is none. */
  pieceFor(addr: number, len: number): Piece | number {
    const seg = this.segmentAt(addr);
    if (!seg || addr + len > seg.end) return EFAULT;
    const p = seg.pieces.find((q) => q.addr <= addr && addr + len <= q.addr + q.len);
    return p ?? EFAULT;
  }

  pmap(deviceName: (dev: number) => string): PmapEntry[] {
    return this.segments.map((s) => new PmapEntry(s, s.dev === null ? null : deviceName(s.dev)));
  }

  /** True when a Mutex in one of the process's mappings is held by this thread (unmapping it is refused). */
  holdsMutex(): boolean {
    return this.segments.some((s) => s.pieces.some((p) => p.mapping.mapped && pinned(p.mapping)));
  }

  /** Releases the reservation (after every segment was unmapped by exit). */
  destroy(): void {
    this.#reservation.release();
  }
}

/*
 * segvn: anonymous memory. MAP_PRIVATE is a private anonymous mapping whose bytes a fork copies into the child;
 * MAP_SHARED is a memfd, so that a forked child maps the very same pages (the memfd closes with its last segment).
 */
interface AnonData {
  memfd: SharedMemory | null;
  refs: { count: number };
}

export const segvn: SegmentOps = {
  kind: 'anon',
  unmap(seg, addr, len) {
    const upper = seg.as.trim(seg, addr, len);
    const data = seg.data as AnonData;
    if (upper) data.refs.count++;
    if (seg.len === 0) release(data);
  },
  dup(seg, child) {
    const data = seg.data as AnonData;
    const at = child.rawBase + (seg.base - seg.as.rawBase);
    const copy = new Segment(child, at, seg.len, seg.prot, seg.maxprot, seg.type, seg.off, null, segvn, [], data);
    for (const p of seg.pieces) {
      const addr = child.rawBase + (p.addr - seg.as.rawBase);
      const fd = data.memfd ? data.memfd.fd : -1;
      const off = data.memfd ? seg.off + (p.addr - seg.base) : 0;
      // The piece's protection runs, page by page (an mprotect of part of it leaves several).
      const runs: [number, number, number][] = [];
      for (let o = 0; o < p.len; o += pageSize) {
        const pr = p.mapping.protection(o);
        const last = runs[runs.length - 1];
        if (last !== undefined && last[2] === pr) last[1] += pageSize;
        else runs.push([o, pageSize, pr]);
      }
      const piece = child.mapPiece(addr, p.len, PROT_READ | PROT_WRITE, seg.type, fd, off);
      if (typeof piece === 'number') throw new DevmapError('ERR_DEVMAP_FORK', `fork: cannot map anonymous memory (errno ${piece})`);
      for (const [o, l, pr] of runs) {
        // A private mapping's child starts as a copy of the parent's bytes (what copy-on-write shows it).
        if (!data.memfd && pr & PROT_READ) new Uint8Array(internalView(piece.mapping, o, l)).set(p.mapping.read(o, l));
        if (pr !== (PROT_READ | PROT_WRITE)) piece.mapping.protect(pr, o, l);
      }
      copy.pieces.push(piece);
    }
    data.refs.count++;
    child.insert(copy);
  },
  setprot(seg, addr, len, prot) {
    for (const p of seg.pieces) {
      const from = Math.max(p.addr, addr);
      const to = Math.min(p.addr + p.len, addr + len);
      if (from < to) p.mapping.protect(prot, from - p.addr, to - from);
    }
    return 0;
  },
  fault(seg, addr, len, rw) {
    const need = rw === 'write' ? PROT_WRITE : PROT_READ;
    for (const p of seg.pieces) {
      const from = Math.max(p.addr, addr);
      if (from < Math.min(p.addr + p.len, addr + len) && (p.mapping.protection(from - p.addr) & need) === 0) return EFAULT;
    }
    return 0;
  },
  label: () => '-',
};

function release(data: AnonData): void {
  if (--data.refs.count === 0) data.memfd?.close();
}

/** Creates an anonymous segment at `addr`. Returns an errno on failure. */
export function mapAnonymousSegment(as: AddressSpace, addr: number, len: number, prot: number, type: number): Segment | number {
  const memfd = type === MAP_SHARED ? SharedMemory.memfd('devmap-anon', len) : null;
  const piece = as.mapPiece(addr, len, prot, type, memfd ? memfd.fd : -1, 0);
  if (typeof piece === 'number') {
    memfd?.close();
    return piece === ENOMEM ? ENOMEM : piece || EINVAL;
  }
  const seg = new Segment(as, addr, len, prot, 0xf, type, 0, null, segvn, [piece], { memfd, refs: { count: 1 } } satisfies AnonData);
  as.insert(seg);
  return seg;
}
