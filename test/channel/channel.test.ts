// Channel in one process: the API, its argument checks, every mode and overflow rule, loans and consume, close,
// and segments whose bytes are corrupt (targeted and random) — ERR_DEVMAP_CORRUPT, never a crash or a hang.
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Channel, mapAnonymous, type ChannelOptions, type Mapping } from '../../lib';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

function make(opts: ChannelOptions) {
  const mapping = mapAnonymous(Channel.bytesFor(opts));
  const channel = Channel.create(mapping, { ...opts, spin: 10 });
  return {
    mapping, channel,
    [Symbol.dispose]() {
      channel.detach();
      if (mapping.mapped) mapping.unmap();
    },
  };
}

const text = (m: Uint8Array | null) => (m === null ? null : new TextDecoder().decode(m));
const code = (c: string) => expect.objectContaining({ code: c });

describe('Channel.bytesFor / create / attach', () => {
  it('validates options with Node-style codes', () => {
    expect(() => Channel.bytesFor(undefined as never)).toThrow(code('ERR_INVALID_ARG_TYPE'));
    expect(() => Channel.bytesFor({ capacity: '4096' as never })).toThrow(code('ERR_INVALID_ARG_TYPE'));
    expect(() => Channel.bytesFor({ capacity: 0 })).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(() => Channel.bytesFor({ capacity: 2 ** 31 })).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(() => Channel.bytesFor({ capacity: 4096, mode: 'spmc' as never })).toThrow(code('ERR_INVALID_ARG_TYPE'));
    expect(() => Channel.bytesFor({ capacity: 4096, capacty: 1 } as never)).toThrow(code('ERR_INVALID_ARG_VALUE'));
    expect(() => Channel.bytesFor({ capacity: 4096, mode: 'spsc', writers: 2 })).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(() => Channel.bytesFor({ capacity: 4096, mode: 'mpsc', readers: 2 })).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(() => Channel.bytesFor({ capacity: 4096, maxMessage: 4096 })).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(() => Channel.bytesFor({ capacity: 4096, mode: 'broadcast', overflow: 'overwrite' })).toThrow(code('ERR_OUT_OF_RANGE'));
  });

  it('rounds the capacity up to a power of two; the largest message defaults to half of it', () => {
    using c = make({ capacity: 5000 });
    expect(c.channel.capacity).toBe(8192);
    expect(c.channel.maxMessage).toBe(4096);
    expect(c.channel.send(new Uint8Array(4096))).toBe(true);
    expect(() => c.channel.send(new Uint8Array(4097))).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(text(c.channel.receive())).toBe('\0'.repeat(4096));
  });

  it('a message may be almost the whole ring', () => {
    using c = make({ capacity: 4096, maxMessage: 4096 - 16 });
    for (let i = 0; i < 5; i++) {
      expect(c.channel.send(new Uint8Array(4080).fill(i))).toBe(true);
      expect(c.channel.receive()![4079]).toBe(i);
    }
  });

  it('refuses mappings that are too small or not shared, and non-mappings', () => {
    const small = mapAnonymous(4096);
    expect(() => Channel.create(small, { capacity: 4096 })).toThrow(code('ERR_OUT_OF_RANGE'));
    small.unmap();
    const priv = mapAnonymous(Channel.bytesFor({ capacity: 4096 }), { shared: false });
    expect(() => Channel.create(priv, { capacity: 4096 })).toThrow(code('ERR_DEVMAP_NOT_SHARED'));
    priv.unmap();
    expect(() => Channel.attach({} as Mapping)).toThrow(code('ERR_INVALID_ARG_TYPE'));
  });

  it('attach sees what create wrote; a second reader of spsc is busy', () => {
    using c = make({ capacity: 4096, mode: 'spsc' });
    const other = Channel.attach(c.mapping);
    c.channel.send('hello');
    expect(text(other.receive())).toBe('hello');
    expect(() => c.channel.tryReceive()).toThrow(code('ERR_DEVMAP_BUSY'));
    other.detach();
    expect(c.channel.tryReceive()).toBeNull(); // the slot is free again
  });
});

describe('send and receive', () => {
  it.each(['spsc', 'mpsc', 'mpmc'] as const)('%s: strings and every ArrayBufferView, FIFO, with wrap-around', (mode) => {
    using c = make({ capacity: 4096, mode });
    const ch = c.channel;
    for (let round = 0; round < 300; round++) {
      expect(ch.send(`round ${round}`)).toBe(true);
      expect(ch.send(new Float64Array([round, -round]))).toBe(true);
      expect(ch.send(new DataView(new Uint8Array([1, 2, 3]).buffer, 1, 2))).toBe(true);
      expect(ch.send(new Uint8Array(0))).toBe(true);
      expect(text(ch.receive())).toBe(`round ${round}`);
      expect([...new Float64Array(ch.receive()!.buffer)]).toEqual([round, -round]);
      expect([...ch.receive()!]).toEqual([2, 3]);
      expect(ch.receive()!.length).toBe(0);
    }
    expect(ch.tryReceive()).toBeNull();
    const st = ch.stats();
    expect(st.sent).toBe(1200);
    expect(st.received).toBe(1200);
  });

  it.each(['spsc', 'mpsc'] as const)('%s sendBatch: in order, published together; fewer on timeout, counted', (mode) => {
    using c = make({ capacity: 4096, mode, maxMessage: 64 });
    const batch = Array.from({ length: 10 }, (_, i) => `b ${i}`);
    expect(c.channel.sendBatch(batch)).toBe(10);
    expect(c.channel.stats().sent).toBe(10);
    for (const m of batch) expect(text(c.channel.tryReceive())).toBe(m);
    const many = Array.from({ length: 200 }, () => new Uint8Array(64)); // 80-byte records: 51 fit
    expect(c.channel.sendBatch(many, { timeout: 5 })).toBe(51);
    expect(c.channel.stats().dropped).toBe(1);
    expect(c.channel.consumeBatch(() => {})).toBe(51);
    expect(() => c.channel.sendBatch('x' as never)).toThrow(code('ERR_INVALID_ARG_TYPE'));
    expect(() => c.channel.sendBatch([new Uint8Array(65)])).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(c.channel.tryReceive()).toBeNull();
  });

  it('random sizes against a model: every message arrives intact and in order', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2048 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 200 }), (ops) => {
        using c = make({ capacity: 4096 });
        const queue: Uint8Array[] = [];
        let n = 0;
        for (const [size, reads] of ops) {
          const m = new Uint8Array(size).fill(n++ & 0xff);
          if (c.channel.trySend(m)) queue.push(m);
          for (let i = 0; i < reads; i++) {
            const got = c.channel.tryReceive();
            const want = queue.shift();
            if (want === undefined) expect(got).toBeNull();
            else expect(got).toEqual(want);
          }
        }
        for (const want of queue) expect(c.channel.tryReceive()).toEqual(want);
        expect(c.channel.tryReceive()).toBeNull();
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 100) },
    );
  });

  it('a full ring: block times out, fail refuses, both counted', () => {
    using b = make({ capacity: 4096, overflow: 'block' });
    while (b.channel.trySend('x'.repeat(100)));
    expect(b.channel.send('x', { timeout: 20 })).toBe(false);
    using f = make({ capacity: 4096, overflow: 'fail' });
    let sent = 0;
    while (f.channel.send('x'.repeat(100))) sent++;
    expect(sent).toBe(Math.floor(4096 / 120));
    expect(f.channel.stats().dropped).toBe(1);
  });

  it.each(['spsc', 'mpsc'] as const)('%s overwrite: the oldest are dropped, the reader gets the newest and learns how many it lost', (mode) => {
    using c = make({ capacity: 4096, mode, overflow: 'overwrite' });
    for (let i = 0; i < 1000; i++) expect(c.channel.send(`m ${i}`)).toBe(true);
    const got: string[] = [];
    for (let m = c.channel.tryReceive(); m !== null; m = c.channel.tryReceive()) got.push(text(m)!);
    expect(got.at(-1)).toBe('m 999');
    const st = c.channel.stats();
    expect(st.lost + got.length).toBe(1000);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => `m ${1000 - got.length + i}`));
  });

  it('a timeout and an abort signal end a wait', async () => {
    using c = make({ capacity: 4096 });
    expect(c.channel.receive({ timeout: 10 })).toBeNull();
    expect(await c.channel.receiveAsync({ timeout: 10 })).toBeNull();
    const ac = new AbortController();
    const p = c.channel.receiveAsync({ signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(() => c.channel.receive({ timeout: -1 })).toThrow(code('ERR_OUT_OF_RANGE'));
    expect(() => c.channel.receive({ signal: {} as AbortSignal })).toThrow(code('ERR_INVALID_ARG_TYPE'));
    expect(() => c.channel.send(42 as never)).toThrow(code('ERR_INVALID_ARG_TYPE'));
  });

  it('receiveAsync is woken by a send', async () => {
    using c = make({ capacity: 4096, mode: 'mpsc' });
    const p = c.channel.receiveAsync({ timeout: 5000 });
    setTimeout(() => c.channel.send('wake'), 5);
    expect(text(await p)).toBe('wake');
  });
});

describe('loan and consume', () => {
  it('loan: fill in place, commit a prefix; the view is a window on the ring, no ArrayBuffer per loan', () => {
    using c = make({ capacity: 4096 });
    const loan = c.channel.loan(100)!;
    expect(loan.view.length).toBe(100);
    loan.view.set(new TextEncoder().encode('zero-copy'));
    loan.commit(9);
    // Not detached (a Node API may still hold it): the same ring buffer serves every loan of this handle.
    const next = c.channel.loan(4)!;
    expect(next.view.buffer).toBe(loan.view.buffer);
    next.abort();
    expect(() => loan.commit()).toThrow(code('ERR_DEVMAP_LOAN_DONE'));
    expect(text(c.channel.receive())).toBe('zero-copy');
    expect(() => c.channel.loan(100)!.commit(101)).toThrow(code('ERR_OUT_OF_RANGE'));
  });

  it('abort leaves a hole readers pass over; a disposed loan aborts', () => {
    using c = make({ capacity: 4096, mode: 'mpsc' });
    c.channel.loan(10)!.abort();
    {
      using loan = c.channel.loan(10)!;
      loan.view[0] = 1;
    }
    c.channel.send('after');
    expect(text(c.channel.receive())).toBe('after');
    expect(c.channel.stats().aborted).toBe(2);
  });

  it('consume: fn sees the record in the ring; every record is a window on one ring buffer (no ArrayBuffer per message)', () => {
    using c = make({ capacity: 4096 });
    c.channel.send('in place');
    c.channel.send('second');
    const buffers: ArrayBufferLike[] = [];
    expect(c.channel.consume((v) => {
      expect(text(v)).toBe('in place');
      buffers.push(v.buffer);
    })).toBe(true);
    expect(c.channel.consume((v) => {
      expect(text(v)).toBe('second');
      buffers.push(v.buffer);
    })).toBe(true);
    expect(buffers[1]).toBe(buffers[0]);
    expect(c.channel.consume(() => {}, { timeout: 0 })).toBe(false);
  });

  it('a consumed view or a loan handed to zlib, then released, cannot abort the process (nothing is detached under Node)', async () => {
    const { deflate, inflateSync } = await import('node:zlib');
    using c = make({ capacity: 4096 });
    c.channel.send('z'.repeat(1000));
    const done: Promise<Buffer>[] = [];
    c.channel.consume((v) => {
      done.push(new Promise((resolve, reject) => deflate(v, (err, out) => (err ? reject(err) : resolve(out)))));
    });
    const loan = c.channel.loan(1000)!;
    loan.view.fill(0x61);
    done.push(new Promise((resolve, reject) => deflate(loan.view, (err, out) => (err ? reject(err) : resolve(out)))));
    loan.commit();
    for (let i = 0; i < 20; i++) c.channel.trySend('overwrites the slots');
    for (const out of await Promise.all(done)) expect(inflateSync(out).length).toBe(1000);
  });

  // Node >= 22: another realm's ArrayBuffer.prototype.transfer moves the ring view's store out of devmap's hands.
  const foreignTransfer = runInNewContext('ArrayBuffer.prototype.transfer') as ((this: ArrayBuffer) => ArrayBuffer) | undefined;
  it.runIf(foreignTransfer !== undefined)('a ring view moved away by another realm\'s transfer(): the next records still arrive', () => {
    using c = make({ capacity: 4096 });
    c.channel.send('one');
    let moved: ArrayBuffer | undefined;
    c.channel.consume((v) => void (moved = foreignTransfer!.call(v.buffer as ArrayBuffer)));
    expect(moved!.byteLength).toBeGreaterThan(0);
    c.channel.send('two');
    const seen: string[] = [];
    expect(c.channel.consume((v) => void seen.push(text(v)!))).toBe(true);
    expect(seen).toEqual(['two']);
  });

  it('consume: fn that throws leaves the record for the next read', () => {
    using c = make({ capacity: 4096 });
    c.channel.send('again');
    expect(() => c.channel.consume(() => { throw new Error('boom'); })).toThrow('boom');
    expect(text(c.channel.receive())).toBe('again');
  });

  it('consumeBatch: the handle\'s one view of the ring, offsets into it', () => {
    using c = make({ capacity: 4096 });
    for (let i = 0; i < 10; i++) c.channel.send(`b ${i}`);
    const got: string[] = [];
    let kept: Uint8Array | undefined;
    expect(c.channel.consumeBatch((bytes, off, len) => {
      kept = bytes;
      got.push(new TextDecoder().decode(bytes.subarray(off, off + len)));
    }, { max: 6 })).toBe(6);
    let again: Uint8Array | undefined;
    expect(c.channel.consumeBatch((bytes) => void (again = bytes))).toBe(4);
    expect(again).toBe(kept);
    expect(got).toEqual(Array.from({ length: 6 }, (_, i) => `b ${i}`));
  });

  it('reading the channel from inside its consume callback is refused (the cursor would move under it)', () => {
    using c = make({ capacity: 4096 });
    c.channel.send('a');
    c.channel.send('b');
    expect(() => c.channel.consume(() => c.channel.receive())).toThrow(code('ERR_DEVMAP_REENTRANT'));
    expect(() => c.channel.consumeBatch(() => c.channel.tryReceive())).toThrow(code('ERR_DEVMAP_REENTRANT'));
    expect(text(c.channel.receive())).toBe('a'); // nothing was taken
    expect(text(c.channel.receive())).toBe('b');
  });

  it('an mpmc reader waiting behind an open loan sleeps (on the futex) instead of looping', async () => {
    using c = make({ capacity: 4096, mode: 'mpmc' });
    const loan = c.channel.loan(8)!;
    const pending = c.channel.receiveAsync({ timeout: 1000 });
    // A reader that looped instead of sleeping would never let this timer run before its own deadline.
    await new Promise((r) => setTimeout(r, 30));
    expect(new Int32Array(c.mapping.buffer)[49]).toBe(1); // READER_SLEEPERS: it is asleep
    loan.abort();
    c.channel.send('after');
    expect(text(await pending)).toBe('after');
  });

  it('unmapping inside fn: the view is gone and the call says so', () => {
    const c = make({ capacity: 4096 });
    c.channel.send('x');
    expect(() => c.channel.consume(() => c.mapping.unmap())).toThrow(code('ERR_DEVMAP_UNMAPPED'));
    expect(() => c.channel.send('y')).toThrow(code('ERR_DEVMAP_UNMAPPED'));
  });
});

describe('close, broadcast, mpmc', () => {
  it('close: readers drain, then end; sends throw', async () => {
    using c = make({ capacity: 4096, mode: 'mpsc' });
    c.channel.send('a');
    c.channel.send('b');
    c.channel.close();
    expect(() => c.channel.send('c')).toThrow(code('ERR_DEVMAP_CHANNEL_CLOSED'));
    const got: string[] = [];
    for await (const m of c.channel) got.push(text(m)!);
    expect(got).toEqual(['a', 'b']);
    expect(c.channel.receive()).toBeNull();
    expect(c.channel.closed).toBe(true);
  });

  it('close wakes a blocked async reader', async () => {
    using c = make({ capacity: 4096 });
    const p = c.channel.receiveAsync();
    setTimeout(() => c.channel.close(), 5);
    expect(await p).toBeNull();
  });

  it('broadcast: every subscriber gets every message; the slowest gates; unsubscribe frees it', () => {
    using c = make({ capacity: 4096, mode: 'broadcast', readers: 3 });
    expect(() => c.channel.tryReceive()).toThrow(code('ERR_DEVMAP_CHANNEL_MODE'));
    const subs = [c.channel.subscribe(), c.channel.subscribe(), c.channel.subscribe()];
    expect(() => c.channel.subscribe()).toThrow(code('ERR_DEVMAP_BUSY'));
    for (let i = 0; i < 20; i++) c.channel.send(`m ${i}`);
    for (const s of subs.slice(0, 2)) for (let i = 0; i < 20; i++) expect(text(s.receive())).toBe(`m ${i}`);
    while (c.channel.trySend('x'.repeat(50)));
    expect(subs[2].lag).toBeGreaterThan(4000);
    subs[2].unsubscribe();
    let more = 0;
    while (c.channel.trySend('x'.repeat(50))) more++; // up to where the two others stand
    expect(more).toBe(Math.floor((20 * 24) / 72)); // the 20 records the others have read, in 72-byte records
    for (const s of subs.slice(0, 2)) while (s.tryReceive() !== null);
    expect(c.channel.trySend('free')).toBe(true);
    expect(c.channel.stats().readers.map((r) => r.slot)).toEqual([0, 1]);
  });

  it('mpmc: competing readers share the records, each exactly once', () => {
    using c = make({ capacity: 8192, mode: 'mpmc', readers: 3 });
    const readers = [c.channel, Channel.attach(c.mapping), Channel.attach(c.mapping)];
    for (let i = 0; i < 300; i++) c.channel.send(`m ${i}`);
    const got: string[] = [];
    for (let i = 0; ; i++) {
      const m = readers[i % 3].tryReceive();
      if (m === null) break;
      got.push(text(m)!);
    }
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => `m ${i}`));
    expect(c.channel.stats().readers.map((r) => r.received)).toEqual([100, 100, 100]);
    readers[1].detach();
    readers[2].detach();
  });

  it('inspect shows cursors and parties as plain data', () => {
    using c = make({ capacity: 4096, mode: 'mpsc' });
    c.channel.send('one');
    const info = Channel.inspect(c.mapping);
    expect(info).toMatchObject({ mode: 'mpsc', capacity: 4096, sent: 1, tail: 24, head: 0 });
    expect(info.writers[0]).toMatchObject({ pid: process.pid, alive: true, sent: 1 });
    expect(Channel.inspect(c.mapping.read())).toEqual(info);
    expect(() => Channel.inspect(new Uint8Array(100))).toThrow(code('ERR_DEVMAP_CORRUPT'));
  });
});

describe('corrupt segments', () => {
  const geometryWords: [string, number, number][] = [
    ['magic', 0, 0x12345678], ['version', 1, 2], ['mode', 2, 9], ['overflow', 3, 0], ['ring', 4, 5000],
    ['ring too large', 4, 2 ** 30 * 2], ['largest message', 5, 0], ['writers', 6, 65], ['readers', 7, 2],
    ['data offset', 8, 64], ['total', 9, 1 << 30],
  ];
  it.each(geometryWords)('attach refuses a bad %s', (_, word, value) => {
    using c = make({ capacity: 4096, mode: 'mpsc' });
    new Int32Array(c.mapping.buffer)[word] = value;
    expect(() => Channel.attach(c.mapping)).toThrow(code('ERR_DEVMAP_CORRUPT'));
  });

  it('a segment whose creation did not finish is not ready', () => {
    using c = make({ capacity: 4096 });
    new Int32Array(c.mapping.buffer)[10] = 0;
    expect(() => Channel.attach(c.mapping)).toThrow(code('ERR_DEVMAP_NOT_READY'));
  });

  const runtime: [string, (i32: Int32Array, rec: number) => void][] = [
    ['a span past the tail', (i32, rec) => (i32[rec + 1] = 4000)],
    ['a span that is not a multiple of 8', (i32, rec) => (i32[rec + 1] = 27)],
    ['a length beyond the span', (i32, rec) => (i32[rec + 2] = 100)],
    ['an unknown state', (i32, rec) => (i32[rec] = 77)],
    ['a tail far ahead of the cursor', (i32) => (i32[16] = 1 << 20)],
    ['a reserved record naming writer slot 200', (i32, rec) => ((i32[rec] = 1), (i32[rec + 3] = 200))],
  ];
  it.each(runtime)('reading a record with %s throws ERR_DEVMAP_CORRUPT', async (_, spoil) => {
    using c = make({ capacity: 4096, mode: 'mpsc', writers: 1 });
    c.channel.send('victim');
    const i32 = new Int32Array(c.mapping.buffer);
    const rec = (320 + 128) / 4;
    spoil(i32, rec);
    const check = () => {
      try {
        c.channel.receive({ timeout: 50 });
      } catch (err) {
        return (err as { code: string }).code;
      }
      return 'none';
    };
    expect(check()).toBe('ERR_DEVMAP_CORRUPT');
  });

  it('random bytes: every call ends normally or with ERR_DEVMAP_CORRUPT / ERR_DEVMAP_BUSY', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ChannelOptions['mode']>('spsc', 'mpsc', 'mpmc', 'broadcast'),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 40 }),
        (mode, flips) => {
          using c = make({ capacity: 4096, mode, readers: mode === 'mpmc' || mode === 'broadcast' ? 2 : 1 });
          const sub = mode === 'broadcast' ? c.channel.subscribe() : undefined;
          for (let i = 0; i < 20; i++) c.channel.send(`message ${i}`);
          const bytes = new Uint8Array(c.mapping.buffer);
          const data = 320 + 64 * 4;
          for (const [at, value] of flips) bytes[at % 2 === 0 ? at % data : data + (at % 600)] = value;
          const ops = [
            () => Channel.attach(c.mapping).detach(),
            () => (sub ?? (mode === 'broadcast' ? c.channel.subscribe() : c.channel)).receive({ timeout: 0 }),
            () => c.channel.send('more', { timeout: 0 }),
            () => Channel.inspect(c.mapping),
          ];
          for (const op of ops) {
            try {
              op();
            } catch (err) {
              expect(['ERR_DEVMAP_CORRUPT', 'ERR_DEVMAP_BUSY', 'ERR_DEVMAP_NOT_READY', 'ERR_DEVMAP_CHANNEL_CLOSED']).toContain((err as { code: string }).code);
            }
          }
        },
      ),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 200) },
    );
  });
});
