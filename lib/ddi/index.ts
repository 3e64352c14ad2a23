export * from './constants';
export { DevInfo, RegisterSet } from './devinfo';
export type { RegisterSpec } from './devinfo';
export { UmemCookie, ddi_umem_alloc, ddi_umem_free } from './umem';
export type { UmemAllocation } from './umem';
export {
  DevmapHandle, devmap_devmem_setup, devmap_umem_setup, devmap_load, devmap_unload, devmap_default_access,
  devmap_do_ctxmgt, devmap_set_ctx_timeout, devmap_devmem_remap, devmap_umem_remap, devmapInterface, handlesAt,
} from './devmap';
export type { DevmapCallbackCtl, DevmapContextMgt, DevmapDriver, Out } from './devmap';
