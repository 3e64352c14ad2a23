/*
 * `npm start`: a parent and four child processes share one POSIX shm segment. Each child maps it by name,
 * fills its own stripe with a pattern derived from its index, and reports a checksum; the parent then
 * checksums the same stripes through its own mapping and prints both side by side. Every figure on a row must
 * match: the bytes one process wrote are the bytes the other reads, with no copy in between.
 */
import { spawn } from 'node:child_process';
import { SharedMemory, pageSize } from './index';

const CHILDREN = 4;
const STRIPE = 256 * pageSize; // 1 MiB with 4 KiB pages

function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5; // FNV-1a, 32-bit
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h;
}

function fillStripe(bytes: Uint8Array, index: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * (index + 3) + index) & 0xff;
}

async function parent(): Promise<void> {
  const name = `devmap-demo-${process.pid}`;
  const shm = SharedMemory.create(name, CHILDREN * STRIPE);
  const mapping = shm.map();
  console.log(`devmap demo: /dev/shm/${name}, ${CHILDREN} children × ${STRIPE / 1024} KiB stripes, mapped at 0x${mapping.address.toString(16)}`);
  try {
    const reports = await Promise.all(
      Array.from({ length: CHILDREN }, (_, i) => runChild(name, i)),
    );
    console.log('\n  child  pid       child checksum  parent checksum  match');
    let ok = true;
    for (const r of reports) {
      const mine = checksum(new Uint8Array(mapping.view(r.index * STRIPE, STRIPE)));
      ok &&= mine === r.sum;
      console.log(`  ${r.index}      ${String(r.pid).padEnd(8)}  ${hex(r.sum)}      ${hex(mine)}       ${mine === r.sum ? 'yes' : 'NO'}`);
    }
    console.log(ok ? '\nEvery stripe the children wrote is what the parent reads.' : '\nMISMATCH');
    process.exitCode = ok ? 0 : 1;
  } finally {
    mapping.unmap();
    shm.unlink();
    shm.close();
  }
}

const hex = (n: number) => '0x' + n.toString(16).padStart(8, '0');

function runChild(name: string, index: number): Promise<{ index: number; pid: number; sum: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, 'child', name, String(index)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child ${index} exited with ${code}`))));
  });
}

function child(name: string, index: number): void {
  using shm = SharedMemory.open(name);
  const mapping = shm.map({ offset: index * STRIPE, length: STRIPE });
  const bytes = new Uint8Array(mapping.buffer);
  fillStripe(bytes, index);
  process.stdout.write(JSON.stringify({ index, pid: process.pid, sum: checksum(bytes) }));
  mapping.unmap();
}

if (process.argv[2] === 'child') child(process.argv[3], Number(process.argv[4]));
else void parent();
