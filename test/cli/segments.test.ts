// devmap ls, rm and inspect against real /dev/shm segments made by this process, child processes and Python.
import { chownSync, existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { SharedMemory, SharedResourceMap, rmalloc, rmfree } from '../../lib';
import { Mutex } from '../../lib/sync';
import { startTimeOf } from '../../lib/identity';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import { run } from '../helpers/child';
import { BIN, devmap } from './devmap';

trackLeaks();

const created: string[] = [];
afterEach(() => {
  for (const name of created.splice(0)) if (existsSync(`/dev/shm/${name}`)) SharedMemory.unlink(name);
});

/** A segment of `size` bytes holding `content` at offset 0; closed unless `keepOpen`. */
function segment(size = 4096, content?: Uint8Array): string {
  const name = uniqueName('cli');
  created.push(name);
  const shm = SharedMemory.create(name, size);
  if (content) {
    const m = shm.map();
    new Uint8Array(m.buffer).set(content);
    m.unmap();
  }
  shm.close();
  return name;
}

const lsJson = async () => {
  const r = await devmap('ls', '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Array<{ name: string; size: number; mode: string; uid: number; holders: number[]; creator: unknown }>;
};

/** Sets the creator record the way devmap's create() does, from Python (os.setxattr), for any build of the addon. */
async function recordCreator(name: string, pid: number, startTime: number): Promise<void> {
  const script = `import os; os.setxattr('/dev/shm/${name}', 'user.devmap.creator', b'${pid}:${startTime}')`;
  const r = await run('python3', ['-c', script]);
  expect(r.code, r.stderr).toBe(0);
}

/** A process that has exited, with the start time it had: a creator that is gone. */
async function deadProcess(): Promise<{ pid: number; startTime: number }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  const startTime = startTimeOf(child.pid!)!;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  return { pid: child.pid!, startTime };
}

const isRoot = process.getuid?.() === 0;

describe('devmap ls', () => {
  it('lists a segment with its size, mode and owner', async () => {
    const name = segment(3 * 4096);
    const seg = (await lsJson()).find((s) => s.name === name);
    expect(seg).toMatchObject({ size: 3 * 4096, mode: '0600', uid: process.getuid!() });
    const text = await devmap('ls');
    expect(text.stdout).toMatch(new RegExp(`^${name}\\s+12.0 KiB\\s+0600\\s`, 'm'));
  });

  it('names the processes that hold a segment open or mapped', async () => {
    const name = segment();
    expect((await lsJson()).find((s) => s.name === name)!.holders).not.toContain(process.pid);
    const shm = SharedMemory.open(name);
    const m = shm.map();
    shm.close(); // still mapped: /proc/<pid>/maps shows it
    expect((await lsJson()).find((s) => s.name === name)!.holders).toContain(process.pid);
    m.unmap();
    expect((await lsJson()).find((s) => s.name === name)!.holders).not.toContain(process.pid);
  });

  it.runIf(isRoot)("--mine leaves out other users' segments", async () => {
    const [mine, theirs] = [segment(), segment()];
    chownSync(`/dev/shm/${theirs}`, 65534, 65534);
    const all = (await lsJson()).map((s) => s.name);
    expect(all).toEqual(expect.arrayContaining([mine, theirs]));
    const r = await devmap('ls', '--mine', '--json');
    const names = (JSON.parse(r.stdout) as Array<{ name: string }>).map((s) => s.name);
    expect(names).toContain(mine);
    expect(names).not.toContain(theirs);
  });

  it('refuses arguments it does not take', async () => {
    const r = await devmap('ls', 'extra');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("devmap ls: unexpected argument 'extra'");
  });

  it('shows the creator devmap recorded, and whether it is alive', async () => {
    const name = segment();
    const seg = (await lsJson()).find((s) => s.name === name)!;
    expect(seg.creator).toEqual({ pid: process.pid, startTime: String(startTimeOf(process.pid)) });
  });
});

describe('devmap rm', () => {
  it('removes named segments', async () => {
    const [a, b] = [segment(), segment()];
    const r = await devmap('rm', a, b);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`removed ${a}\nremoved ${b}\n`);
    expect(existsSync(`/dev/shm/${a}`) || existsSync(`/dev/shm/${b}`)).toBe(false);
  });

  it('--dry-run removes nothing', async () => {
    const name = segment();
    const r = await devmap('rm', '--dry-run', name);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`would remove ${name}\n`);
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
  });

  it('says who still maps a segment it removes; their mapping keeps working', async () => {
    const name = segment();
    const shm = SharedMemory.open(name);
    const m = shm.map();
    shm.close();
    const r = await devmap('rm', name);
    expect(r.stdout).toBe(`removed ${name} (still open or mapped by pid ${process.pid})\n`);
    new Uint8Array(m.buffer)[0] = 7;
    expect(new Uint8Array(m.buffer)[0]).toBe(7);
    m.unmap();
  });

  it('exits 1 for a missing segment and still removes the others', async () => {
    const name = segment();
    const missing = uniqueName('missing');
    const r = await devmap('rm', missing, name);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`devmap rm: ${missing}: no such segment in /dev/shm`);
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it.runIf(isRoot)("refuses another user's segment, even for root", async () => {
    const name = segment();
    chownSync(`/dev/shm/${name}`, 65534, 65534);
    const r = await devmap('rm', name);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`devmap rm: ${name}: refused, owned by uid 65534 (you are uid 0)`);
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
  });

  it.each([
    [[], 'name at least one segment, or give --stale'],
    [['a/b'], "'a/b' is not a segment name"],
    [['..'], "'..' is not a segment name"],
    [['--stale', 'x/y'], "'x/y' is not a segment name"],
  ])('refuses bad input %j', async (args, message) => {
    const r = await devmap('rm', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('--stale never removes a segment without a creator record', async () => {
    const name = segment();
    const r = await devmap('rm', '--stale', name);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('no stale segments\n');
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
  });

  it('--stale removes a segment whose creator exited and that nobody holds', async () => {
    const dead = await deadProcess();
    const [gone, held, alive] = [segment(), segment(), segment()];
    await recordCreator(gone, dead.pid, dead.startTime);
    await recordCreator(held, dead.pid, dead.startTime);
    await recordCreator(alive, process.pid, startTimeOf(process.pid)!);
    const shm = SharedMemory.open(held);
    try {
      const dry = await devmap('rm', '--stale', '--dry-run');
      expect(dry.stdout).toContain(`would remove ${gone}\n`);
      expect(existsSync(`/dev/shm/${gone}`)).toBe(true);
      const r = await devmap('rm', '--stale', '--yes', gone, held, alive);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`removed ${gone}\n`);
      expect([gone, held, alive].map((n) => existsSync(`/dev/shm/${n}`))).toEqual([false, true, true]);
    } finally {
      shm.close();
    }
  });

  it('--stale is not fooled by a reused pid: the start time must match too', async () => {
    const name = segment();
    await recordCreator(name, process.pid, startTimeOf(process.pid)! + 1);
    const r = await devmap('rm', '--stale', '--yes', name);
    expect(r.stdout).toBe(`removed ${name}\n`);
  });
});

describe('devmap inspect', () => {
  it('prints owner, size and the first bytes', async () => {
    const name = segment(8192, new TextEncoder().encode('hello, devmap'));
    const r = await devmap('inspect', name);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`segment   /dev/shm/${name}\n`);
    expect(r.stdout).toContain('size      8192 bytes (8.00 KiB)\n');
    expect(r.stdout).toContain(`mode      0600, owner uid ${process.getuid!()}`);
    expect(r.stdout).toContain('structure: none recognized');
    expect(r.stdout).toContain('00000000  68 65 6c 6c 6f 2c 20 64  65 76 6d 61 70 00 00 00  |hello, devmap...|');
    expect(r.stdout).toMatch(/\*\n000000f0 .*\n00000100\n$/);
  });

  it('--bytes sets the length of the dump; --json gives the bytes as hex', async () => {
    const name = segment(4096, Uint8Array.from([1, 2, 3]));
    const r = await devmap('inspect', '--bytes', '32', name);
    expect(r.stdout).toMatch(/first 32 bytes:\n00000000  01 02 03 00 /);
    expect(r.stdout.trimEnd().endsWith('00000020')).toBe(true);
    const j = JSON.parse((await devmap('inspect', '--json', '--bytes', '4', name)).stdout);
    expect(j).toMatchObject({ name, size: 4096, head: '01020300', structures: [] });
  });

  it('does not change the segment it inspects', async () => {
    const name = segment(4096, Uint8Array.from([9, 8, 7]));
    const before = (await devmap('ls', '--json')).stdout;
    await devmap('inspect', name);
    const shm = SharedMemory.open(name, { readOnly: true });
    const m = shm.map({ shared: false });
    shm.close();
    expect([...new Uint8Array(m.buffer, 0, 4)]).toEqual([9, 8, 7, 0]);
    m.unmap();
    const seg = (JSON.parse(before) as Array<{ name: string; modified: string }>).find((s) => s.name === name)!;
    const after = (await lsJson()).find((s) => s.name === name) as unknown as { modified: string };
    expect(after.modified).toBe(seg.modified);
  });

  it('shows the state of a devmap Mutex at the start of a segment', async () => {
    const name = segment();
    const shm = SharedMemory.open(name);
    const m = shm.map();
    shm.close();
    const mutex = Mutex.init(new Int32Array(m.buffer), 0);
    try {
      let r = await devmap('inspect', name);
      expect(r.stdout).toContain('structure: devmap Mutex (at offset 0)');
      expect(r.stdout).toMatch(/ state +unlocked\n/);
      mutex.lock();
      r = await devmap('inspect', name);
      expect(r.stdout).toMatch(new RegExp(` state +locked by thread ${process.pid} of process ${process.pid} \\(.*\\), alive\\n`));
      mutex.unlock();
    } finally {
      m.unmap();
    }
  });

  it('shows the state of a shared resource map, read-only', async () => {
    const sizing = { mapsize: 16, owners: 32 };
    const name = segment(SharedResourceMap.bytesFor(sizing));
    const shm = SharedMemory.open(name);
    const m = shm.map();
    shm.close();
    try {
      const mp = SharedResourceMap.create(m, { ...sizing, name: 'frames' });
      rmfree(mp, 1000, 1);
      rmalloc(mp, 10);
      const r = await devmap('inspect', name);
      expect(r.stdout).toContain('structure: devmap shared resource map');
      expect(r.stdout).toMatch(/ name +frames\n/);
      expect(r.stdout).toMatch(/ free +990 units in 1 ranges \(mapsize 16\)\n/);
      expect(r.stdout).toMatch(/ owners +1 of 32 allocation records in use\n/);
      expect(r.stdout).toMatch(/ journal +empty/);
      expect(mp.freeUnits).toBe(990);
    } finally {
      m.unmap();
    }
  });

  it.each([
    [[], 'name the segment to inspect'],
    [['a', 'b'], 'inspect takes one segment name'],
    [['--bytes', '0', 'x'], "--bytes needs a positive integer, got '0'"],
    [['--bytes', 'lots', 'x'], "--bytes needs a positive integer, got 'lots'"],
    [['--bytes', '2000000', 'x'], '--bytes is at most 1048576'],
    [['a/b'], "'a/b' is not a segment name"],
  ])('refuses bad input %j', async (args, message) => {
    const r = await devmap('inspect', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('exits 1 for a missing segment', async () => {
    const missing = uniqueName('missing');
    const r = await devmap('inspect', missing);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`devmap inspect: ${missing}: no such segment in /dev/shm\n`);
  });
});

describe('devmap rm --stale asks before it removes', () => {
  it('without --yes, with standard input not a terminal: lists what it would remove, removes nothing, exits 1', async () => {
    const dead = await deadProcess();
    const name = segment();
    await recordCreator(name, dead.pid, dead.startTime);
    const r = await devmap('rm', '--stale', name);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(`would remove ${name}\n`);
    expect(r.stderr).toContain('removes nothing without --yes when standard input is not a terminal');
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
    const yes = await devmap('rm', '--stale', '--yes', name);
    expect(yes.stdout).toBe(`removed ${name}\n`);
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it.runIf(existsSync('/usr/bin/script'))('on a terminal it lists, asks, and removes only on "y"', async () => {
    const dead = await deadProcess();
    const name = segment();
    await recordCreator(name, dead.pid, dead.startTime);
    // script(1) gives the command a pseudo-terminal; the answer is typed on its standard input.
    const onTty = (answer: string) =>
      run('sh', ['-c', `printf '${answer}\\n' | script -q -c "${process.execPath} ${BIN} rm --stale ${name}" /dev/null`]);
    const no = await onTty('n');
    expect(no.stdout).toContain(`would remove ${name}`);
    expect(no.stdout).toContain('remove 1 segment? [y/N]');
    expect(no.stdout).toContain('nothing removed');
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
    const yes = await onTty('y');
    expect(yes.stdout).toContain(`removed ${name}`);
    expect(existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  it.each([
    [['--yes', 'x'], '--yes only applies to --stale'],
    [['--stale', '--yes', '--dry-run'], '--yes and --dry-run contradict each other'],
  ])('refuses %j', async (args, message) => {
    const r = await devmap('rm', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });
});

describe('segment names as paths', () => {
  it.each(['rm', 'inspect'])('devmap %s /dev/shm/NAME says to drop the prefix, and touches nothing', async (command) => {
    const name = segment();
    const r = await devmap(command, `/dev/shm/${name}`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`name the segment without the "/dev/shm/" prefix (devmap ${command} ${name})`);
    expect(existsSync(`/dev/shm/${name}`)).toBe(true);
  });
});

describe('devmap ls shows user names', () => {
  it('beside each uid, in the table and in --json', async () => {
    const name = segment();
    const me = process.getuid!();
    const user = require('node:os').userInfo().username as string;
    const r = await devmap('ls');
    const row = r.stdout.split('\n').find((l) => l.startsWith(name + ' '))!;
    expect(r.stdout.split('\n')[0]).toMatch(/ UID +USER /);
    expect(row).toMatch(new RegExp(` ${me} +${user} `));
    expect((await lsJson()).find((s) => s.name === name)).toMatchObject({ uid: me, user });
  });
});

describe('names are printed escaped (no terminal escapes from a segment name)', () => {
  // Any local user can create such a file in /dev/shm; devmap's own create() refuses these names.
  const hostile = `devmap-test-esc-${process.pid}-\u001b]0;owned\u0007\u009b31m\u202e\u200btxt`;
  const shown = `devmap-test-esc-${process.pid}-\\u{1b}]0;owned\\u{7}\\u{9b}31m\\u{202e}\\u{200b}txt`;
  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/;

  it('ls, ls --json and inspect --json print no raw control, bidi or zero-width character', async () => {
    writeFileSync(`/dev/shm/${hostile}`, 'x', { mode: 0o600 });
    try {
      const table = await devmap('ls');
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).not.toMatch(raw);
      expect(table.stdout).toContain(shown);
      const json = await devmap('ls', '--json');
      expect(json.stdout).not.toMatch(raw);
      expect((JSON.parse(json.stdout) as { name: string }[]).some((s) => s.name === hostile)).toBe(true); // the same value
    } finally {
      unlinkSync(`/dev/shm/${hostile}`);
    }
  });

  it('arguments echoed in errors are escaped too', async () => {
    const r = await devmap('inspect', hostile);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(raw);
    expect(r.stderr).toContain(shown);
    const u = await devmap('\u001b[2Jls');
    expect(u.stderr).not.toMatch(raw);
    expect(u.stderr).toContain("unknown command '\\u{1b}[2Jls'");
  });

  it('a shared resource map whose stored name holds escapes is inspected escaped', async () => {
    const sizing = { mapsize: 4, owners: 4 };
    const name = segment(SharedResourceMap.bytesFor(sizing));
    const shm = SharedMemory.open(name);
    const m = shm.map();
    shm.close();
    try {
      SharedResourceMap.create(m, { ...sizing, name: 'evil\u001b[31m\u202e' });
      const r = await devmap('inspect', name);
      expect(r.stdout).not.toMatch(raw);
      expect(r.stdout).toMatch(/ name +evil\\u\{1b\}\[31m\\u\{202e\}\n/);
    } finally {
      m.unmap();
    }
  });
});

describe('devmap inspect finds structures at any aligned offset', () => {
  it('a Mutex at word 16 (as the README places it) and a shared resource map at 4096', async () => {
    const sizing = { mapsize: 8, owners: 8 };
    const name = segment(4096 + SharedResourceMap.bytesFor(sizing));
    const shm = SharedMemory.open(name);
    const m = shm.map();
    shm.close();
    try {
      const mutex = Mutex.init(new Int32Array(m.buffer), 16);
      const mp = SharedResourceMap.create(m, { ...sizing, offset: 4096, name: 'later' });
      rmfree(mp, 100, 1);
      mutex.lock();
      const r = await devmap('inspect', name);
      mutex.unlock();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('structure: devmap Mutex (at offset 64)');
      expect(r.stdout).toMatch(new RegExp(`structure: devmap Mutex \\(at offset 64\\)\\n  lock word +0x[0-9a-f]{8}\\n  state +locked by thread ${process.pid} `));
      expect(r.stdout).toContain('structure: devmap shared resource map (at offset 4096)');
      expect(r.stdout).toMatch(/ name +later\n/);
      expect(r.stdout).toContain(`structure: devmap Mutex (at offset ${4096 + 256})`); // the map's own lock
      const json = JSON.parse((await devmap('inspect', '--json', name)).stdout) as { structures: { name: string; offset: number }[] };
      expect(json.structures.map((x) => [x.name, x.offset])).toEqual([
        ['devmap Mutex', 64], ['devmap shared resource map', 4096], ['devmap Mutex', 4096 + 256],
      ]);
    } finally {
      m.unmap();
    }
  });
});
