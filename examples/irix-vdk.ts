/*
 * The IRIX "Example Program" (seed 000), ported: the mythical VT device shares memory with a user program.
 *
 * vdkmap allocates a record and the pages with kmem_alloc, maps the pages into the user's address space with
 * v_mapphys, remembers the mapping by v_gethandle in a doubly linked ring, and zeroes the memory. vdkunmap finds
 * the record by v_gethandle, unlinks it and frees both allocations. The C struct mpd lives in kernel memory here
 * too (MPD_SIZE bytes of kmem per record); its fields are kept in a JavaScript object beside it.
 *
 * Run: npm run example:irix-vdk
 */
import {
  KM_CACHEALIGN, Kernel, MAP_SHARED, Mapping, PROT_READ, PROT_WRITE, btoc, ctob, errno, pageSize, v_gethandle, v_mapphys,
  type IrixDriver, type VHandle,
} from 'devmap';

/** sizeof(struct mpd): an unsigned int, a pointer, an int and two links, padded as on a 64-bit kernel. */
export const MPD_SIZE = 40;

/** struct mpd */
export interface Mpd {
  /** Kernel address of the record itself. */
  self: number;
  d_id: number;
  d_addr: number;
  d_npages: number;
  d_last: Mpd;
  d_next: Mpd;
}

/** The vdk driver: its entry points (what is installed) and its state, for the user program and tests. */
export interface Vdk {
  /** The entry points: map and unmap (vdkmap, vdkunmap), open and close. */
  readonly driver: IrixDriver;
  /** vdk_list: the ring's head (its links point at itself when the ring is empty). */
  readonly vdk_list: Mpd;
  /** The records in the ring, in order. */
  records(): Mpd[];
}

export function createVdkDriver(kernel: Kernel): Vdk {
  const { kmem_alloc, kmem_free, bzero } = kernel;

  const vdk_list = { self: 0, d_id: 0, d_addr: 0, d_npages: 0 } as Mpd;
  vdk_list.d_next = vdk_list.d_last = vdk_list; // at init, this becomes a doubly linked ring

  async function vdkmap(dev: number, vt: VHandle, off: number, len: number, prot: number): Promise<number> {
    /* initial sanity checking */
    if (off !== 0) return errno.ENXIO;

    /* allocate some temporary storage */
    const self = await kmem_alloc(MPD_SIZE, 0);
    if (self === null) return errno.ENOMEM;
    const d = { self, d_id: 0, d_addr: 0, d_npages: 0 } as Mpd;

    d.d_npages = btoc(len);
    const addr = await kmem_alloc(ctob(d.d_npages), KM_CACHEALIGN);
    if (addr === null) {
      kmem_free(d.self, MPD_SIZE);
      return errno.ENOMEM;
    }
    d.d_addr = addr;

    /* map it into the user's address space */
    if (v_mapphys(vt, d.d_addr, len)) {
      kmem_free(d.d_addr, ctob(d.d_npages));
      kmem_free(d.self, MPD_SIZE);
      return errno.ENOMEM;
    }

    d.d_id = v_gethandle(vt);

    /* initialize the memory */
    bzero(d.d_addr, ctob(d.d_npages));

    /* add to the list */
    d.d_next = vdk_list.d_next;
    d.d_last = vdk_list;
    d.d_next.d_last = d.d_last.d_next = d;

    return 0;
  }

  function vdkunmap(dev: number, vt: VHandle): number {
    const id = v_gethandle(vt);

    /* Find chunk of memory corresponding to it. */
    let d: Mpd;
    for (d = vdk_list.d_next; d !== vdk_list; d = d.d_next) if (d.d_id === id) break;

    /* Make sure we found it. */
    if (d === vdk_list) return 0;

    /* remove from list */
    d.d_next.d_last = d.d_last;
    d.d_last.d_next = d.d_next;

    /* free up resources */
    kmem_free(d.d_addr, ctob(d.d_npages));
    kmem_free(d.self, MPD_SIZE);

    return 0;
  }

  return {
    driver: { map: vdkmap, unmap: vdkunmap, open: () => 0, close: () => 0 },
    vdk_list,
    records() {
      const out: Mpd[] = [];
      for (let d = vdk_list.d_next; d !== vdk_list; d = d.d_next) out.push(d);
      return out;
    },
  };
}

/** The user program: map the device, write, let the driver read, fork, unmap, exit. Returns what it printed. */
export async function main(log: (line: string) => void = console.log): Promise<void> {
  const kernel = new Kernel({ arenaSize: 4 * 2 ** 20 });
  const vdk = createVdkDriver(kernel);
  kernel.install('vdk', vdk.driver);
  kernel.on('entry', (e) => {
    if (e.entry === 'map' || e.entry === 'unmap') log(`  [kernel] pid ${e.pid}: vdk${e.entry}(${e.args.length > 2 ? `off=${e.args[2]}, len=${e.args[3]}` : 'vt'}) → ${String(e.result ?? 0)}`);
  });
  const freeAtStart = kernel.arena.stats().freeBytes;
  const len = 3 * pageSize;

  const parent = kernel.spawn();
  const fd = await parent.open('/dev/vdk');
  log(`pid ${parent.pid}: open /dev/vdk → fd ${fd}`);
  const addr = await parent.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  log(`pid ${parent.pid}: mmap 3 pages → 0x${addr.toString(16)}`);

  const user = new Uint8Array(await parent.view(addr, len));
  user.set(new TextEncoder().encode('hello from user space'));
  const [d] = vdk.records();
  const kernelSees = new TextDecoder().decode(kernel.kbytes(d.d_addr, 21));
  log(`driver reads through kernel address 0x${d.d_addr.toString(16)}: "${kernelSees}" (handle ${d.d_id})`);

  const child = await parent.fork();
  log(`pid ${parent.pid}: fork → pid ${child.pid} (no driver call)`);
  const childAddr = child.as.base + (addr - parent.as.base);
  const childView = new Uint8Array(await child.view(childAddr, len));
  childView.set(new TextEncoder().encode('child'), pageSize);
  log(`pid ${child.pid}: sees "${new TextDecoder().decode(childView.subarray(0, 21))}", writes "child" at page 1`);
  log(`pid ${parent.pid}: reads "${new TextDecoder().decode(user.subarray(pageSize, pageSize + 5))}" at page 1`);

  await parent.munmap(addr + BigInt(2 * pageSize), pageSize);
  log(`pid ${parent.pid}: munmap of the last page (no driver call); its old view is stale (mapped: ${Mapping.of(user)?.mapped}) and reads ${user[2 * pageSize]} there`);
  await parent.exit();
  log(`pid ${parent.pid}: exit (no driver call: pid ${child.pid} still maps the memory); records: ${vdk.records().length}`);
  await child.exit();
  log(`pid ${child.pid}: exit → vdkunmap ran once; records: ${vdk.records().length}`);
  log(`arena free bytes: ${kernel.arena.stats().freeBytes} of ${freeAtStart} at start`);
  await kernel.shutdown();
}

if (require.main === module) void main();
