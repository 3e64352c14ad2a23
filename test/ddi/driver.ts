// A recording devmap driver for the framework tests: it splits mappings into handles at chosen user offsets,
// exports one register set, and writes down every callback with the handle ids and arguments it received.
import {
  DevInfo, Kernel, PROT_ALL, devmap_devmem_setup, devmap_load, pageSize,
  type DevmapCallbackCtl, type DevmapDriver, type DevmapHandle, type Out,
} from '../../lib';

export const P = pageSize;

export interface Call {
  cb: string;
  h: number;
  off?: number;
  len?: number;
  n1?: number | null;
  n2?: number | null;
  pid?: number;
  type?: number;
  rw?: number;
}

export interface Private {
  serial: number;
  off: number;
  len: number;
  freed: boolean;
}

export interface RecOptions {
  /** Handle boundaries as user offsets: a handle starting at offset o has length chunks[o] (default: one handle). */
  chunks?: Record<number, number>;
  /** Or: handle boundaries at every multiple of chunkSize of device offset. */
  chunkSize?: number;
  /** Provide devmap_access (loads with devmap_load). */
  access?: boolean;
  maxprot?: number;
  flags?: number;
  /** Make devmap(9E) fail for this user offset. */
  failDevmapAt?: number;
  /** Make devmap_map fail for the handle at this user offset. */
  failMapAt?: number;
  /** Make devmap_dup fail for the handle at this user offset. */
  failDupAt?: number;
  /** Report maplen = this instead of the real length. */
  badMaplen?: number;
  /** Use a different devmap_access function for handles at or after this offset. */
  secondAccessFrom?: number;
  registerPages?: number;
  /** Called inside devmap_unmap with the handles as the driver sees them there. */
  onUnmap?(dhp: DevmapHandle, off: number, len: number, n1: DevmapHandle | null, n2: DevmapHandle | null): void;
}

export function recordingDriver(kernel: Kernel, opts: RecOptions = {}) {
  const dip = new DevInfo('rec', [{ size: (opts.registerPages ?? 64) * P }]);
  const calls: Call[] = [];
  const privates: Private[] = [];
  let serial = 0;
  const alloc = (off: number, len: number): Private => {
    const p = { serial: serial++, off, len, freed: false };
    privates.push(p);
    return p;
  };
  const free = (p: Private) => {
    if (p.freed) throw new Error(`private data ${p.serial} freed twice`);
    p.freed = true;
  };
  const access = (dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number) => {
    calls.push({ cb: 'access', h: dhp.id, off, len, type, rw, pid: dhp.pid });
    return devmap_load(dhp, off, len, type, rw);
  };
  const access2 = (dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number) =>
    devmap_load(dhp, off, len, type, rw);
  const ops = (second: boolean): DevmapCallbackCtl => ({
    devmap_rev: 1,
    devmap_map(dhp, dev, flags, off, len, pvtp: Out<unknown>) {
      calls.push({ cb: 'map', h: dhp.id, off, len, pid: dhp.pid });
      if (opts.failMapAt === off) return 6;
      pvtp.value = alloc(off, len);
      return 0;
    },
    ...(opts.access || opts.secondAccessFrom !== undefined ? { devmap_access: second ? access2 : access } : {}),
    devmap_dup(dhp, pvtp, new_dhp, new_pvtp) {
      calls.push({ cb: 'dup', h: dhp.id, n1: new_dhp.id, pid: new_dhp.pid });
      if (opts.failDupAt === dhp.dh_uoff) return 12;
      const p = pvtp as Private;
      new_pvtp.value = alloc(p.off, p.len);
      return 0;
    },
    devmap_unmap(dhp, pvtp, off, len, n1, p1, n2, p2) {
      calls.push({ cb: 'unmap', h: dhp.id, off, len, n1: n1?.id ?? null, n2: n2?.id ?? null, pid: dhp.pid });
      opts.onUnmap?.(dhp, off, len, n1, n2);
      const old = pvtp as Private;
      // Example 11-5: new private data for each surviving piece, then free the old.
      if (n1 && p1) p1.value = alloc(old.off, off - old.off);
      if (n2 && p2) p2.value = alloc(off + len, old.off + old.len - (off + len));
      free(old);
    },
  });
  const driver: DevmapDriver = {
    open: () => 0,
    close: () => {
      calls.push({ cb: 'close', h: 0 });
      return 0;
    },
    devmap(dev, dhp, off, len, maplen: Out<number>) {
      calls.push({ cb: 'devmap', h: dhp.id, off, len });
      if (opts.failDevmapAt === off) return 22;
      const hlen = opts.chunkSize ? Math.min(len, opts.chunkSize - (off % opts.chunkSize)) : (opts.chunks?.[off] ?? len);
      const second = opts.secondAccessFrom !== undefined && off >= opts.secondAccessFrom;
      if (devmap_devmem_setup(dhp, dip, ops(second), 0, off, hlen, opts.maxprot ?? PROT_ALL, opts.flags ?? 0) !== 0) return 6;
      maplen.value = opts.badMaplen ?? hlen;
      return 0;
    },
  };
  return { driver, dip, calls, privates, device: dip.regs[0].bytes };
}
