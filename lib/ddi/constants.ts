/** Constants of the devmap framework (SPEC A.1: sys/ddidevmap.h, sys/mman.h, vm/faultcode.h). */
import { integer } from '../errors';

export const DEVMAP_OPS_REV = 1;

// Driver flags to devmap_devmem_setup / devmap_umem_setup (only DEVMAP_SETUP_FLAGS bits are kept).
export const DEVMAP_DEFAULTS = 0x00;
export const DEVMAP_MAPPING_INVALID = 0x01;
export const DEVMAP_ALLOW_REMAP = 0x02;
export const DEVMAP_USE_PAGESIZE = 0x04;
export const DEVMAP_SETUP_FLAGS = 0x07;
// Internal handle flags.
export const DEVMAP_SETUP_DONE = 0x100;
export const DEVMAP_LOCK_INITED = 0x200;
export const DEVMAP_LOCKED = 0x800;
export const DEVMAP_FLAG_LARGE = 0x1000;

// Fault types and access directions handed to devmap_access / devmap_contextmgt.
export const DEVMAP_ACCESS = 0;
export const DEVMAP_PROT = 1;
export const DEVMAP_LOCK = 2;
export const DEVMAP_UNLOCK = 3;
export const DEVMAP_OTHER = 0;
export const DEVMAP_READ = 1;
export const DEVMAP_WRITE = 2;
export const DEVMAP_EXEC = 3;
export const DEVMAP_CREATE = 4;

// ddi_umem_alloc flags and cookie types.
export const DDI_UMEM_SLEEP = 0x0;
export const DDI_UMEM_NOSLEEP = 0x1;
export const DDI_UMEM_PAGEABLE = 0x2;
export const DDI_UMEM_TRASH = 0x4;
export const KMEM_PAGEABLE = 0x100;
export const KMEM_NON_PAGEABLE = 0x200;
export const UMEM_LOCKED = 0x400;
export const UMEM_TRASH = 0x800;

// Fault codes returned by devmap_load / devmap_unload / devmap_do_ctxmgt.
export const FC_HWERR = 0x1;
export const FC_ALIGN = 0x2;
export const FC_OBJERR = 0x3;
export const FC_PROT = 0x4;
export const FC_NOMAP = 0x5;
export const FC_NOSUPPORT = 0x6;
/** FC_MAKE_ERR(e): a fault code carrying an errno (a positive errno below 2^23, so the code stays positive). */
export const FC_MAKE_ERR = (e: number): number => (integer(e, 'e', 0, 2 ** 23 - 1) << 8) | FC_OBJERR;

// Data models handed to devmap(9E).
export const DDI_MODEL_ILP32 = 0x00100000;
export const DDI_MODEL_LP64 = 0x00200000;

export const DDI_SUCCESS = 0;
export const DDI_FAILURE = -1;

/** Clock ticks per second: devmap_set_ctx_timeout counts ticks. */
export const HZ = 100;
