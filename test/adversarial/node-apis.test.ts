// Every Node API that holds a view of mapped memory across asynchronous work, with the Mapping unmapped — or
// protected PROT_NONE — while the work is pending (issue 12, class 2). Each runs in a child process that must exit normally with no
// signal, and the API must call back: unmap() leaves views attached over trash pages, so nothing Node checks
// on a held buffer (zlib's bounds CHECK aborted the process on a detached one) or reads through its pointer
// changes under it. Bytes the API moves after the unmap are the trash pages' zeros; the lengths are whole.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();
const dir = mkdtempSync(join(tmpdir(), 'devmap-test-apis-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1 << 20;
/** What each API's callback must report: a whole length, or (zlib, whose input turned to zeros) a number or a Z_ code. */
const expected: Record<string, number | string | RegExp> = {
  'zlib.deflate': /^\d+$/, 'zlib.inflate': /^(\d+|Z_[A-Z_]+)$/, 'zlib.gunzip-stream': /^(\d+|Z_[A-Z_]+)$/,
  'zlib.brotliCompress': /^\d+$/, 'zlib.deflate-stream': /^\d+$/,
  'crypto.randomFill': 'filled', 'crypto.randomFill-Buffer.from': 'filled',
  'crypto.pbkdf2': 64, 'crypto.scrypt': 64, 'crypto.hkdf': 64, 'crypto.sign': 64,
  'webcrypto.digest': 32, 'webcrypto.encrypt': MiB + 16,
  'fs.read': MiB, 'fs.write': MiB, 'fs.readv': MiB, 'fs.promises.writeFile': 'written',
  'FileHandle.read': MiB, 'FileHandle.write': MiB, 'fs.createWriteStream': MiB,
  'socket.write-Buffer.from': 8 * MiB, 'socket.write': 8 * MiB, 'child.stdin.write': 8 * MiB, 'dgram.send': 'sent',
  TextDecoderStream: MiB, Blob: MiB,
};

describe('Node APIs holding a view across unmap()', () => {
  it('the fixture and this table list the same APIs', () => {
    const r = spawnSync(process.execPath, [fixture('node-api-escapes.cjs'), '--list'], { encoding: 'utf8' });
    expect(JSON.parse(r.stdout).sort()).toEqual(Object.keys(expected).sort());
  });

  it.each(Object.keys(expected))('%s: the process exits normally and the API calls back', (api) => {
    run(api, 'unmap');
  });
});

// protect(PROT_NONE) instead of unmap(): the pages stay (with less access), so nothing is trash here. The
// lower protection waits for the views made before it; once the API is done with its view and the view is
// collected, the kernel has it (the fixture checks /proc/self/maps).
describe('Node APIs holding a view across protect(PROT_NONE)', () => {
  it.each(Object.keys(expected))('%s: the process exits normally, the API calls back, then the pages are PROT_NONE', (api) => {
    expect(run(api, 'protect').applied, 'the protection never reached the kernel').toBe(true);
  });
});

/** Runs one API in a child process; it must exit normally, with no signal, and call back with what it should. */
function run(api: string, mode: 'unmap' | 'protect'): { result: unknown; applied?: boolean } {
  const r = spawnSync(process.execPath, ['--expose-gc', fixture('node-api-escapes.cjs'), api, dir, mode], { encoding: 'utf8', timeout: 60_000 });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  expect(line, `${api} never called back (a lost callback)`).toMatch(/^\{"result":/);
  const out = JSON.parse(line);
  // (Over the random bytes a protected view keeps, a TextDecoderStream decodes a varying number of characters.)
  const want = mode === 'protect' && api === 'TextDecoderStream' ? /^\d+$/ : expected[api];
  if (want instanceof RegExp) expect(String(out.result)).toMatch(want);
  else expect(out.result).toBe(want);
  return out;
}
