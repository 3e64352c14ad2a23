// Peers killed at the worst moments (SIGKILL, in real child processes): a writer between loan and commit, a
// reader inside consume, a broadcast reader that gates the writers, a writer holding the reserve lock.
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Channel } from '../../lib';
import { fixture } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { segment } from './segment';

trackLeaks();

/** Starts a channel-child.cjs role and resolves once it has printed `line`. */
function startChild(args: string[], line: string): Promise<{ child: ChildProcess; printed: string[] }> {
  const child = spawn(process.execPath, [fixture('channel-child.cjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const printed: string[] = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        printed.push(l);
        if (l.startsWith(line)) resolve({ child, printed });
      }
    });
    child.on('exit', (code, signal) => reject(new Error(`child exited early (${code ?? signal})`)));
  });
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

const text = (m: Uint8Array | null) => (m === null ? null : new TextDecoder().decode(m));

describe('a writer killed between loan() and commit()', () => {
  it.each(['mpsc', 'mpmc'] as const)('%s: readers skip its record; the committed records of others behind it flow', async (mode) => {
    using s = segment({ capacity: 8192, mode });
    const { child } = await startChild(['loan-and-hang', s.name], 'loaned');
    expect(s.channel.send('after the loan')).toBe(true); // committed behind the reserved record
    expect(s.channel.tryReceive()).toBeNull(); // the reserved record is first, and its writer is alive
    await kill(child);
    const t0 = performance.now();
    const m = s.channel.receive({ timeout: 5000 }); // hang guard only
    const ms = performance.now() - t0;
    expect(text(m)).toBe('after the loan');
    expect(s.channel.stats().skipped).toBe(1);
    console.log(`${mode}: dead writer's record skipped after ${ms.toFixed(1)} ms`);
  });

  it('spsc: the record is skipped and a new writer takes the dead one\'s slot', async () => {
    using s = segment({ capacity: 8192, mode: 'spsc' });
    const { child } = await startChild(['loan-and-hang', s.name], 'loaned');
    expect(() => s.channel.send('x')).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' }));
    await kill(child);
    expect(s.channel.send('from the new writer')).toBe(true);
    expect(text(s.channel.receive({ timeout: 5000 }))).toBe('from the new writer');
    expect(s.channel.stats().skipped).toBe(1);
  });

  it('receiveAsync skips it too', async () => {
    using s = segment({ capacity: 8192, mode: 'mpsc' });
    const { child } = await startChild(['loan-and-hang', s.name], 'loaned');
    const pending = s.channel.receiveAsync({ timeout: 5000 });
    await kill(child);
    s.channel.send('behind');
    expect(text(await pending)).toBe('behind');
  });
});

describe('a reader killed inside consume()', () => {
  it.each(['spsc', 'mpmc'] as const)('%s: the record is delivered again to the next reader (at-least-once)', async (mode) => {
    using s = segment({ capacity: 8192, mode });
    s.channel.send('first');
    s.channel.send('second');
    const { child, printed } = await startChild(['consume-and-hang', s.name], 'inside');
    expect(printed).toEqual(['inside first']);
    await kill(child);
    // This process reads now: in spsc it takes the dead reader's slot over, in mpmc it finds the orphan.
    const got = [text(s.channel.receive({ timeout: 5000 })), text(s.channel.receive({ timeout: 5000 }))];
    // spsc redelivers in place; mpmc finds the orphan once nothing newer is there, so it may come second.
    expect(mode === 'spsc' ? got : got.sort()).toEqual(['first', 'second']);
    expect(s.channel.tryReceive()).toBeNull();
  });

  it('spsc: while the reader lives, its slot is not taken', async () => {
    using s = segment({ capacity: 8192, mode: 'spsc' });
    s.channel.send('first');
    const { child } = await startChild(['consume-and-hang', s.name], 'inside');
    expect(() => s.channel.tryReceive()).toThrow(expect.objectContaining({ code: 'ERR_DEVMAP_BUSY' }));
    await kill(child);
  });
});

describe('a broadcast reader that dies', () => {
  it('stops gating the writers', async () => {
    using s = segment({ capacity: 4096, mode: 'broadcast', readers: 4 });
    const { child } = await startChild(['subscribe-and-hang', s.name], 'subscribed');
    let n = 0;
    while (s.channel.trySend('fill the ring')) n++;
    expect(n).toBeGreaterThan(10);
    expect(s.channel.send('blocked', { timeout: 30 })).toBe(false); // a live reader gates
    await kill(child);
    const t0 = performance.now();
    expect(s.channel.send('flows again', { timeout: 5000 })).toBe(true);
    console.log(`broadcast: dead reader stopped gating after ${(performance.now() - t0).toFixed(1)} ms`);
    expect(s.channel.stats().readers).toEqual([]);
  });

  it('asynchronously too', async () => {
    using s = segment({ capacity: 4096, mode: 'broadcast', readers: 4 });
    const { child } = await startChild(['subscribe-and-hang', s.name], 'subscribed');
    while (s.channel.trySend('fill the ring'));
    const pending = s.channel.sendAsync('flows again', { timeout: 5000 });
    await kill(child);
    expect(await pending).toBe(true);
  });
});

describe('the event loop', () => {
  it('a pending receiveAsync keeps a process alive until the message comes', async () => {
    using s = segment({ capacity: 4096, mode: 'spsc' });
    const { child, printed } = await startChild(['receive-async-once', s.name], 'waiting');
    const exited = new Promise<number | null>((resolve) => {
      child.removeAllListeners('exit');
      child.on('close', (code) => resolve(code)); // close: stdout is drained too
    });
    await new Promise((r) => setTimeout(r, 300)); // the child has nothing else to keep it running
    expect(child.exitCode).toBeNull();
    s.channel.send('late');
    expect(await exited).toBe(0);
    expect(printed).toEqual(['waiting', 'got late']);
  });
});

describe('a writer that died holding the reserve lock', () => {
  it('is taken over: the lock, its reserved record at the tail, and its slot', async () => {
    using s = segment({ capacity: 8192, mode: 'mpsc', writers: 2 });
    // A real process that has exited: its pid names nobody now.
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.on('exit', r));
    const i32 = new Int32Array(s.mapping.buffer);
    const slot = 320 / 4; // writer slot 0
    i32[slot + 3] = 5; // generation
    i32[slot] = dead.pid!;
    const tag = 0 | (5 << 8);
    // A reserved record at the tail, and the lock in the dead writer's name.
    const data = Channel.inspect(s.mapping); // geometry check before writing
    expect(data.tail).toBe(0);
    const rec = (320 + 64 * 3 + 63 & ~63) / 4; // data offset: header + 3 slots, rounded to 64
    i32[rec + 1] = 32;
    i32[rec + 2] = 10;
    i32[rec + 3] = tag;
    i32[rec] = 1; // RESERVED
    i32[16] = 32; // tail
    i32[17] = tag + 1; // reserve lock
    expect(s.channel.send('after the takeover', { timeout: 5000 })).toBe(true);
    expect(text(s.channel.receive({ timeout: 5000 }))).toBe('after the takeover');
    expect(s.channel.stats().skipped).toBe(1);
  });
});
