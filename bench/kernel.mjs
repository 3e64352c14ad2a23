// The simulated kernel beside the raw memory layer: mmap+munmap through an IRIX driver (drvmap + v_mapphys +
// drvunmap), kmem_alloc+kmem_free, each with the raw system calls underneath measured in the same run.
//   npm run compile && node bench/kernel.mjs [--quick] [--json]
import { createRequire } from 'node:module';
import { installKmemDriver } from './kmem-driver.mjs';
import { machine, markdown, perOp, perOpAsync, runCase } from './harness.mjs';

const require = createRequire(import.meta.url);
const d = require('../dist/index.js');
const baselines = require('./baselines.cjs');

export async function kernelCases({ quick = false } = {}) {
  const c = baselines;
  const P = d.pageSize;
  const kernel = new d.Kernel({ arenaSize: 16 * 2 ** 20 });
  installKmemDriver(d, kernel, 'bench');
  const proc = kernel.spawn();
  const fd = await proc.open('/dev/bench');
  const len = 16 * P;
  const RW = d.PROT_READ | d.PROT_WRITE;

  const reps = quick ? 5 : 15;
  const n = quick ? 300 : 3000;
  // A devmap driver over one register set: `chunk` bytes per handle; with `ctx`, a devmap_access that switches a
  // single device context between processes (devmap_unload of the old owner, devmap_load of the new one).
  const dip = new d.DevInfo('bench', [{ size: len }]);
  let owner = null;
  const ctxOps = {
    devmap_rev: 1,
    devmap_access(dhp, pvtp, off, l, type, rw) {
      if (owner && owner !== dhp && owner.live) d.devmap_unload(owner, owner.dh_uoff, owner.dh_len);
      owner = dhp;
      return d.devmap_load(dhp, off, l, type, rw);
    },
  };
  const devmapDriver = (chunk, callbacks) => ({
    devmap(dev, dhp, off, l, maplen) {
      const n = Math.min(chunk, l);
      maplen.value = n;
      return d.devmap_devmem_setup(dhp, dip, callbacks, 0, off, n, d.PROT_ALL, 0);
    },
  });
  kernel.install('dm1', devmapDriver(len, null));
  kernel.install('dm8', devmapDriver(len / 8, null));
  kernel.install('dmctx', devmapDriver(len, ctxOps));
  const fd1 = await proc.open('/dev/dm1');
  const fd8 = await proc.open('/dev/dm8');
  const other = kernel.spawn();
  const ctxA = await proc.mmap(0n, P, RW, d.MAP_SHARED, await proc.open('/dev/dmctx'), 0);
  const ctxB = await other.mmap(0n, P, RW, d.MAP_SHARED, await other.open('/dev/dmctx'), 0);
  const mapUnmap = (f) => (k) => perOpAsync(async (m) => {
    for (let i = 0; i < m; i++) await proc.munmap(await proc.mmap(0n, len, RW, d.MAP_SHARED, f, 0), len);
  }, k);

  const cases = [
    {
      name: `mmap+munmap of ${len / 1024} KiB through an IRIX driver`,
      n, reps, goal: '≤ 3×', baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': (k) => c.c_map_unmap(len, k) / k,
        'devmap mapAnonymous().unmap()': (k) => perOp((m) => { for (let i = 0; i < m; i++) d.mapAnonymous(len).unmap(); }, k),
        'C MAP_FIXED memfd map + PROT_NONE re-reserve': (k) => c.c_fixed_map_rereserve(kernel.arena.fd, 0, len, k) / k,
        'kernel mmap+munmap (drvmap, v_mapphys, drvunmap)': (k) => perOpAsync(async (m) => {
          for (let i = 0; i < m; i++) await proc.munmap(await proc.mmap(0n, len, RW, d.MAP_SHARED, fd, 0), len);
        }, k),
      },
    },
    {
      name: `mmap+munmap of ${len / 1024} KiB through the devmap framework`,
      n, reps, goal: '≤ 3× (1 handle)', baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': (k) => c.c_map_unmap(len, k) / k,
        'devmap framework, 1 handle': mapUnmap(fd1),
        'devmap framework, 8 handles': mapUnmap(fd8),
      },
    },
    {
      name: 'devmap: a fault that switches the device context between two processes',
      n, reps, baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': (k) => c.c_map_unmap(P, k) / k,
        'access A then B (2 faults, 2 context switches)': (k) => perOpAsync(async (m) => {
          for (let i = 0; i < m; i++) {
            await proc.access(ctxA, 1, 'write');
            await other.access(ctxB, 1, 'write');
          }
        }, k),
      },
    },
    {
      name: 'devmap: partial unmap (middle of 16 pages, then the rest)',
      n, reps, baseline: 'C mmap+munmap',
      variants: {
        'C mmap+munmap': (k) => c.c_map_unmap(len, k) / k,
        'mmap, munmap middle, munmap rest': (k) => perOpAsync(async (m) => {
          for (let i = 0; i < m; i++) {
            const a = await proc.mmap(0n, len, RW, d.MAP_SHARED, fd1, 0);
            await proc.munmap(a + BigInt(4 * P), 4 * P);
            await proc.munmap(a, len);
          }
        }, k),
      },
    },
    {
      name: 'kmem_alloc+kmem_free (256 bytes, KM_NOSLEEP)',
      n: quick ? 20000 : 200000, reps, baseline: 'kmem_alloc+kmem_free',
      variants: {
        'kmem_alloc+kmem_free': (k) => perOp((m) => {
          for (let i = 0; i < m; i++) kernel.kmem_free(/** @type {number} */ (kernel.kmem_alloc(256, d.KM_NOSLEEP)), 256);
        }, k),
        'kmem_alloc+kmem_free (1 page)': (k) => perOp((m) => {
          for (let i = 0; i < m; i++) kernel.kmem_free(/** @type {number} */ (kernel.kmem_alloc(P, d.KM_NOSLEEP)), P);
        }, k),
      },
    },
  ];
  return {
    cases,
    cleanup: async () => {
      await kernel.shutdown();
      dip.detach();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const { cases, cleanup } = await kernelCases({ quick });
  const results = [];
  for (const k of cases) results.push(await runCase(k));
  await cleanup();
  if (process.argv.includes('--json')) console.log(JSON.stringify({ machine: machine(), results }, null, 2));
  else console.log(`${JSON.stringify(machine())}\n\n${markdown(results)}`);
}
