/*
 * Walks every export of the package (found by enumerating the module, so a new export is covered the day it
 * lands) and calls every function, constructor, static method, method and getter with hostile values. The
 * process must survive and every error must carry a `code` (see acceptable()).
 * An exported class must have a factory below, so that its instances are probed too.
 */
import { EventEmitter } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as devmap from '../lib';
import { fixture } from './helpers/child';
import { trackLeaks } from './helpers/leaks';

trackLeaks();

const detached = (() => {
  const m = devmap.mapAnonymous(devmap.pageSize);
  const ab = m.buffer;
  m.unmap();
  return ab;
})();

class HostileGetterError extends TypeError {}
const throwingGetters = new Proxy(
  {},
  {
    get() {
      throw new HostileGetterError('hostile getter');
    },
    ownKeys() {
      throw new HostileGetterError('hostile ownKeys');
    },
  },
);

const HOSTILE: [string, unknown][] = [
  ['undefined', undefined], ['null', null], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity],
  ['-1', -1], ['2^53', 2 ** 53], ['1.5', 1.5], ['0', 0], ['huge', Number.MAX_VALUE], ['empty string', ''],
  ['string', 'hostile'], ['object', {}], ['array', []], ['throwing getters', throwingGetters],
  ['detached buffer', detached], ['symbol', Symbol('x')], ['bigint', 10n], ['function', () => 1],
];

/** Mappings backing probed objects (a Mutex's words); unmapped at the end. */
const mappingsToRelease: [devmap.Mapping, devmap.Mutex][] = [];
/** Mappings under shared resource maps; unmapped at the end. */
const sharedMaps: devmap.Mapping[] = [];
/** Device instances made for the probes; detached at the end. */
const devInfos: devmap.DevInfo[] = [];
/** Kernels made for the probes; shut down at the end. */
const kernels: devmap.Kernel[] = [];
const kernel = () => {
  const k = new devmap.Kernel({ arenaSize: 256 * 1024, addressSpaceSize: 64 * devmap.pageSize });
  kernels.push(k);
  return k;
};

/** Captures the vhandl_t and uio a driver is handed. */
async function driverObjects(): Promise<{ vt: devmap.VHandle; uio: devmap.Uio }> {
  const k = kernel();
  let vt: devmap.VHandle | undefined;
  let uio: devmap.Uio | undefined;
  k.install('capture', { map: (_d: number, v: devmap.VHandle) => void (vt = v), unmap: () => 0, read: (_d: number, u: devmap.Uio) => void (uio = u) });
  const p = k.spawn();
  const fd = await p.open('/dev/capture');
  await p.mmap(0n, devmap.pageSize, devmap.PROT_READ, devmap.MAP_SHARED, fd, 0);
  await p.read(fd, 0n, 1).catch(() => 0);
  return { vt: vt!, uio: uio! };
}

/** Factories for instances of every exported class, some live and some closed, unmapped or exited. */
// Kernel hosts: sockets in a directory of this run; RemoteProcess instances connect to a host in a child process.
const hostDir = mkdtempSync(join(tmpdir(), 'devmap-hostile-'));
let hosts = 0;
let remoteHost: Promise<ChildProcess> | undefined;
const remotePath = join(hostDir, 'remote.sock');
const remote = async () => {
  remoteHost ??= new Promise((resolve) => {
    const c = spawn(process.execPath, [fixture('client-host.cjs'), remotePath], { stdio: ['pipe', 'pipe', 'inherit'] });
    c.stdout!.once('data', () => resolve(c));
  });
  await remoteHost;
  return devmap.connectKernel(remotePath);
};

const INSTANCES: Record<string, (() => object | Promise<object>)[]> = {
  KernelHost: [() => kernel().listen(join(hostDir, `h${hosts++}.sock`)), async () => {
    const h = await kernel().listen(join(hostDir, `h${hosts++}.sock`));
    await h.close();
    return h;
  }],
  RemoteProcess: [remote, async () => {
    const p = await remote();
    await p.exit();
    return p;
  }],
  Mapping: [() => devmap.mapAnonymous(2 * devmap.pageSize), () => {
    const m = devmap.mapAnonymous(devmap.pageSize);
    m.unmap();
    return m;
  }],
  SharedMemory: [() => devmap.SharedMemory.memfd('hostile', devmap.pageSize), () => {
    const s = devmap.SharedMemory.memfd('hostile-closed', devmap.pageSize);
    s.close();
    return s;
  }],
  DevmapError: [() => new devmap.DevmapError('ERR_X', 'x')],
  ResourceMap: [() => {
    const m = devmap.rmallocmap(4);
    devmap.rmfree(m, 100, 1);
    return m;
  }, () => {
    const m = devmap.rmallocmap(4, { policy: 'illumos' });
    devmap.rmfreemap(m);
    return m;
  }],
  ResourceMapPanic: [() => {
    try {
      devmap.rmfree(devmap.rmallocmap(2), 0, 1);
    } catch (err) {
      return err as object;
    }
    throw new Error('rmfree of size 0 did not panic');
  }],
  Kernel: [kernel, async () => {
    const k = kernel();
    await k.shutdown();
    return k;
  }],
  Process: [() => kernel().spawn(), async () => {
    const p = kernel().spawn();
    await p.exit();
    return p;
  }],
  KernelPanic: [() => new devmap.KernelPanic('x')],
  SharedResourceMap: [() => {
    const sizing = { mapsize: 8, owners: 8 };
    const m = devmap.mapAnonymous(devmap.SharedResourceMap.bytesFor(sizing));
    sharedMaps.push(m);
    const mp = devmap.SharedResourceMap.create(m, sizing);
    devmap.rmfree(mp, 100, 1);
    return mp;
  }],
  Mutex: [() => {
    const m = devmap.mapAnonymous(devmap.pageSize);
    const mutex = devmap.Mutex.init(new Int32Array(m.buffer), 0);
    mappingsToRelease.push([m, mutex]);
    return mutex;
  }],
  VHandle: [async () => (await driverObjects()).vt],
  DevInfo: [() => new devmap.DevInfo('hostile', [{ size: 1 }]), () => {
    const d = new devmap.DevInfo('hostile-detached', [{ size: 1 }]);
    d.detach();
    return d;
  }],
  RegisterSet: [() => {
    const d = new devmap.DevInfo('hostile-reg', [{ size: 1 }]);
    devInfos.push(d);
    return d.regs[0];
  }],
  UmemCookie: [() => (devmap.ddi_umem_alloc(kernel(), 1, devmap.DDI_UMEM_NOSLEEP) as devmap.UmemAllocation).cookie],
  DevmapHandle: [async () => {
    const k = kernel();
    const dip = new devmap.DevInfo('hostile-devmap', [{ size: devmap.pageSize }]);
    devInfos.push(dip);
    k.install('hdev', {
      devmap(dev: number, dhp: devmap.DevmapHandle, off: number, len: number, maplen: devmap.Out<number>) {
        maplen.value = len;
        return devmap.devmap_devmem_setup(dhp, dip, null, 0, 0, len, devmap.PROT_ALL, 0);
      },
    });
    const p = k.spawn();
    const a = await p.mmap(0n, devmap.pageSize, devmap.PROT_READ, devmap.MAP_SHARED, await p.open('/dev/hdev'), 0);
    return devmap.handlesAt(p.as, a)[0];
  }],
  Uio: [async () => (await driverObjects()).uio],
  // Closed channels only: a blocking receive() without a timeout on a live, empty channel waits by design.
  Channel: [() => closedChannel('spsc').channel, () => closedChannel('mpmc').channel],
  Subscriber: [() => closedChannel('broadcast').subscriber!],
};

/** A channel in a mapping released at the end, closed (and with one subscriber when it is a broadcast). */
function closedChannel(mode: devmap.ChannelOptions['mode']): { channel: devmap.Channel; subscriber?: devmap.Subscriber } {
  const opts = { capacity: 4096, mode };
  const m = devmap.mapAnonymous(devmap.Channel.bytesFor(opts));
  sharedMaps.push(m);
  const channel = devmap.Channel.create(m, opts);
  const subscriber = mode === 'broadcast' ? channel.subscribe() : undefined;
  channel.trySend('x');
  channel.close();
  return { channel, subscriber };
}

const ENDINGS: (string | symbol)[] = ['unmap', 'close', 'exit', 'shutdown', 'destroy', 'detach', Symbol.dispose, Symbol.asyncDispose];

const isClass = (f: Function) => /^class\b/.test(Function.prototype.toString.call(f));

/**
 * An error is acceptable when it carries a `code` a caller can branch on: Node's argument codes
 * (ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE), devmap's ERR_DEVMAP_*, an errno name, or a
 * simulated signal (SIGSEGV, SIGBUS). V8's own TypeErrors ("Cannot read properties of undefined") have none:
 * they mean a function never validated its argument.
 */
const ACCEPTED_CODE = /^(ERR_INVALID_ARG_TYPE|ERR_INVALID_ARG_VALUE|ERR_OUT_OF_RANGE|ERR_DEVMAP_[A-Z0-9_]+|E[A-Z0-9]+|SIGSEGV|SIGBUS)$/;

function acceptable(err: unknown): boolean {
  if (err instanceof HostileGetterError) return true; // the caller's own exception, passed through
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && ACCEPTED_CODE.test(code);
}

/** Releases whatever a successful hostile call created. */
async function release(result: unknown): Promise<void> {
  if (result && typeof result === 'object') {
    const r = result as { [Symbol.dispose]?: () => void; [Symbol.asyncDispose]?: () => Promise<void> };
    if (typeof r[Symbol.dispose] === 'function') r[Symbol.dispose]!();
    if (typeof r[Symbol.asyncDispose] === 'function') await r[Symbol.asyncDispose]!();
    if (result instanceof devmap.Kernel) kernels.push(result);
    if (Array.isArray(result)) for (const x of result) await release(x);
  }
}

afterAll(async () => {
  for (const k of kernels.splice(0)) await k.shutdown();
  if (remoteHost) {
    const c = await remoteHost;
    c.stdin!.end();
    await new Promise((r) => c.on('close', r));
  }
  rmSync(hostDir, { recursive: true, force: true });
  for (const d of devInfos.splice(0)) d.detach();
  for (const m of sharedMaps.splice(0)) if (m.mapped) m.unmap();
  for (const [m, mutex] of mappingsToRelease.splice(0)) {
    // A probe may have left the Mutex locked (lock() is a method like any other); a held Mutex pins its mapping.
    if (m.mapped && mutex.owner === devmap.Mutex.threadId) mutex.unlock();
    if (m.mapped) m.unmap();
  }
});

async function probe(label: string, call: () => unknown, failures: string[]): Promise<void> {
  try {
    let result = call();
    if (result instanceof Promise) {
      // A call may wait for ever (an allocation that never fits): give it a moment, then leave it.
      const settled = result.then((v) => ({ v }), (e) => ({ e }));
      const outcome = await Promise.race([settled, new Promise((r) => setTimeout(r, 5))]);
      if (outcome && typeof outcome === 'object' && 'e' in outcome) throw outcome.e;
      result = outcome && typeof outcome === 'object' && 'v' in outcome ? outcome.v : undefined;
    }
    await release(result);
  } catch (err) {
    if (!acceptable(err)) failures.push(`${label}: ${(err as Error)?.constructor?.name} ${(err as Error)?.message}`);
  }
}

function argLists(): [string, unknown[]][] {
  const lists: [string, unknown[]][] = [['()', []]];
  for (const [name, v] of HOSTILE) {
    lists.push([`(${name})`, [v]], [`(${name}, ${name})`, [v, v]], [`(1, ${name})`, [1, v]], [`(${name}, 1, ${name})`, [v, 1, v]]);
  }
  return lists;
}

describe('hostile input', () => {
  it('every exported class has instances to probe', () => {
    const classes = Object.entries(devmap).filter(([, v]) => typeof v === 'function' && isClass(v)).map(([k]) => k);
    expect(classes.filter((c) => !(c in INSTANCES))).toEqual([]);
  });

  it('survives hostile arguments to every exported function, constructor and static method', async () => {
    const failures: string[] = [];
    for (const [name, value] of Object.entries(devmap)) {
      if (typeof value !== 'function') continue;
      const fn = value as (...a: unknown[]) => unknown;
      for (const [shown, args] of argLists()) {
        if (isClass(fn)) {
          await probe(`new ${name}${shown}`, () => Reflect.construct(fn, args), failures);
          for (const key of Object.getOwnPropertyNames(fn)) {
            const member = (fn as unknown as Record<string, unknown>)[key];
            if (typeof member === 'function' && !['length', 'name', 'prototype'].includes(key)) {
              await probe(`${name}.${key}${shown}`, () => (member as Function).apply(fn, args), failures);
            }
          }
        } else {
          await probe(`${name}${shown}`, () => fn(...args), failures);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('survives hostile arguments to every method and getter of every instance', async () => {
    const failures: string[] = [];
    for (const [cls, factories] of Object.entries(INSTANCES)) {
      for (const make of factories) {
        for (const [shown, args] of argLists()) {
          const obj = (await make()) as Record<string | symbol, unknown>;
          // Own function-valued properties too: the kernel's kmem_alloc, kbytes, ... are arrow properties.
          for (const key of Reflect.ownKeys(obj)) {
            const desc = Object.getOwnPropertyDescriptor(obj, key)!;
            if (typeof desc.value === 'function' && !ENDINGS.includes(key)) {
              await probe(`${cls}#${String(key)}${shown}`, () => desc.value.apply(obj, args), failures);
            }
          }
          let proto = Object.getPrototypeOf(obj);
          // Node's own prototypes are not devmap's to probe (EventEmitter#setMaxListeners(1) would only make
          // warnings for the rest of the run).
          while (proto && proto !== Object.prototype && proto !== Error.prototype && proto !== EventEmitter.prototype) {
            for (const key of Reflect.ownKeys(proto)) {
              if (key === 'constructor') continue;
              const desc = Object.getOwnPropertyDescriptor(proto, key)!;
              if (desc.get) await probe(`${cls}#${String(key)}`, () => desc.get!.call(obj), failures);
              // The calls that end the object run last, below.
              if (typeof desc.value === 'function' && !ENDINGS.includes(key)) {
                await probe(`${cls}#${String(key)}${shown}`, () => desc.value.apply(obj, args), failures);
              }
            }
            proto = Object.getPrototypeOf(proto);
          }
          for (const end of ENDINGS) {
            if (typeof obj[end] === 'function') await probe(`${cls}#${String(end)}${shown}`, () => (obj[end] as Function).apply(obj, args), failures);
          }
          await release(obj);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});
