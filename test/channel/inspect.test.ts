// `devmap inspect NAME` on a channel segment: cursors, counters and the parties, read from a snapshot.
import { expect, it } from 'vitest';
import { Channel, SharedMemory } from '../../lib';
import { devmap } from '../cli/devmap';
import { trackLeaks, uniqueName } from '../helpers/leaks';

trackLeaks();

it('devmap inspect shows a channel\'s cursors, writers and readers', async () => {
  const name = uniqueName('inspect');
  const opts = { capacity: 4096, mode: 'mpsc' as const };
  using shm = SharedMemory.create(name, Channel.bytesFor(opts));
  const mapping = shm.map();
  const ch = Channel.create(mapping, opts);
  try {
    ch.send('one');
    ch.send('two');
    ch.receive();
    const r = await devmap('inspect', name);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('structure: devmap channel');
    expect(r.stdout).toMatch(/mode\s+mpsc, overflow block/);
    expect(r.stdout).toMatch(/cursors\s+tail 48, head 24/);
    expect(r.stdout).toMatch(/messages\s+2 sent \(6 bytes\), 1 received/);
    expect(r.stdout).toContain(`writers   slot 0: pid ${process.pid}, 2 sent`);
    expect(r.stdout).toContain(`readers   slot 0: pid ${process.pid}, cursor 24, lag 24 bytes, 1 received`);
    // A corrupt header is reported, not fatal.
    new Int32Array(mapping.buffer)[4] = 5000;
    const bad = await devmap('inspect', name);
    expect(bad.code).toBe(0);
    expect(bad.stdout).toMatch(/corrupt: ring size 5000/);
  } finally {
    ch.detach();
    mapping.unmap();
    shm.unlink();
  }
});
