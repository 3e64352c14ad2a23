// Cross-process wait/notify and Mutex benchmarks, each beside its C baseline measured in the same run.
//
//   npm run compile && node bench/sync.mjs [--rounds N] [--repeat R]     (defaults: 5000 rounds, 9 runs)
//
// Ping-pong: two processes share one word; the parent stores 1 and waits for 0, the child waits for 1 and
// stores 0. One round trip = one exchange each way. Reported per round trip, median of R runs.
//  - devmap wait/notify, spinning off and at the default (both processes use the same setting)
//  - devmap waitAsync in the parent (sync wait in the child)
//  - C: futex (FUTEX_WAIT/FUTEX_WAKE, no spinning), futex after the same spin as the default, pure spinning
//  - Node IPC: process.send / 'message' between a parent and a forked child
// Mutex: uncontended lock()+unlock() and tryLock()+unlock(), beside an in-process Atomics spinlock on a
// SharedArrayBuffer (the cheapest lock JS has without devmap).
import { fork, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { SharedMemory, mapAnonymous } = require('../dist/index.js');
const { wait, waitAsync, notify, setSpin, DEFAULT_SPIN_ITERATIONS, Mutex } = require('../dist/sync/index.js');
const baselines = require('./baselines.cjs');

const self = fileURLToPath(import.meta.url);
const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};

// --- child roles ---------------------------------------------------------------------------------------------

if (argv[0] === 'pong') {
  const [, name, spin, rounds, counted] = argv;
  const w = counted === '1' ? { waiters: 2 } : undefined;
  setSpin({ iterations: Number(spin) });
  const shm = SharedMemory.open(name);
  const m = shm.map();
  shm.close();
  const a = new Int32Array(m.buffer);
  Atomics.store(a, 1, 1); // ready
  notify(a, 1);
  for (let i = 0; i < Number(rounds); i++) {
    while (Atomics.load(a, 0) === 0) wait(a, 0, 0, w);
    Atomics.store(a, 0, 0);
    notify(a, 0, 1, w);
  }
  m.unmap();
  process.exit(0);
}

// The child of --breakdown: like 'pong', but it stamps the moment of its store (CLOCK_MONOTONIC, the clock
// of process.hrtime and of the addon's own stamps) into a[4..5] before it notifies.
if (argv[0] === 'pong-stamped') {
  const [, name, rounds] = argv;
  setSpin({ iterations: 0 });
  const shm = SharedMemory.open(name);
  const m = shm.map();
  shm.close();
  const a = new Int32Array(m.buffer);
  const stamp = new BigInt64Array(m.buffer, 16, 1);
  Atomics.store(a, 1, 1);
  notify(a, 1);
  for (let i = 0; i < Number(rounds); i++) {
    while (Atomics.load(a, 0) === 0) wait(a, 0, 0);
    Atomics.store(stamp, 0, process.hrtime.bigint());
    Atomics.store(a, 0, 0);
    notify(a, 0, 1);
  }
  m.unmap();
  process.exit(0);
}

if (argv[0] === 'ipc') {
  process.on('message', (msg) => {
    if (msg === 'bye') process.disconnect();
    else process.send(msg);
  });
} else if (process.argv[1] === self && argv.includes('--breakdown')) {
  await breakdown();
} else if (process.argv[1] === self) {
  await main();
}

/** The same measurements as cases for bench/run.mjs (bench/harness.mjs's format). */
export function syncCases({ quick = false } = {}) {
  const c = baselines;
  // Sized so the whole `devmap bench` stays near a minute on two cores (ping-pong needs both).
  const reps = quick ? 3 : 7;
  const rounds = quick ? 500 : 2000;
  const cases = [
    {
      name: 'cross-process ping-pong round trip, spinning off',
      n: rounds,
      reps,
      goal: '≤ 2×',
      baseline: 'C futex',
      variants: {
        'C futex': (n) => c.c_futex_pingpong(n) / n,
        'devmap wait/notify, spin off': (n) => pingPong(n, 0, false),
      },
    },
    {
      name: 'cross-process ping-pong round trip, default spinning',
      n: rounds,
      reps,
      goal: '≤ 2×',
      baseline: 'C spinning',
      variants: {
        'C spinning': (n) => c.c_spin_pingpong(n) / n,
        [`C futex after ${DEFAULT_SPIN_ITERATIONS} polls`]: (n) => c.c_futex_pingpong(n, DEFAULT_SPIN_ITERATIONS) / n,
        'devmap wait/notify': (n) => pingPong(n, DEFAULT_SPIN_ITERATIONS, false),
        'devmap wait/notify { waiters }': (n) => pingPong(n, DEFAULT_SPIN_ITERATIONS, false, true),
      },
    },
    {
      name: 'cross-process ping-pong round trip against Node IPC',
      n: Math.min(rounds, 2000),
      reps,
      goal: '≤ 0.1×',
      baseline: 'process.send',
      variants: {
        'process.send': (n) => ipcPingPong(n),
        'devmap wait/notify': (n) => pingPong(n, DEFAULT_SPIN_ITERATIONS, false),
        'devmap waitAsync, spin off': (n) => pingPong(n, 0, true),
      },
    },
    {
      name: 'uncontended lock+unlock',
      n: quick ? 20_000 : 200_000,
      reps,
      baseline: 'in-process Atomics spinlock',
      variants: {
        'in-process Atomics spinlock': (n) => lockLoop(n, 'spinlock').spinlock,
        'devmap Mutex lock()+unlock()': (n) => lockLoop(n, 'lock').lock,
      },
    },
  ];
  return { cases, cleanup() {} };
}

// --- parent ----------------------------------------------------------------------------------------------------

function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

async function pingPong(rounds, spin, asyncParent, counted = false) {
  const w = counted ? { waiters: 2 } : undefined;
  const name = `devmap-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const shm = SharedMemory.create(name, 4096);
  const m = shm.map();
  shm.close();
  const a = new Int32Array(m.buffer);
  const warm = Math.min(1000, rounds);
  const child = spawn(process.execPath, [self, 'pong', name, String(spin), String(rounds + warm), counted ? '1' : '0'], { stdio: 'inherit' });
  let gone = false;
  const exited = new Promise((resolve) => child.on('exit', (code) => ((gone = true), resolve(code))));
  setSpin({ iterations: spin });
  // Wait for the child's "ready", but not for ever: a child that dies first would never set it.
  while (Atomics.load(a, 1) === 0) {
    if (gone) throw new Error('ping-pong: the child exited before it was ready');
    await waitAsync(a, 1, 0, { timeout: 100 });
  }
  const round = async () => {
    Atomics.store(a, 0, 1);
    notify(a, 0, 1, w);
    if (asyncParent) while (Atomics.load(a, 0) === 1) await waitAsync(a, 0, 1, w);
    else while (Atomics.load(a, 0) === 1) if (wait(a, 0, 1, { ...w, timeout: 1000 }) === 'timed-out' && gone) throw new Error('ping-pong: the child died');
  };
  for (let i = 0; i < warm; i++) await round();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) await round();
  const ns = Number(process.hrtime.bigint() - t0);
  await exited;
  m.unmap();
  SharedMemory.unlink(name);
  setSpin({ iterations: DEFAULT_SPIN_ITERATIONS });
  return ns / rounds;
}

/**
 * Where a waitAsync round trip goes (node bench/sync.mjs --breakdown [--rounds N]): per round, from the
 * parent's notify to the moment its await resumes, split at the stamps the child and the addon leave.
 */
async function breakdown() {
  const rounds = opt('rounds', 3000);
  const { native } = require('../dist/native.js');
  const name = `devmap-bench-${process.pid}-bd`;
  const shm = SharedMemory.create(name, 4096);
  const m = shm.map();
  shm.close();
  const a = new Int32Array(m.buffer);
  const stamp = new BigInt64Array(m.buffer, 16, 1);
  const warm = 500;
  const child = spawn(process.execPath, [self, 'pong-stamped', name, String(rounds + warm)], { stdio: 'inherit' });
  while (Atomics.load(a, 1) === 0) await waitAsync(a, 1, 0, { timeout: 100 });
  const parts = { 'child wakes and answers': [], 'waiter thread wakes': [], 'waiter thread settles and queues': [], 'thread-safe function reaches the JS thread': [], 'JS: completion to await resumed': [], 'round trip': [], 'round trip, every round': [], 'next waitAsync: add to asleep (overlaps the child)': [] };
  for (let i = 0; i < rounds + warm; i++) {
    const t0 = process.hrtime.bigint();
    Atomics.store(a, 0, 1);
    notify(a, 0, 1);
    while (Atomics.load(a, 0) === 1) await waitAsync(a, 0, 1);
    const t5 = process.hrtime.bigint();
    if (i < warm) continue;
    parts['round trip, every round'].push(Number(t5 - t0));
    const [added, asleep, woke, queued, delivered] = native().waitv_times();
    const tc = Number(Atomics.load(stamp, 0) - t0);
    const base = Number(t0);
    if (woke < base) continue; // answered before the wait was registered: no thread involved this round
    parts['child wakes and answers'].push(tc);
    parts['waiter thread wakes'].push(woke - base - tc);
    parts['waiter thread settles and queues'].push(queued - woke);
    parts['thread-safe function reaches the JS thread'].push(delivered - queued);
    parts['JS: completion to await resumed'].push(Number(t5) - delivered);
    parts['round trip'].push(Number(t5 - t0));
    parts['next waitAsync: add to asleep (overlaps the child)'].push(asleep - added);
  }
  await new Promise((resolve) => child.on('exit', resolve));
  m.unmap();
  SharedMemory.unlink(name);
  const ipc = await ipcPingPong(Math.min(rounds, 3000));
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${parts['round trip'].length} rounds with a sleep`);
  console.log('| step | median | p10 |\n|---|---:|---:|');
  const q = (xs, f) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length * f)];
  for (const [k, xs] of Object.entries(parts)) console.log(`| ${k} | ${(q(xs, 0.5) / 1000).toFixed(1)} µs | ${(q(xs, 0.1) / 1000).toFixed(1)} µs |`);
  console.log(`| process.send round trip (same run) | ${(ipc / 1000).toFixed(1)} µs | |`);
}

async function ipcPingPong(rounds) {
  const child = fork(self, ['ipc']);
  const once = () => new Promise((resolve) => child.once('message', resolve));
  for (let i = 0; i < 200; i++) {
    child.send(i);
    await once();
  }
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) {
    child.send(i);
    await once();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  child.send('bye');
  await new Promise((resolve) => child.on('exit', resolve));
  return ns / rounds;
}

function lockLoop(n, only) {
  const m = mapAnonymous(4096);
  const mu = Mutex.init(new Int32Array(m.buffer), 0);
  const run = (f, name) => {
    if (only !== undefined && only !== name) return NaN;
    for (let i = 0; i < 10000; i++) f();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    return Number(process.hrtime.bigint() - t0) / n;
  };
  const lock = run(() => {
    mu.lock();
    mu.unlock();
  }, 'lock');
  const tryLock = run(() => {
    mu.tryLock();
    mu.unlock();
  }, 'tryLock');
  const sab = new Int32Array(new SharedArrayBuffer(8));
  const spinlock = run(() => {
    while (Atomics.compareExchange(sab, 0, 0, 1) !== 0);
    Atomics.store(sab, 0, 0);
  }, 'spinlock');
  m.unmap();
  return { lock, tryLock, spinlock };
}

/** What one call costs with nobody on the other side. */
function callCosts(n) {
  const m = mapAnonymous(4096);
  const a = new Int32Array(m.buffer);
  const run = (f) => {
    for (let i = 0; i < 10000; i++) f();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) f();
    return Number(process.hrtime.bigint() - t0) / n;
  };
  const W = { waiters: 1 };
  const out = {
    notEqual: run(() => wait(a, 0, 1)),
    notify: run(() => notify(a, 0)),
    notifyCounted: run(() => notify(a, 0, 1, W)),
  };
  m.unmap();
  return out;
}

async function main() {
  const rounds = opt('rounds', 5000);
  const repeat = opt('repeat', 9);
  const n = baselines;
  const rows = [];
  // Registered first, then run interleaved (run r of every measurement before run r + 1 of any), so that a
  // burst of load elsewhere on the machine does not fall on one measurement only.
  const plan = [];
  const measure = async (label, f) => plan.push({ label, f, xs: [] });
  await measure('C futex ping-pong (no spin)', () => n.c_futex_pingpong(rounds) / rounds);
  await measure(`C futex ping-pong after ${DEFAULT_SPIN_ITERATIONS} polls`, () => n.c_futex_pingpong(rounds, DEFAULT_SPIN_ITERATIONS) / rounds);
  await measure('C spinning ping-pong', () => n.c_spin_pingpong(rounds) / rounds);
  await measure('devmap wait/notify, spin off', () => pingPong(rounds, 0, false));
  await measure(`devmap wait/notify, spin default (${DEFAULT_SPIN_ITERATIONS})`, () => pingPong(rounds, DEFAULT_SPIN_ITERATIONS, false));
  await measure(`devmap wait/notify, spin default, { waiters } count`, () => pingPong(rounds, DEFAULT_SPIN_ITERATIONS, false, true));
  await measure('devmap waitAsync (parent) / wait (child), spin off', () => pingPong(Math.min(rounds, 5000), 0, true));
  await measure('Node process.send IPC ping-pong', () => ipcPingPong(Math.min(rounds, 5000)));
  for (let r = 0; r < repeat; r++) for (const p of plan) p.xs.push(await p.f());
  for (const p of plan) rows.push({ label: p.label, ns: median(p.xs), min: Math.min(...p.xs) });
  const locks = [];
  for (let r = 0; r < repeat; r++) locks.push(lockLoop(1_000_000));
  rows.push({ label: 'Mutex lock()+unlock(), uncontended', ns: median(locks.map((l) => l.lock)), min: Math.min(...locks.map((l) => l.lock)) });
  rows.push({ label: 'Mutex tryLock()+unlock(), uncontended', ns: median(locks.map((l) => l.tryLock)), min: Math.min(...locks.map((l) => l.tryLock)) });
  rows.push({ label: 'in-process Atomics spinlock (SharedArrayBuffer)', ns: median(locks.map((l) => l.spinlock)), min: Math.min(...locks.map((l) => l.spinlock)) });

  const calls = [];
  for (let r = 0; r < repeat; r++) calls.push(callCosts(300_000));
  const row = (label, key) => rows.push({ label, ns: median(calls.map((c) => c[key])), min: Math.min(...calls.map((c) => c[key])) });
  row("wait() answering 'not-equal' (the call itself)", 'notEqual');
  row('notify() with nobody asleep (a FUTEX_WAKE system call)', 'notify');
  row('notify(…, { waiters }) with a count of 0 (no system call)', 'notifyCounted');

  const by = (prefix, key = 'ns') => rows.find((r) => r.label.startsWith(prefix))[key];
  console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0].model}), Linux ${os.release()}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`rounds ${rounds}, repeat ${repeat} (median and min of the runs)\n`);
  console.log('| measurement | median | min |\n|---|---:|---:|');
  const fmt = (ns) => (ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);
  for (const r of rows) console.log(`| ${r.label} | ${fmt(r.ns)} | ${fmt(r.min)} |`);
  // The ping-pongs need both processes on a CPU at once: on a busy machine the medians measure the
  // scheduler, and the minimum is the better estimate of the uncontended cost. Both are shown.
  const goal = (label, num, den, limit, inverse = false) => {
    const ratio = (k) => (inverse ? by(den, k) / by(num, k) : by(num, k) / by(den, k));
    console.log(`| ${label} | ${ratio('ns').toFixed(2)}× | ${ratio('min').toFixed(2)}× | ${limit} |`);
  };
  console.log('\n| goal | median | min | target |\n|---|---:|---:|---|');
  goal('spin off vs C futex', 'devmap wait/notify, spin off', 'C futex ping-pong (no spin)', '≤ 2×');
  goal('spin default vs C spinning', 'devmap wait/notify, spin default (', 'C spinning', '≤ 2×');
  goal('spin default + { waiters } vs C spinning', 'devmap wait/notify, spin default, { waiters }', 'C spinning', '≤ 2×');
  goal('process.send vs spin default (speed-up)', 'devmap wait/notify, spin default (', 'Node process.send', '≥ 10×', true);
  goal('process.send vs spin default + { waiters } (speed-up)', 'devmap wait/notify, spin default, { waiters }', 'Node process.send', '≥ 10×', true);
}
