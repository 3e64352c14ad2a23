/*
 * The rmalloc(9F) examples (seed 002), ported: a driver's private buffer space managed by a resource map.
 *
 * xxstart allocates XX_BUFSIZE bytes of kernel memory, makes a map of XX_MAPSIZE slots with rmallocmap and hands
 * the whole buffer to it with rmfree: the map's units are kernel addresses. xxread breaks a read into pieces of
 * at most XX_MAXSIZE bytes; for each it rmallocs a buffer, lets the "device" fill it (the DMA of the man page),
 * and uiomoves it into the user's memory. When uiomove finds a bad user address it rmfrees the buffer and
 * returns EFAULT. (The man page's fragment panics when rmalloc fails; so does this port, with a KernelPanic.)
 *
 * Run: npm run example:rmalloc-buffers
 */
import {
  KM_NOSLEEP, Kernel, KernelPanic, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, UIO_READ, errno, pageSize,
  rmalloc, rmallocmap, rmfree, rmfreemap, type CharDriver, type ResourceMap, type Uio,
} from 'devmap';

export const XX_MAPSIZE = 12;
export const XX_BUFSIZE = 2560;
export const XX_MAXSIZE = XX_BUFSIZE / 4;

/** The xx driver: its entry points (what is installed), its start and detach routines and its state. */
export interface Xx {
  /** The character entry points: open, close, read (xxread). */
  readonly driver: CharDriver & { read(dev: number, uio: Uio): number };
  /** xx_mp: the private buffer space map (null until xxstart). */
  readonly mp: ResourceMap | null;
  /** The kernel address of the private buffer. */
  readonly buffer: number;
  /** The bytes the device produced, in order: what reads should see. */
  readonly produced: number;
  xxstart(): void;
  xxdetach(): void;
}

/** The device's data stream: byte n of the stream is (n * 7 + 3) & 0xff. */
export const streamByte = (n: number) => (n * 7 + 3) & 0xff;

export function createXxDriver(kernel: Kernel): Xx {
  let xx_mp: ResourceMap | null = null; // Private buffer space map
  let bp = 0;
  let produced = 0;

  function xxread(dev: number, uio: Uio): number {
    while (uio.resid > 0) {
      const size = Math.min(uio.resid, XX_MAXSIZE); /* Break large I/O request into small ones */
      /* Get buffer. */
      const addr = rmalloc(xx_mp!, size);
      if (addr === 0) throw new KernelPanic(`read: rmalloc failed allocation of size ${size}`);
      /* The device moves its data into local driver memory (DMA). */
      const buf = kernel.kbytes(addr, size);
      for (let i = 0; i < size; i++) buf[i] = streamByte(produced + i);
      /* Move data to buffer. If invalid address is found, return buffer to map and return error code. */
      if (kernel.uiomove(addr, size, UIO_READ, uio) !== 0) {
        rmfree(xx_mp!, size, addr);
        return errno.EFAULT;
      }
      produced += size;
      rmfree(xx_mp!, size, addr);
    }
    return 0;
  }

  return {
    get mp() {
      return xx_mp;
    },
    get buffer() {
      return bp;
    },
    get produced() {
      return produced;
    },
    xxstart() {
      /* Allocate private buffer. If insufficient memory, display message and halt system. */
      const addr = kernel.kmem_alloc(XX_BUFSIZE, KM_NOSLEEP);
      if (addr === null) throw new KernelPanic(`xxstart: kmem_alloc failed before ${XX_BUFSIZE} buffer allocation`);
      bp = addr as number;
      /* Initialize the resource map with number of slots in map. */
      xx_mp = rmallocmap(XX_MAPSIZE);
      /* Initialize space management map with total buffer area it is to manage. */
      rmfree(xx_mp, XX_BUFSIZE, bp);
    },

    xxdetach() {
      if (xx_mp) rmfreemap(xx_mp);
      xx_mp = null;
      kernel.kmem_free(bp, XX_BUFSIZE);
    },

    driver: { open: () => 0, close: () => 0, read: xxread },
  };
}

/** A user process doing real read(2) calls into its own memory, including one with a bad address. */
export async function main(log: (line: string) => void = console.log): Promise<void> {
  const kernel = new Kernel({ arenaSize: 2 ** 20 });
  const arenaFree = kernel.arena.stats().freeBytes;
  const xx = createXxDriver(kernel);
  kernel.install('xx', xx.driver);
  xx.xxstart();
  log(`xxstart: buffer at kernel address 0x${xx.buffer.toString(16)}, map ${xx.mp!.picture(40)}`);

  const proc = kernel.spawn();
  const fd = await proc.open('/dev/xx');
  const buf = await proc.mmap(0n, 2 * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const n = await proc.read(fd, buf, 2000);
  const bytes = new Uint8Array(await proc.view(buf, n));
  const ok = bytes.every((b, i) => b === streamByte(i));
  log(`read(fd, 0x${buf.toString(16)}, 2000) → ${n} bytes in pieces of at most ${XX_MAXSIZE}; stream intact: ${ok}`);
  log(`map after the read: ${xx.mp!.picture(40)} (${xx.mp!.freeUnits} of ${XX_BUFSIZE} free)`);

  try {
    await proc.read(fd, proc.as.end - 16n, 100);
  } catch (err) {
    log(`read into an unmapped address → ${(err as NodeJS.ErrnoException).code}; map: ${xx.mp!.freeUnits} of ${XX_BUFSIZE} free`);
  }

  await proc.exit();
  xx.xxdetach();
  log(`arena free bytes: ${kernel.arena.stats().freeBytes} of ${arenaFree} at start`);
  await kernel.shutdown();
}

if (require.main === module) void main();
