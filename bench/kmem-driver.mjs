// The smallest useful IRIX driver, shared by the kernel benchmark and the soak script: drvmap hands each
// mapping its own kmem buffer through v_mapphys, drvunmap frees it (found again by v_gethandle).
export function installKmemDriver(d, kernel, name) {
  const buffers = new Map();
  kernel.install(name, {
    map(dev, vt, off, len) {
      const buf = kernel.kmem_alloc(len, d.KM_NOSLEEP);
      if (buf === null) return d.errno.ENOMEM;
      buffers.set(d.v_gethandle(vt), [buf, len]);
      return d.v_mapphys(vt, buf, len);
    },
    unmap(dev, vt) {
      const [buf, len] = buffers.get(d.v_gethandle(vt));
      buffers.delete(d.v_gethandle(vt));
      kernel.kmem_free(buf, len);
    },
  });
}
