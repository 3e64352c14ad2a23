// Channel benchmarks, each beside the same protocol in C (include/devmap/channel.h, run by the benchmark addon)
// or beside what Node offers (process.send, worker.postMessage), measured in the same run.
//
//   npm run compile && node bench/channel.mjs [--quick]        (or: devmap bench --filter channel)
//
// Ping-pong: the parent sends on channel A, a child process receives it and sends it back on channel B; one
// round trip per operation. Throughput: a child writes n 64-byte messages, the parent reads them in batches;
// ns per message. 1 MiB: loan/consume round trips of 1 MiB records beside 64-byte ones (zero-copy: latency
// should not grow with the size). Broadcast: one writer, 4 subscriber processes; ns per message per reader
// beside one subscriber.
import { fork, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const { Channel, SharedMemory, setSpin } = require('../dist/index.js');
const baselines = require('./baselines.cjs');

const self = fileURLToPath(import.meta.url);
const argv = process.argv.slice(2);
const SPIN_FOREVER = 1e9;

// --- segments --------------------------------------------------------------------------------------------------

function channelSegment(opts) {
  const name = `devmap-bench-ch-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const shm = SharedMemory.create(name, Channel.bytesFor(opts));
  const mapping = shm.map();
  shm.close();
  const channel = Channel.create(mapping, opts);
  return {
    name, channel,
    dispose() {
      channel.detach();
      mapping.unmap();
      SharedMemory.unlink(name);
    },
  };
}

function attach(name, spin) {
  const shm = SharedMemory.open(name);
  const mapping = shm.map();
  shm.close();
  return Channel.attach(mapping, { spin });
}

const ringFor = (size) => Math.max(65536, 2 ** Math.ceil(Math.log2(2 * (size + 16))));

// --- child roles -----------------------------------------------------------------------------------------------

async function child(role, args) {
  if (role === 'echo') {
    // echo A B spin mode(sync|async|loan) rounds
    const [a, b, spin, mode, rounds] = args;
    if (Number(spin) === 0) setSpin({ iterations: 0 });
    const inbox = attach(a, Number(spin));
    const outbox = attach(b, Number(spin));
    outbox.send('ready');
    for (let i = 0; i < Number(rounds); i++) {
      if (mode === 'async') {
        const m = await inbox.receiveAsync({ timeout: 10000 });
        if (m === null || !(await outbox.sendAsync(m))) process.exit(1);
      } else if (mode === 'loan') {
        inbox.consume((v) => {
          const loan = outbox.loan(v.length);
          loan.view[0] = v[0];
          loan.commit();
        }, { timeout: 10000 });
      } else {
        const m = inbox.receive({ timeout: 10000 });
        if (m === null || !outbox.send(m)) process.exit(1);
      }
    }
  } else if (role === 'write') {
    // write A n size: as fast as the ring allows
    const [a, n, size] = args;
    const ch = attach(a, 1000);
    const batch = Array.from({ length: 64 }, () => new Uint8Array(Number(size)));
    for (let i = 0; i < Number(n); i += batch.length) {
      if (ch.sendBatch(i + batch.length <= Number(n) ? batch : batch.slice(0, Number(n) - i), { timeout: 10000 }) === 0) process.exit(1);
    }
  } else if (role === 'subscribe') {
    // subscribe A n ready-channel: reads n messages, says "done" on the ready channel
    const [a, n, r] = args;
    const ch = attach(a, 1000);
    const sub = ch.subscribe();
    const ready = attach(r, 1000);
    ready.send('ready');
    let got = 0;
    while (got < Number(n)) got += sub.consumeBatch(() => {}, { timeout: 10000 }) || (process.exit(1), 0);
    ready.send('done');
  } else if (role === 'ipc') {
    process.on('message', (msg) => {
      if (msg === 'bye') process.disconnect();
      else if (typeof msg === 'object' && msg !== null && 'flood' in msg) {
        const m = 'x'.repeat(64);
        for (let i = 0; i < Number(msg.flood); i++) process.send?.(m);
      } else process.send?.(msg);
    });
  }
}

if (argv[0] === 'child') await child(argv[1], argv.slice(2));

// --- parent ----------------------------------------------------------------------------------------------------

function spawnChild(args) {
  const c = spawn(process.execPath, [self, 'child', ...args], { stdio: 'inherit' });
  const exited = new Promise((resolve) => c.on('exit', resolve));
  return { c, exited };
}

/** JS ping-pong: ns per round trip. mode: sync | async | loan. */
async function pingPong(rounds, { size = 64, spin, mode = 'sync' }) {
  const opts = { capacity: ringFor(size), maxMessage: size, mode: 'spsc', spin };
  const a = channelSegment(opts);
  const b = channelSegment(opts);
  if (spin === 0) setSpin({ iterations: 0 });
  const warm = 200;
  const { exited } = spawnChild(['echo', a.name, b.name, String(spin), mode, String(rounds + warm)]);
  try {
    if ((await b.channel.receiveAsync({ timeout: 20000 })) === null) throw new Error('echo child did not start');
    const msg = new Uint8Array(size);
    const round = mode === 'async'
      ? async () => {
        await a.channel.sendAsync(msg);
        await b.channel.receiveAsync({ timeout: 10000 });
      }
      : mode === 'loan'
        ? () => {
          const loan = a.channel.loan(size);
          loan.view[0] = 1;
          loan.commit();
          b.channel.consume((v) => v[0], { timeout: 10000 });
        }
        : () => {
          a.channel.send(msg);
          b.channel.receive({ timeout: 10000 });
        };
    for (let i = 0; i < warm; i++) await round();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) await round();
    const ns = Number(process.hrtime.bigint() - t0) / rounds;
    await exited;
    return ns;
  } finally {
    setSpin({ iterations: 200 });
    a.dispose();
    b.dispose();
  }
}

async function ipcPingPong(rounds) {
  const c = fork(self, ['child', 'ipc']);
  const once = () => new Promise((resolve) => c.once('message', resolve));
  for (let i = 0; i < 100; i++) {
    c.send(i);
    await once();
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    c.send('x'.repeat(64));
    await once();
  }
  const ns = Number(process.hrtime.bigint() - t0) / rounds;
  c.send('bye');
  await new Promise((resolve) => c.on('exit', resolve));
  return ns;
}

/** A child writes n messages of 64 B; the parent reads them with consumeBatch. ns per message. */
async function channelThroughput(n) {
  const s = channelSegment({ capacity: 1 << 20, mode: 'spsc', spin: 1000 });
  const { exited } = spawnChild(['write', s.name, String(n), '64']);
  try {
    let got = s.channel.consumeBatch(() => {}, { timeout: 20000, max: 1 }); // the first one starts the clock
    const t0 = process.hrtime.bigint();
    let sum = 0;
    while (got < n) got += s.channel.consumeBatch((bytes, off) => (sum += bytes[off]), { timeout: 10000 }) || Infinity;
    const ns = Number(process.hrtime.bigint() - t0) / (n - 1);
    await exited;
    return ns;
  } finally {
    s.dispose();
  }
}

async function ipcThroughput(n) {
  const c = fork(self, ['child', 'ipc']);
  let got = 0;
  let t0 = 0n;
  const done = new Promise((resolve) => c.on('message', () => {
    if (got++ === 0) t0 = process.hrtime.bigint();
    if (got === n) resolve(Number(process.hrtime.bigint() - t0) / (n - 1));
  }));
  c.send({ flood: n });
  const ns = await done;
  c.send('bye');
  await new Promise((resolve) => c.on('exit', resolve));
  return ns;
}

async function workerThroughput(n) {
  const w = new Worker(`const { parentPort } = require('node:worker_threads'); const m = new Uint8Array(64);
    parentPort.once('message', (n) => { for (let i = 0; i < n; i++) parentPort.postMessage(m); });`, { eval: true });
  let got = 0;
  let t0 = 0n;
  const ns = await new Promise((resolve) => {
    w.on('message', () => {
      if (got++ === 0) t0 = process.hrtime.bigint();
      if (got === n) resolve(Number(process.hrtime.bigint() - t0) / (n - 1));
    });
    w.postMessage(n);
  });
  await w.terminate();
  return ns;
}

/** One writer (this process), `readers` subscriber processes: ns per message each reader sees. */
async function broadcast(n, readers) {
  const s = channelSegment({ capacity: 1 << 20, mode: 'broadcast', readers, spin: 1000 });
  const r = channelSegment({ capacity: 4096, mode: 'mpsc', spin: 1000 });
  const kids = Array.from({ length: readers }, () => spawnChild(['subscribe', s.name, String(n), r.name]));
  try {
    for (let i = 0; i < readers; i++) if ((await r.channel.receiveAsync({ timeout: 20000 })) === null) throw new Error('subscriber did not start');
    const msg = new Uint8Array(64);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (!s.channel.trySend(msg)) s.channel.send(msg, { timeout: 10000 });
    for (let i = 0; i < readers; i++) await r.channel.receiveAsync({ timeout: 20000 });
    const ns = Number(process.hrtime.bigint() - t0) / n;
    await Promise.all(kids.map((k) => k.exited));
    return ns;
  } finally {
    s.dispose();
    r.dispose();
  }
}

/** The cases, for bench/run.mjs (bench/harness.mjs's format). */
export function channelCases({ quick = false } = {}) {
  const c = baselines;
  const reps = quick ? 2 : 5;
  const rounds = quick ? 1000 : 3000;
  const flood = quick ? 200_000 : 1_000_000;
  const cases = [
    {
      name: 'channel ping-pong, 64 B, spinning readers',
      n: rounds, reps, goal: '≤ 2×', baseline: 'C channel.h, spinning',
      variants: {
        'C channel.h, spinning': (n) => c.c_channel_pingpong(n, 64, SPIN_FOREVER) / n,
        'devmap Channel send/receive, spinning': (n) => pingPong(n, { spin: SPIN_FOREVER }),
      },
    },
    {
      name: 'channel ping-pong, 64 B, futex-blocking (spinning off)',
      n: rounds, reps, goal: '≤ 1.5×', baseline: 'C channel.h, futex',
      variants: {
        'C channel.h, futex': (n) => c.c_channel_pingpong(n, 64, 0) / n,
        'devmap Channel send/receive, spin 0': (n) => pingPong(n, { spin: 0 }),
      },
    },
    {
      name: 'channel ping-pong, 64 B, receiveAsync/sendAsync against process.send',
      n: Math.min(rounds, 2000), reps, goal: '≤ 0.2×', baseline: 'process.send',
      variants: {
        'process.send': (n) => ipcPingPong(n),
        'devmap Channel receiveAsync/sendAsync': (n) => pingPong(n, { spin: 0, mode: 'async' }),
      },
    },
    {
      name: 'channel throughput, 64 B, one writer process → one reader (ns per message)',
      n: flood, reps, goal: '≤ 0.05×', baseline: 'process.send', goalVariants: ['devmap Channel sendBatch → consumeBatch'],
      variants: {
        'process.send': (n) => ipcThroughput(Math.min(n, 200_000)),
        'worker.postMessage': (n) => workerThroughput(Math.min(n, 200_000)),
        'C channel.h': (n) => c.c_channel_throughput(n, 64) / n,
        'devmap Channel sendBatch → consumeBatch': (n) => channelThroughput(n),
      },
    },
    {
      name: 'channel loan/consume round trip, 1 MiB against 64 B',
      n: quick ? 300 : 1000, reps, goal: '≤ 2×', baseline: 'devmap loan/consume, 64 B', goalVariants: ['devmap loan/consume, 1 MiB'],
      variants: {
        'devmap loan/consume, 64 B': (n) => pingPong(n, { size: 64, spin: SPIN_FOREVER, mode: 'loan' }),
        'devmap loan/consume, 1 MiB': (n) => pingPong(n, { size: 1 << 20, spin: SPIN_FOREVER, mode: 'loan' }),
        'C channel.h send/receive (copies), 1 MiB': (n) => c.c_channel_pingpong(n, 1 << 20, SPIN_FOREVER) / n,
      },
    },
    {
      name: 'channel broadcast, 64 B, ns per message per reader: 4 readers against 1',
      n: quick ? 100_000 : 400_000, reps, goal: '≤ 2×', baseline: 'devmap broadcast, 1 reader',
      variants: {
        'devmap broadcast, 1 reader': (n) => broadcast(n, 1),
        'devmap broadcast, 4 readers': (n) => broadcast(n, 4),
      },
    },
  ];
  return { cases, cleanup() {} };
}

if (argv[0] !== 'child' && process.argv[1] === self) {
  const { runCase, markdown } = await import('./harness.mjs');
  const results = [];
  for (const kase of channelCases({ quick: argv.includes('--quick') }).cases) {
    const r = await runCase(kase);
    results.push(r);
    console.log(markdown([r]));
  }
}
