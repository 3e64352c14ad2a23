// The client process of bench/faults.mjs: a Node client of the bench's kernel host. For each line "N" on stdin
// it maps N fresh pages of /dev/bflt, touches each once (N real faults into devmap_access), unmaps, and prints
// the touch loop's nanoseconds per page. "hold" maps one page, touches it and prints "held" (devmap_unload's
// target); "exit" ends.
const { createInterface } = require('node:readline');
const { connectKernel, MAP_SHARED, PROT_READ, PROT_WRITE, pageSize } = require('../dist');

async function main() {
  const p = connectKernel(process.argv[2]);
  const fd = await p.open('/dev/bflt');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'exit') break;
    if (line === 'hold') {
      const a = await p.mmap(0n, pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      new Uint8Array(p.view(a, pageSize))[0];
      process.stdout.write('held\n');
      continue;
    }
    const n = Number(line);
    const addr = await p.mmap(0n, n * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const view = new Uint8Array(p.view(addr, n * pageSize));
    let sum = 0;
    const t0 = process.hrtime.bigint();
    for (let off = 0; off < view.length; off += pageSize) sum += view[off];
    const ns = Number(process.hrtime.bigint() - t0);
    await p.munmap(addr, n * pageSize);
    process.stdout.write(`${ns / n} ${sum}\n`);
  }
  await p.exit();
}
main();
