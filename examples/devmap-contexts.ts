/*
 * A devmap driver with per-mapping device contexts, in the style of seed 001 (devmap_unmap(9E), example 11-5)
 * and the "Device Context Management" chapter of Writing Device Drivers.
 *
 * The device has one window of XX_REGS_PAGES pages of registers: its hardware context. Every mapping gets an
 * xxctx whose `context` is kernel memory holding a saved copy of those registers — its own copy for a
 * MAP_PRIVATE mapping, the device's shared copy for MAP_SHARED mappings. Only one context can be on the
 * hardware at a time: when a process touches the registers and another mapping owns them, xxdevmap_contextmgt
 * unloads the owner's translations (its next touch faults), saves the registers into the owner's context,
 * restores the new owner's context into the registers and loads the new owner's translations. So each private
 * mapping sees its own register values although there is a single register page.
 *
 * With real processes — `npm run example:devmap-contexts -- --processes 2` — the kernel serves this driver on a
 * Unix socket and two Node client processes take turns on the one device context: every switch is a real page
 * fault (userfaultfd, SPEC A.9) into xxdevmap_access, devmap_do_ctxmgt unloads the other process (its agent
 * drops the page before devmap_unload returns) and loads the faulting one, and a context timeout of
 * CTX_TIMEOUT_TICKS holds the context on the hardware for that long with a real timer: the other process's
 * fault waits until it expires.
 *
 * Run: npm run example:devmap-contexts [-- --processes 2]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEVMAP_DEFAULTS, DevInfo, HZ, Kernel, connectKernel, MAP_PRIVATE, MAP_SHARED, PROT_ALL, PROT_READ, PROT_WRITE, devmap_devmem_setup,
  devmap_do_ctxmgt, devmap_load, devmap_set_ctx_timeout, devmap_unload, pageSize,
  type DevmapCallbackCtl, type DevmapDriver, type DevmapHandle, type EntryTrace, type Out,
} from 'devmap';

export const XX_REGS_PAGES = 4;
export const XXCTX_SIZE = XX_REGS_PAGES * pageSize;
/** sizeof(struct xxctx) on a 64-bit kernel. */
const XXCTX_STRUCT = 48;

export interface XxState {
  dip: DevInfo;
  /** Kernel address of the context MAP_SHARED mappings share. */
  ctx_shared: number;
  current_ctx: XxCtx | null;
  /** Every xxctx allocated and not yet freed (for the tests' leak check). */
  live: Set<XxCtx>;
}

export interface XxCtx {
  self: number;
  xsp: XxState;
  context: number;
  handle: DevmapHandle;
  offset: number;
  len: number;
  flags: number;
}

/** The context timeout of the --processes run: 5 ticks (50 ms at HZ 100). */
export const CTX_TIMEOUT_TICKS = 5;

export function createXxDriver(kernel: Kernel, ctxTimeoutTicks = 0): { driver: DevmapDriver; xsp: XxState } {
  const { kmem_alloc, kmem_zalloc, kmem_free, bcopy, kbytes } = kernel;
  const dip = new DevInfo('xx', [{ size: XXCTX_SIZE }]);
  const xsp: XxState = { dip, ctx_shared: kmem_zalloc(XXCTX_SIZE, 1) as number, current_ctx: null, live: new Set() };
  const regs = dip.regs[0].bytes;

  const newctx = (handle: DevmapHandle, flags: number): XxCtx => {
    const ctx = { self: kmem_alloc(XXCTX_STRUCT, 1) as number, xsp, context: 0, handle, offset: 0, len: 0, flags };
    xsp.live.add(ctx);
    return ctx;
  };
  const freectx = (ctx: XxCtx) => {
    if (ctx.flags & MAP_PRIVATE) kmem_free(ctx.context, XXCTX_SIZE);
    kmem_free(ctx.self, XXCTX_STRUCT);
    xsp.live.delete(ctx);
  };

  function xxdevmap_contextmgt(handle: DevmapHandle, devprivate: unknown, off: number, len: number, type: number, rw: number): number {
    const ctxp = devprivate as XxCtx;
    const cur = xsp.current_ctx;
    if (cur !== ctxp) {
      if (cur) {
        // Take the hardware away from the current owner: its next access faults, then save its registers.
        const err = devmap_unload(cur.handle, cur.offset, cur.len);
        if (err) return err;
        kbytes(cur.context, XXCTX_SIZE).set(regs);
      }
      regs.set(kbytes(ctxp.context, XXCTX_SIZE));
      xsp.current_ctx = ctxp;
    }
    return devmap_load(handle, off, len, type, rw);
  }

  const xx_callbackops: DevmapCallbackCtl = {
    devmap_rev: 1,

    devmap_map(handle, dev, flags, off, len, new_devprivate: Out<unknown>) {
      const ctxp = newctx(handle, flags);
      if (flags & MAP_PRIVATE) {
        ctxp.context = kmem_alloc(XXCTX_SIZE, 1) as number;
        bcopy(xsp.ctx_shared, ctxp.context, XXCTX_SIZE);
      } else {
        ctxp.context = xsp.ctx_shared;
      }
      ctxp.offset = off;
      ctxp.len = len;
      devmap_set_ctx_timeout(handle, ctxTimeoutTicks);
      new_devprivate.value = ctxp;
      return 0;
    },

    devmap_access(handle, devprivate, off, len, type, rw) {
      return devmap_do_ctxmgt(handle, devprivate, off, len, type, rw, xxdevmap_contextmgt);
    },

    devmap_dup(handle, devprivate, new_handle, new_devprivate) {
      const ctxp = devprivate as XxCtx;
      const n = newctx(new_handle, ctxp.flags);
      if (ctxp.flags & MAP_PRIVATE) {
        n.context = kmem_alloc(XXCTX_SIZE, 1) as number;
        // The parent's context may be on the hardware: its freshest copy is in the registers.
        if (xsp.current_ctx === ctxp) kbytes(n.context, XXCTX_SIZE).set(regs);
        else bcopy(ctxp.context, n.context, XXCTX_SIZE);
      } else {
        n.context = xsp.ctx_shared;
      }
      n.offset = ctxp.offset;
      n.len = ctxp.len;
      new_devprivate.value = n;
      return 0;
    },

    // Example 11-5.
    devmap_unmap(handle, devprivate, off, len, new_handle1, new_devprivate1, new_handle2, new_devprivate2) {
      const ctxp = devprivate as XxCtx;
      /* If new_handle1 is not NULL, we are unmapping at the end of the mapping. */
      if (new_handle1 !== null && new_devprivate1 !== null) {
        /* Create a new context structure for the mapping */
        const n = newctx(new_handle1, ctxp.flags); // (the seed's listing forgets to copy flags here)
        if (ctxp.flags & MAP_PRIVATE) {
          /* allocate memory for the private context and copy it */
          n.context = kmem_alloc(XXCTX_SIZE, 1) as number;
          bcopy(ctxp.context, n.context, XXCTX_SIZE);
        } else {
          /* point to the shared context */
          n.context = xsp.ctx_shared;
        }
        n.offset = ctxp.offset;
        n.len = off - ctxp.offset;
        new_devprivate1.value = n;
      }
      /* If new_handle2 is not NULL, we are unmapping at the beginning of the mapping. */
      if (new_handle2 !== null && new_devprivate2 !== null) {
        const n = newctx(new_handle2, ctxp.flags);
        if (ctxp.flags & MAP_PRIVATE) {
          n.context = kmem_alloc(XXCTX_SIZE, 1) as number;
          bcopy(ctxp.context, n.context, XXCTX_SIZE);
        } else {
          n.context = xsp.ctx_shared;
        }
        n.offset = off + len;
        n.len = ctxp.len - (off + len - ctxp.offset); // (the listing says ctxp->off)
        new_devprivate2.value = n;
      }
      if (xsp.current_ctx === ctxp) xsp.current_ctx = null;
      freectx(ctxp);
    },
  };

  const driver: DevmapDriver = {
    open: () => 0,
    close: () => 0,
    devmap(dev, dhp, off, len, maplen) {
      if (off + len > XXCTX_SIZE) return 22; // EINVAL: past the register window
      if (devmap_devmem_setup(dhp, dip, xx_callbackops, 0, off, len, PROT_ALL, DEVMAP_DEFAULTS) !== 0) return 6;
      maplen.value = len;
      return 0;
    },
  };
  return { driver, xsp };
}

/** Two processes take turns on the device, one unmaps the middle of its mapping, one forks. */
export async function main(log: (line: string) => void = console.log): Promise<void> {
  const kernel = new Kernel({ arenaSize: 2 ** 20 });
  const { driver, xsp } = createXxDriver(kernel);
  kernel.install('xx', driver);
  kernel.on('entry', (e: EntryTrace) => {
    if (!e.entry.startsWith('devmap') || e.entry === 'devmap') return;
    const h = e.args[0] as DevmapHandle;
    const extra = e.entry === 'devmap_unmap'
      ? ` off=${(e.args[2] as number) / pageSize}p len=${(e.args[3] as number) / pageSize}p new1=${(e.args[4] as DevmapHandle | null)?.id ?? '-'} new2=${(e.args[6] as DevmapHandle | null)?.id ?? '-'}`
      : e.entry === 'devmap_dup' ? ` → new ${(e.args[2] as DevmapHandle).id}` : '';
    log(`  [pid ${e.pid}] ${e.entry}(dhp#${h.id}${extra})`);
  });
  const RW = PROT_READ | PROT_WRITE;
  const len = XX_REGS_PAGES * pageSize;
  const a = kernel.spawn();
  const b = kernel.spawn();
  const aAddr = await a.mmap(0n, len, RW, MAP_PRIVATE, await a.open('/dev/xx'), 0);
  const bAddr = await b.mmap(0n, len, RW, MAP_PRIVATE, await b.open('/dev/xx'), 0);
  log(`pid ${a.pid} and pid ${b.pid} each map the ${XX_REGS_PAGES}-page register window MAP_PRIVATE`);

  const reg = async (p: typeof a, addr: bigint, page: number) => new Uint8Array(await p.view(addr + BigInt(page * pageSize), 1));
  (await reg(a, aAddr, 0))[0] = 0xaa;
  log(`pid ${a.pid} writes 0xaa to register 0`);
  (await reg(b, bAddr, 0))[0] = 0xbb;
  log(`pid ${b.pid} writes 0xbb to register 0 (a context switch saved pid ${a.pid}'s registers)`);
  const seen = (await reg(a, aAddr, 0))[0];
  log(`pid ${a.pid} reads register 0: 0x${seen.toString(16)} (its own context, restored by the switch back)`);

  await a.munmap(aAddr + BigInt(pageSize), 2 * pageSize);
  log(`pid ${a.pid} unmaps the middle two pages: its context is split in two`);
  const child = await a.fork();
  const cAddr = child.as.base + (aAddr - a.as.base);
  const childSees = (await reg(child, cAddr, 0))[0];
  log(`pid ${child.pid} (forked from ${a.pid}) reads register 0: 0x${childSees.toString(16)} (a copy of its parent's context)`);

  for (const p of [child, a, b]) await p.exit();
  log(`all processes exited; contexts still allocated: ${xsp.live.size}; arena allocations: ${kernel.arena.stats().allocations - 1} (+ the shared context)`);
  kernel.kmem_free(xsp.ctx_shared, XXCTX_SIZE);
  xsp.dip.detach();
  await kernel.shutdown();
}

/** A client process of the --processes run: `rounds` turns of writing its mark into register 0 and reading it. */
async function client(path: string, mark: number, rounds: number): Promise<void> {
  const p = connectKernel(path);
  const fd = await p.open('/dev/xx');
  const addr = await p.mmap(0n, XX_REGS_PAGES * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const reg = new Uint8Array(p.view(addr, pageSize));
  process.stdout.write('ready\n');
  // One turn per byte on stdin: the host hands the turns round, so each write finds another process on the
  // context and faults.
  const turns = process.stdin[Symbol.asyncIterator]();
  for (let i = 0; i < rounds; i++) {
    if ((await turns.next()).done) break;
    const t0 = process.hrtime.bigint();
    reg[0] = mark; // a real fault: the other process holds the context
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    process.stdout.write(`client ${p.pid}: round ${i + 1} wrote 0x${mark.toString(16)} (${us.toFixed(0)} µs)\n`);
  }
  process.stdin.destroy();
  await p.exit();
}

/** Two (or more) real processes take turns on one device context; every switch is a real fault. */
export async function mainProcesses(processes: number, log: (line: string) => void = console.log, rounds = 4): Promise<void> {
  const kernel = new Kernel({ arenaSize: 2 ** 20 });
  const { driver, xsp } = createXxDriver(kernel, CTX_TIMEOUT_TICKS);
  kernel.install('xx', driver);
  const dir = mkdtempSync(join(tmpdir(), 'devmap-contexts-'));
  const host = await kernel.listen(join(dir, 'kernel.sock'));
  const t0 = process.hrtime.bigint();
  const ms = () => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1).padStart(7);
  let switches = 0;
  kernel.on('entry', (e: EntryTrace) => {
    if (e.entry === 'devmap_contextmgt') switches++;
    if (e.entry === 'devmap_access' || e.entry === 'devmap_contextmgt') log(`${ms()} ms [pid ${e.pid}] ${e.entry}(dhp#${(e.args[0] as DevmapHandle).id}) = ${String(e.result)}`);
  });
  host.on('fault', (f: { pid: number; off: number; rw: string }) => log(`${ms()} ms [pid ${f.pid}] real ${f.rw} fault at offset 0x${f.off.toString(16)} served`));
  log(`${processes} client processes map the ${XX_REGS_PAGES}-page register window MAP_SHARED; context timeout ${CTX_TIMEOUT_TICKS} ticks (${(CTX_TIMEOUT_TICKS * 1000) / HZ} ms)`);
  // The clients run this very file, compiled (under a test runner this module is the TypeScript source).
  const clientScript = __filename.endsWith('.ts') ? join(__dirname, '..', 'dist', 'examples', 'devmap-contexts.js') : __filename;
  let ready = 0;
  let turn = 0;
  const next = () => {
    if (turn < processes * rounds) spawned[turn++ % processes].child.stdin!.write('t');
    else for (const s of spawned) s.child.stdin!.end();
  };
  const spawned = Array.from({ length: processes }, (_, i) => {
    const child = spawn(process.execPath, [clientScript, '--client', host.path, String(0xa0 + i), String(rounds)], { stdio: ['pipe', 'pipe', 'inherit'] });
    child.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().trim().split('\n')) {
        if (line === 'ready') {
          if (++ready === processes) next();
          continue;
        }
        log(`${ms()} ms ${line.trim()}`);
        next(); // this process's turn is done: the next process's turn
      }
    });
    return { child, closed: new Promise<number | null>((done) => child.on('close', (code) => done(code))) };
  });
  const codes = await Promise.all(spawned.map((s) => s.closed));
  await new Promise((r) => setTimeout(r, (CTX_TIMEOUT_TICKS * 1000) / HZ + 20)); // the last hysteresis timer
  log(`clients exited (${codes.join(', ')}); ${switches} context switches, each a real fault; contexts still allocated: ${xsp.live.size}`);
  await host.close();
  kernel.kmem_free(xsp.ctx_shared, XXCTX_SIZE);
  xsp.dip.detach();
  await kernel.shutdown();
  rmSync(dir, { recursive: true, force: true });
}

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args[0] === '--client') void client(args[1], Number(args[2]), Number(args[3]));
  else if (args[0] === '--processes') void mainProcesses(Number(args[1] ?? 2));
  else void main();
}
