/*
 * ddi_umem_alloc / ddi_umem_free: kernel memory meant to be exported to user mappings with devmap_umem_setup
 * (SPEC A.7). The size is rounded up to whole pages, the memory is zero filled and page aligned (it comes from
 * the arena, so a user mapping of it shows the very pages the kernel writes). DDI_UMEM_TRASH allocates no
 * buffer: one junk page stands in for every page of the mapping. The cookie is returned rather than stored
 * through a pointer; its `kaddr` is the kernel address (null for TRASH).
 */
import { DevmapError, integer, typeError } from '../errors';
import { KM_NOSLEEP, KernelPanic } from '../kernel/arena';
import { Kernel } from '../kernel/kernel';
import { pageSize } from '../memory/page';
import { DDI_UMEM_NOSLEEP, DDI_UMEM_PAGEABLE, DDI_UMEM_TRASH, KMEM_NON_PAGEABLE, KMEM_PAGEABLE, UMEM_TRASH } from './constants';

const constructing = Symbol('devmap.umem');
let newCookie: (kernel: Kernel, base: number, size: number, type: number) => UmemCookie;
let freeCookie: (c: UmemCookie) => void;

export class UmemCookie {
  #freed = false;
  readonly kernel: Kernel;
  /** Kernel address of the buffer; for a TRASH cookie, of the one junk page. */
  readonly base: number;
  /** Bytes the cookie covers (page multiple). */
  readonly size: number;
  /** KMEM_NON_PAGEABLE, KMEM_PAGEABLE or UMEM_TRASH. */
  readonly type: number;

  static {
    newCookie = (kernel, base, size, type) => new UmemCookie(kernel, base, size, type, constructing);
    freeCookie = (c) => {
      if (c.#freed) throw new KernelPanic('ddi_umem_free: cookie freed twice');
      c.kernel.kmem_free(c.base, c.type === UMEM_TRASH ? pageSize : c.size);
      c.#freed = true;
    };
  }

  private constructor(kernel: Kernel, base: number, size: number, type: number, token: symbol) {
    if (token !== constructing) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'A UmemCookie is made by ddi_umem_alloc');
    this.kernel = kernel;
    this.base = base;
    this.size = size;
    this.type = type;
  }

  get freed(): boolean {
    return this.#freed;
  }

  /** The kernel address of the buffer, or null for a TRASH cookie. */
  get kaddr(): number | null {
    return this.type === UMEM_TRASH ? null : this.base;
  }
}

const UMEM_FLAGS = DDI_UMEM_NOSLEEP | DDI_UMEM_PAGEABLE | DDI_UMEM_TRASH;

export interface UmemAllocation {
  kaddr: number | null;
  cookie: UmemCookie;
}

/**
 * ddi_umem_alloc(kernel, size, flag): DDI_UMEM_NOSLEEP gives the allocation or null at once; otherwise a
 * Promise (DDI_UMEM_SLEEP never fails, it waits). Size 0 gives null.
 */
export function ddi_umem_alloc(kernel: Kernel, size: number, flag: number): UmemAllocation | null | Promise<UmemAllocation | null> {
  if (!(kernel instanceof Kernel)) throw typeError('a Kernel', 'kernel', kernel);
  size = integer(size, 'size');
  flag = integer(flag, 'flag', 0, UMEM_FLAGS);
  const sleep = (flag & DDI_UMEM_NOSLEEP) === 0;
  if (size === 0) return sleep ? Promise.resolve(null) : null;
  const bytes = Math.ceil(size / pageSize) * pageSize;
  const trash = (flag & DDI_UMEM_TRASH) !== 0;
  const type = trash ? UMEM_TRASH : flag & DDI_UMEM_PAGEABLE ? KMEM_PAGEABLE : KMEM_NON_PAGEABLE;
  const make = (kaddr: number | null): UmemAllocation | null => {
    if (kaddr === null) return null;
    const cookie = newCookie(kernel, kaddr, bytes, type);
    return { kaddr: cookie.kaddr, cookie };
  };
  // kmem_zalloc of a page or more is page aligned (lib/kernel/arena.ts).
  const got = kernel.kmem_zalloc(trash ? pageSize : bytes, sleep ? 0 : KM_NOSLEEP);
  return got instanceof Promise ? got.then(make) : make(got);
}

/** ddi_umem_free(cookie): null is a no-op; anything that is not a live cookie is a panic. */
export function ddi_umem_free(cookie: UmemCookie | null): void {
  if (cookie === null || cookie === undefined) return;
  if (!(cookie instanceof UmemCookie)) throw new KernelPanic('ddi_umem_free: unknown cookie type');
  freeCookie(cookie);
}
