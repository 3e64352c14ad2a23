// npm run soak [-- --seconds N]: loops the main workloads for a while (default 120 s) and prints RSS, open fds,
// mapped regions and /dev/shm entries every few seconds. At the end it checks that fds, mappings and /dev/shm
// are back where they started and that RSS stayed flat after warm-up; it exits non-zero otherwise.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { installKmemDriver } from '../bench/kmem-driver.mjs';

const require = createRequire(import.meta.url);
const d = require('../dist/index.js');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const seconds = arg('--seconds', 120);
const P = d.pageSize;

/** After a full collection: RSS, heap, open fds, devmap's shared mappings (memfd, shm, shared anonymous), /dev/shm entries. */
const fdList = () => readdirSync('/proc/self/fd').map((f) => {
  try {
    return `${f} → ${readlinkSync(`/proc/self/fd/${f}`)}`;
  } catch {
    return f;
  }
});

const sample = () => {
  globalThis.gc?.();
  return {
    fdList: fdList(),
    rss: process.memoryUsage().rss,
    heap: process.memoryUsage().heapUsed,
    fds: readdirSync('/proc/self/fd').length,
    maps: readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => /\/dev\/zero|memfd:|\/dev\/shm\//.test(l)).length,
    shm: readdirSync('/dev/shm').filter((n) => n.startsWith('devmap-soak-')).length,
  };
};

async function kernelRound(kernel, fd, proc) {
  const a = await proc.mmap(0n, 4 * P, d.PROT_READ | d.PROT_WRITE, d.MAP_SHARED, fd, 0);
  new Uint8Array(await proc.view(a, 4 * P))[0] = 1;
  await proc.munmap(a + BigInt(P), P);
  const child = await proc.fork();
  await child.exit();
  await proc.munmap(a, 4 * P);
}

async function main() {
  // Print first: the first write to a piped stdout makes Node set the stream up (it may open a descriptor).
  console.log(`soak: ${seconds} s of memory, shm, rmap and kernel workloads`);
  const start = sample();
  const kernel = new d.Kernel({ arenaSize: 4 << 20 });
  installKmemDriver(d, kernel, 'soak');
  const proc = kernel.spawn();
  const fd = await proc.open('/dev/soak');
  const map = d.rmallocmap(64);
  d.rmfree(map, 1 << 20, 1);

  let warm;
  const end = Date.now() + seconds * 1000;
  let rounds = 0;
  let nextReport = Date.now();
  while (Date.now() < end) {
    // Anonymous mappings, views, partial unmaps.
    const m = d.mapAnonymous(8 * P);
    const v = new Uint8Array(m.view(P, P));
    v.fill(rounds & 0xff);
    for (const piece of m.unmap(2 * P, 2 * P)) piece.unmap();
    // Named segments.
    const name = `devmap-soak-${process.pid}`;
    const shm = d.SharedMemory.create(name, 4 * P);
    const other = d.SharedMemory.open(name);
    const mm = other.map();
    mm.unmap();
    other.close();
    shm.unlink();
    shm.close();
    // memfds.
    const mf = d.SharedMemory.memfd('soak', P);
    mf.map().unmap();
    mf.close();
    // Resource maps.
    const idx = [];
    for (let i = 0; i < 32; i++) idx.push(d.rmalloc(map, 1 + (i % 7)));
    idx.forEach((x, i) => d.rmfree(map, 1 + (i % 7), x));
    // The simulated kernel.
    await kernelRound(kernel, fd, proc);
    rounds++;
    // Yield to the event loop, as a real program does: objects a WeakRef has seen in this job (every view does)
    // are kept until the job ends, and finalizers only run between tasks.
    await new Promise((r) => setImmediate(r));
    if (Date.now() >= nextReport) {
      const s = sample();
      if (!warm && Date.now() > end - seconds * 1000 + Math.min(10, seconds / 4) * 1000) warm = s;
      console.log(`${String(rounds).padStart(8)} rounds  rss ${(s.rss / 2 ** 20).toFixed(1)} MiB  heap ${(s.heap / 2 ** 20).toFixed(1)} MiB  fds ${s.fds}  shared maps ${s.maps}  shm ${s.shm}`);
      nextReport = Date.now() + 5000;
    }
  }
  await proc.close(fd);
  await kernel.shutdown();
  d.rmfreemap(map);
  await new Promise((r) => setTimeout(r, 50));
  const last = sample();
  const mib = (x) => `${x >= 0 ? '+' : ''}${(x / 2 ** 20).toFixed(1)} MiB`;
  const heapGrowth = warm ? last.heap - warm.heap : 0;
  const rssGrowth = warm ? last.rss - warm.rss : 0;
  console.log(`done: ${rounds} rounds; fds ${start.fds} → ${last.fds}, shared maps ${start.maps} → ${last.maps}, shm ${start.shm} → ${last.shm}; after warm-up heap ${mib(heapGrowth)}, rss ${mib(rssGrowth)}`);
  const ok = last.fds === start.fds && last.shm === start.shm && last.maps === start.maps && heapGrowth < 2 ** 20 && rssGrowth < 64 * 2 ** 20;
  if (!ok) {
    console.error('soak: resources did not return to their baseline');
    const added = last.fdList.filter((f) => !start.fdList.includes(f));
    if (added.length) console.error(`descriptors opened and not closed: ${added.join(', ')}`);
    process.exit(1);
  }
}

main();
