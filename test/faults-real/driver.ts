// A devmap driver for the real-fault tests: one register set whose pages a client maps; devmap_access records
// every call (off, len, type, rw, pid) and loads, refuses, widens or waits as the test asks; ioctl UNLOAD
// unloads the last mapping's handle from the host's side (devmap_unload for another process).
import { DevInfo, Kernel, PROT_ALL, devmap_devmem_setup, devmap_load, devmap_unload, pageSize, type DevmapDriver, type DevmapHandle, type Out } from '../../lib';

export const P = pageSize;
/** ioctl commands (no size, no direction: the argument is an integer, the page to unload). */
export const FLT_UNLOAD = 0x4601;

export interface Access {
  off: number;
  len: number;
  type: number;
  rw: number;
  pid: number;
}

export interface FaultDriverOptions {
  /** Refuse (return EFAULT-ish 14) for faults at or after this device offset. */
  refuseFrom?: number;
  /** Load this many pages from the faulting one (default 1). */
  loadPages?: number;
  /** Wait this long in devmap_access before loading (a slow fault). */
  delayMs?: number;
}

export function faultDriver(kernel: Kernel, opts: FaultDriverOptions = {}) {
  const dip = new DevInfo('flt', [{ size: 16 * P }]);
  const accesses: Access[] = [];
  const handles: DevmapHandle[] = [];
  const unloads: number[] = [];
  let inAccess = 0;
  const driver: DevmapDriver = {
    open: () => 0,
    close: () => 0,
    ioctl(_dev, cmd, arg) {
      if (cmd !== FLT_UNLOAD) return 25;
      const h = handles[handles.length - 1];
      if (!h || !h.live) return 6;
      const off = h.dh_uoff + Number(arg) * P;
      unloads.push(devmap_unload(h, off, P));
      return 0;
    },
    devmap(_dev, dhp, off, len, maplen: Out<number>) {
      const rc = devmap_devmem_setup(dhp, dip, {
        devmap_rev: 1,
        async devmap_access(h, _pvtp, aoff, alen, type, rw) {
          accesses.push({ off: aoff, len: alen, type, rw, pid: h.pid });
          inAccess++;
          try {
            if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
            if (opts.refuseFrom !== undefined && aoff >= opts.refuseFrom) return 14;
            const pages = Math.min(opts.loadPages ?? 1, (h.dh_uoff + h.dh_len - aoff) / P);
            return devmap_load(h, aoff, pages * P, type, rw);
          } finally {
            inAccess--;
          }
        },
      }, 0, off, len, PROT_ALL, 0);
      if (rc !== 0) return 6;
      handles.push(dhp);
      maplen.value = len;
      return 0;
    },
  };
  return { driver, dip, accesses, handles, unloads, regs: dip.regs[0].bytes, inAccess: () => inAccess };
}
