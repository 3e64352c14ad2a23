/*
 * uio and uiomove(9F): moving bytes between kernel memory and a simulated process's memory, for real.
 *
 * A Uio describes the user's side of a read or write: a list of (user address, length) vectors in the calling
 * process, the file offset and the bytes still to move (resid). uiomove copies between a kernel address (arena
 * memory) and the next bytes of those vectors, advancing them. A user address that is not mapped with the
 * needed protection is EFAULT, as a bad copyout is in a real kernel; the bytes before it have moved.
 */
import { internalView } from '../memory/mapping';
import { DevmapError, integer, typeError } from '../errors';
import { PROT_READ, PROT_WRITE } from '../memory/constants';
import type { AddressSpace } from './as';
import { EFAULT } from './errno';

export const UIO_READ = 0;
export const UIO_WRITE = 1;

export interface Iovec {
  base: bigint;
  len: number;
}

/**
 * A client process's side of a read or write (lib/kernel/remote): its bytes travel in the host's messages, so
 * they are a buffer here. The first `valid` bytes stand for user memory the client could reach; a copy past
 * them is EFAULT, as a copy to an unmapped page is.
 */
export interface UserCopy {
  bytes: Uint8Array;
  valid: number;
}

const constructing = Symbol('devmap.uio');
let construct: (as: AddressSpace, iov: Iovec[], offset: number, rw: number, copy: UserCopy | null) => Uio;

/** The Uio of a read(2)/write(2) (the kernel builds them; the class has no public constructor). */
export function makeUio(as: AddressSpace, iov: Iovec[], offset: number, rw: number, copy: UserCopy | null = null): Uio {
  return construct(as, iov, offset, rw, copy);
}

export class Uio {
  /** The remaining vectors; the first is advanced as bytes move. */
  readonly iov: Iovec[];
  offset: number;
  resid: number;
  readonly as: AddressSpace;
  /** The system call's direction: UIO_READ for read(2), UIO_WRITE for write(2). */
  readonly rw: number;
  /** Set for a client process: where its bytes are (the vectors then only count them). */
  readonly copy: UserCopy | null;

  static {
    construct = (as, iov, offset, rw, copy) => new Uio(as, iov, offset, rw, copy, constructing);
  }

  private constructor(as: AddressSpace, iov: Iovec[], offset: number, rw: number, copy: UserCopy | null, token: symbol) {
    if (token !== constructing) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'A Uio is made by the kernel for read(2) and write(2)');
    this.as = as;
    this.rw = rw;
    this.iov = iov.map((v) => ({ ...v }));
    this.offset = offset;
    this.resid = iov.reduce((n, v) => n + v.len, 0);
    this.copy = copy;
  }
}

/** Something that can give the kernel's bytes at a kernel address. */
export interface KernelMemory {
  bytes(kaddr: number, len: number): Uint8Array;
}

/**
 * uiomove(kaddr, n, rw, uio): copies min(n, uio.resid) bytes between kernel memory at `kaddr` and the user
 * vectors — UIO_READ copies kernel → user, UIO_WRITE user → kernel. Returns 0, or EFAULT.
 */
export function uiomove(kmem: KernelMemory, kaddr: number, n: number, rw: number, uio: Uio): number {
  kaddr = integer(kaddr, 'kaddr');
  n = integer(n, 'n');
  rw = integer(rw, 'rw', UIO_READ, UIO_WRITE);
  if (!(uio instanceof Uio)) throw typeError('a Uio', 'uio', uio);
  // The vectors and counts are the driver's to advance, so they are checked here rather than trusted.
  integer(uio.resid, 'uio.resid');
  for (const v of uio.iov) {
    if (v === null || typeof v !== 'object' || typeof v.base !== 'bigint') throw typeError('an iovec { base: bigint, len }', 'uio.iov[]', v);
    integer(v.len, 'uio.iov[].len');
  }
  if (uio.copy) return uiomoveCopy(kmem, kaddr, n, rw, uio, uio.copy);
  let left = Math.min(n, uio.resid);
  let k = kaddr;
  while (left > 0 && uio.iov.length > 0) {
    const v = uio.iov[0];
    if (v.len === 0) {
      uio.iov.shift();
      continue;
    }
    const addr = Number(v.base);
    // Copy at most to the end of the user page run that one piece holds.
    const seg = uio.as.segmentAt(addr);
    if (!seg) return EFAULT;
    const piece = seg.pieces.find((p) => p.addr <= addr && addr < p.addr + p.len);
    if (!piece) return EFAULT;
    const chunk = Math.min(left, v.len, piece.addr + piece.len - addr);
    const need = rw === UIO_READ ? PROT_WRITE : PROT_READ;
    const off = addr - piece.addr;
    if ((piece.mapping.protection(off) & need) === 0 || (piece.mapping.protection(off + chunk - 1) & need) === 0) return EFAULT;
    let user: Uint8Array;
    try {
      user = new Uint8Array(internalView(piece.mapping, off, chunk)); // a copy's window, never a user's view
    } catch {
      return EFAULT;
    }
    const kernel = kmem.bytes(k, chunk);
    if (rw === UIO_READ) user.set(kernel);
    else kernel.set(user);
    v.base += BigInt(chunk);
    v.len -= chunk;
    uio.resid -= chunk;
    uio.offset += chunk;
    k += chunk;
    left -= chunk;
  }
  return 0;
}

/** uiomove for a client process: the user's bytes are `copy.bytes`, in the order the vectors list them. */
function uiomoveCopy(kmem: KernelMemory, kaddr: number, n: number, rw: number, uio: Uio, copy: UserCopy): number {
  const at = copy.bytes.length - uio.resid;
  const want = Math.min(n, uio.resid);
  const moved = Math.max(0, Math.min(want, copy.valid - at));
  if (moved > 0) {
    const kernel = kmem.bytes(kaddr, moved);
    if (rw === UIO_READ) copy.bytes.set(kernel, at);
    else kernel.set(copy.bytes.subarray(at, at + moved));
    uio.resid -= moved;
    uio.offset += moved;
    const v = uio.iov[0];
    if (v) {
      v.base += BigInt(moved);
      v.len -= moved;
    }
  }
  return moved < want ? EFAULT : 0;
}
