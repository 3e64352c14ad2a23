// Node ↔ C and Node ↔ Python on one channel segment: include/devmap/channel.h and python/devmap_channel.py speak
// the bytes of docs/channel-layout.md. Small rings, so that both sides block (futex) on the other many times.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Channel } from '../../lib';
import { fixture, run } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';
import { segment } from './segment';

trackLeaks();

const COUNT = 3000;
const include = join(__dirname, '..', '..', 'include');
let dir = '';
let program = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'devmap-channel-'));
  program = join(dir, 'channel-c');
  const cc = await run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-I', include, '-o', program, fixture('channel-c.c')]);
  expect(cc.stderr).toBe('');
  expect(cc.code).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const expected = (tag: string) => Array.from({ length: COUNT }, (_, i) => `${tag} ${i}`);

async function drainAsync(channel: Channel): Promise<string[]> {
  const got: string[] = [];
  const dec = new TextDecoder();
  for await (const m of channel) got.push(dec.decode(m));
  return got;
}

describe.each([
  ['C', () => program, (name: string, ...args: string[]) => [name, ...args]],
  ['Python', () => 'python3', (name: string, ...args: string[]) => [fixture('channel-python.py'), name, ...args]],
])('Node ↔ %s', (lang, cmd, argv) => {
  const tag = lang === 'C' ? 'c' : 'py';

  it(`Node → ${lang}: blocking sends into a 4 KiB ring, ${lang} blocks on an empty one`, async () => {
    using s = segment({ capacity: 4096, mode: 'mpsc' });
    const child = run(cmd(), argv(s.name, 'receive'));
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < COUNT; i++) expect(s.channel.send(`node ${i}`, { timeout: 20000 })).toBe(true);
    s.channel.close();
    const r = await child;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(Array.from({ length: COUNT }, (_, i) => `node ${i}`));
    const st = s.channel.stats();
    expect(st.sent).toBe(COUNT);
    expect(st.received).toBe(COUNT);
  });

  it(`${lang} → Node: ${lang} blocks on a full ring, Node waits asynchronously`, async () => {
    using s = segment({ capacity: 4096, mode: 'spsc' });
    const child = run(cmd(), argv(s.name, 'send', String(COUNT)));
    const got = await drainAsync(s.channel);
    const r = await child;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(got).toEqual(expected(tag));
  });

  it(`${lang} → Node with a blocking receive, in broadcast mode`, async () => {
    using s = segment({ capacity: 4096, mode: 'broadcast', readers: 2 });
    const sub = s.channel.subscribe();
    const child = run(cmd(), argv(s.name, 'send', String(COUNT)));
    const got: string[] = [];
    const dec = new TextDecoder();
    for (let m = sub.receive({ timeout: 20000 }); m !== null; m = sub.receive({ timeout: 20000 })) got.push(dec.decode(m));
    const r = await child;
    expect(r.stderr).toBe('');
    expect(got).toEqual(expected(tag));
  });
});
