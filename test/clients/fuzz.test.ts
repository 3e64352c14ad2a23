// A client is untrusted: malformed frames, wrong descriptors, huge lengths and clients that die mid-request get
// an error or lose their own connection, and leave the host and every other client unaffected. Raw sockets
// speak the protocol here (lib/kernel/remote/protocol.ts) so that every byte can be wrong.
import fc from 'fast-check';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Kernel, MAP_SHARED, PROT_READ, PROT_WRITE, pageSize } from '../../lib';
import { MAX_FRAME, Op, PROTOCOL_VERSION, REPLY, decode, encode, frameSize, type Frame } from '../../lib/kernel/remote/protocol';
import * as vdk from '../../examples/irix-vdk';
import { runNode } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { onCleanup, serve, until } from './helpers';

trackLeaks();


async function setup() {
  const kernel = new Kernel({ arenaSize: 8 * 2 ** 20, addressSpaceSize: 16 * 2 ** 20 });
  const free = kernel.arena.stats().freeBytes;
  const driver = vdk.createVdkDriver(kernel);
  kernel.install('vdk', driver.driver);
  const served = await serve(kernel);
  const protocolErrors: unknown[] = [];
  served.host.on('protocol-error', (e) => protocolErrors.push(e.error));
  onCleanup(async () => {
    await served.close();
    await kernel.shutdown();
  });
  return { kernel, free, driver, served, protocolErrors };
}

/** A raw protocol client: sends bytes, collects reply frames, notices when the host hangs up. */
class Raw {
  readonly sock: Socket;
  readonly frames: Frame[] = [];
  closed = false;
  #buf = new Uint8Array(0);

  constructor(path: string) {
    this.sock = connect(path);
    this.sock.on('error', () => undefined);
    this.sock.on('close', () => (this.closed = true));
    this.sock.on('data', (d: Buffer) => {
      const all = new Uint8Array(this.#buf.length + d.length);
      all.set(this.#buf);
      all.set(d, this.#buf.length);
      let at = 0;
      for (let size = frameSize(all, at); size !== null && all.length - at >= size; size = frameSize(all, at)) {
        this.frames.push(decode(all, at, size));
        at += size;
      }
      this.#buf = all.slice(at);
    });
  }

  send(bytes: Uint8Array): void {
    if (!this.closed) this.sock.write(bytes);
  }

  /** Sends a request and resolves with its reply. */
  async call(op: number, words: (number | bigint)[], bytes?: Uint8Array): Promise<Frame> {
    const n = this.frames.length;
    this.send(encode(op, words, bytes));
    await until(() => this.frames.length > n || this.closed, `reply to op ${op}`);
    if (this.frames.length === n) throw new Error(`the host hung up on op ${op}`);
    return this.frames[n];
  }

  async hello(): Promise<Frame> {
    return this.call(Op.HELLO, [PROTOCOL_VERSION, process.pid]);
  }

  async hangup(): Promise<void> {
    await until(() => this.closed, 'the host to hang up');
  }

  end(): void {
    this.sock.destroy();
  }
}

const header = (size: number, op: number, words: number) => {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, size, true);
  dv.setUint16(4, op, true);
  dv.setUint16(6, words, true);
  return b;
};

describe('malformed frames end only the connection that sent them', () => {
  const cases: [string, (r: Raw) => Promise<void> | void][] = [
    ['a frame larger than the limit', (r) => r.send(header(MAX_FRAME + 1, Op.HELLO, 0))],
    ['a size smaller than the header', (r) => r.send(header(4, Op.HELLO, 0))],
    ['more words than the frame holds', (r) => r.send(header(16, Op.HELLO, 9))],
    ['a request before hello', (r) => r.send(encode(Op.OPEN, [2], new TextEncoder().encode('/dev/vdk')))],
    ['an unknown op', async (r) => {
      await r.hello();
      r.send(encode(999, []));
    }],
    ['a second hello', async (r) => {
      await r.hello();
      r.send(encode(Op.HELLO, [PROTOCOL_VERSION, 1]));
    }],
    ['an adopt with a made-up token', (r) => r.send(encode(Op.ADOPT, [123456789n, 1]))],
    ['a descriptor word out of range', async (r) => {
      await r.hello();
      r.send(encode(Op.CLOSE, [-5]));
    }],
    ['ioctl bytes that do not match the command size', async (r) => {
      await r.hello();
      r.send(encode(Op.IOCTL, [3, ((3 << 30) | (8 << 16)) >>> 0, 0], new Uint8Array(3)));
    }],
    ['a write carrying more bytes than its length', async (r) => {
      await r.hello();
      r.send(encode(Op.WRITE, [3, 2], new Uint8Array(10)));
    }],
    ['a pipelining client that never reads', async (r) => {
      await r.hello();
      r.sock.pause();
      const big = encode(Op.READ, [3, 65536, 65536, 0]);
      for (let i = 0; i < 2000; i++) r.send(big);
    }],
  ];
  for (const [name, act] of cases) {
    it(name, async () => {
      const { served, protocolErrors, kernel, free } = await setup();
      const r = new Raw(served.path);
      await act(r);
      if (name.includes('pipelining')) r.sock.resume();
      await r.hangup();
      await until(() => kernel.processes.length === 0, 'the exit path');
      expect(protocolErrors.length).toBeGreaterThan(0);
      expect(served.errors).toEqual([]);
      expect(kernel.arena.stats().freeBytes).toBe(free);
    });
  }

  it('a protocol version the host does not speak gets EINVAL, then the hang-up', async () => {
    const { served } = await setup();
    const r = new Raw(served.path);
    const reply = await r.call(Op.HELLO, [PROTOCOL_VERSION + 1, 1]);
    expect(reply.words[0]).toBe(-22n);
    await r.hangup();
  });
});

describe('bad requests get an errno and the connection goes on', () => {
  it('wrong descriptors, huge lengths, bad offsets, unknown paths', async () => {
    const { served, kernel, free, driver } = await setup();
    const r = new Raw(served.path);
    await r.hello();
    const errno = async (op: number, words: (number | bigint)[], bytes?: Uint8Array) => Number((await r.call(op, words, bytes)).words[0]);
    expect(await errno(Op.CLOSE, [77])).toBe(-9); // EBADF
    expect(await errno(Op.READ, [77, 10, 10, 0])).toBe(-9);
    expect(await errno(Op.OPEN, [2], new TextEncoder().encode('/dev/nothing'))).toBe(-2); // ENOENT
    const open = await r.call(Op.OPEN, [2], new TextEncoder().encode('/dev/vdk'));
    const fd = Number(open.words[1]);
    expect(await errno(Op.MMAP, [-1, 2 ** 50, PROT_READ, MAP_SHARED, fd, 0])).toBe(-12); // ENOMEM: no such range
    expect(await errno(Op.MMAP, [-1, pageSize, PROT_READ, MAP_SHARED, 99, 0])).toBe(-9);
    expect(await errno(Op.MMAP, [-1, 0, PROT_READ, MAP_SHARED, fd, 0])).toBe(-22);
    expect(await errno(Op.MMAP, [-1, pageSize, PROT_READ, MAP_SHARED, fd, 123])).toBe(-22);
    expect(await errno(Op.MMAP, [-1, pageSize, PROT_READ, 0xff, fd, 0])).toBe(-22);
    expect(await errno(Op.MUNMAP, [0, 2 ** 50])).toBe(-22);
    expect(await errno(Op.MPROTECT, [0, pageSize, 99])).toBe(-22);
    expect(await errno(Op.READ, [fd, 2 ** 50, 2 ** 50, 0])).toBe(-6); // ENXIO: vdk has no read; the length was clamped, not trusted
    expect(await errno(Op.IOCTL, [fd, 1, 0])).toBe(-25); // ENOTTY
    const ok = await r.call(Op.MMAP, [-1, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0]);
    expect(ok.words[0]).toBe(0n);
    expect(driver.records()).toHaveLength(1);
    expect(r.closed).toBe(false);
    r.end();
    await served.untilExits(1);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
    expect(served.errors).toEqual([]);
  });

  it('a client that dies mid-request: the request runs to its end, then the exit path (every unmap once)', async () => {
    const { served, kernel, free, driver } = await setup();
    const r = new Raw(served.path);
    await r.hello();
    const fd = Number((await r.call(Op.OPEN, [2], new TextEncoder().encode('/dev/vdk'))).words[1]);
    r.send(encode(Op.MMAP, [-1, 2 * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0]));
    r.send(header(200, Op.MMAP, 6)); // half a frame
    r.end();
    await served.untilExits(1);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
    expect(kernel.processes).toHaveLength(0);
  });
});

describe('random frames', () => {
  it('never hurt the host or a well-behaved client running beside them', async () => {
    const { served, kernel, free, driver } = await setup();
    const good = runNode('client-node.cjs', [served.path, 'cycles', '50']);
    const interesting = fc.oneof(
      fc.constantFrom(0n, 1n, 3n, 4n, -1n, 4096n, 65536n, 2n ** 31n, 2n ** 53n, -(2n ** 63n), 2n ** 63n - 1n),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    );
    const frame = fc.record({
      op: fc.oneof(fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 0xffff })),
      words: fc.array(interesting, { maxLength: 8 }),
      bytes: fc.uint8Array({ maxLength: 64 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(frame, { minLength: 1, maxLength: 6 }), async (hello, frames) => {
        const r = new Raw(served.path);
        if (hello) await r.hello().catch(() => undefined);
        for (const f of frames) r.send(encode(f.op, f.words, f.bytes));
        await new Promise((res) => setTimeout(res, 2));
        r.end();
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 150) },
    );
    const done = await good;
    expect(done.stderr).toBe('');
    expect(done.stdout).toContain('"cycles":50');
    await until(() => kernel.processes.length === 0 && served.host.clients.length === 0, 'every fuzz client to exit');
    expect(served.errors).toEqual([]);
    expect(driver.records()).toHaveLength(0);
    expect(kernel.arena.stats().freeBytes).toBe(free);
  }, 60_000);
});

void REPLY;
