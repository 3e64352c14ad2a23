/*
 * devmap inspect NAME: what a segment is and what it holds, read-only. The segment is opened O_RDONLY and
 * read with pread (never mapped, never locked, never written), so inspecting a segment others are using
 * cannot disturb them; what is printed is a snapshot that may be mid-update.
 */
import * as fs from 'node:fs';
import { parse, positiveInteger, UsageError } from './args';
import type { Command } from './command';
import { bytes, escapeText, hexdump, jsonText, octal } from './format';
import { userName } from './users';
import { findSegment } from './segments';
import { recognize } from './structures';
import { toJson } from './ls';

const DEFAULT_DUMP = 256;
const MAX_DUMP = 1 << 20;
/** How much of a segment is searched for structures (at every 8-byte aligned offset). */
const SCAN_MAX = 64 << 20;

export const inspect: Command = {
  name: 'inspect',
  summary: 'show a segment: owner, creator, holders, recognized structures, first bytes',
  help: `Usage: devmap inspect [--bytes N] [--json] NAME

Prints what is known about one segment, read-only (it is read, never mapped or locked, so this is safe
while other processes use it):

  size, mode, owner, last modification, creator (pid, alive?), processes holding it open or mapped;
  recognized structures, at any 8-byte aligned offset of the first ${SCAN_MAX >> 20} MiB: a devmap Mutex (lock
  state, owner thread, waiters, owner-died) and a shared resource map (name, policy, free units, owner
  records, journal, corrupt mark), each read without its lock;
  the first bytes as a hex dump (identical lines collapse to "*").

Options:
  --bytes N   how many bytes to dump (default ${DEFAULT_DUMP}, at most ${MAX_DUMP})
  --json      one JSON object
`,
  run(argv) {
    const { values, positionals } = parse('inspect', argv, { bytes: { type: 'string' }, json: { type: 'boolean' } });
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the segment to inspect' : 'inspect takes one segment name', 'inspect');
    const dump = positiveInteger(values.bytes, 'bytes', 'inspect') ?? DEFAULT_DUMP;
    if (dump > MAX_DUMP) throw new UsageError(`--bytes is at most ${MAX_DUMP}`, 'inspect');
    const name = positionals[0];
    const seg = findSegment(name, 'inspect');
    if (seg === null) {
      process.stderr.write(`devmap inspect: ${escapeText(name)}: no such segment in /dev/shm\n`);
      return 1;
    }
    let fd: number;
    try {
      fd = fs.openSync(seg.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      process.stderr.write(`devmap inspect: ${escapeText(name)}: cannot open for reading (${(err as NodeJS.ErrnoException).code})\n`);
      return 1;
    }
    try {
      const size = fs.fstatSync(fd).size;
      const scanned = readAt(fd, size, 0, SCAN_MAX);
      const structures = recognize(scanned);
      const head = readAt(fd, size, 0, dump);
      if (values.json) {
        const json = {
          ...toJson(seg),
          structures: structures.map((r) => ({
            name: r.format.name, offset: r.offset, fields: r.fields ? Object.fromEntries(r.fields) : null, error: r.error ?? null,
          })),
          scannedBytes: scanned.length,
          head: Buffer.from(head).toString('hex'),
        };
        process.stdout.write(jsonText(json) + '\n');
        return 0;
      }
      const creator = seg.creator ? `pid ${seg.creator.pid} (${seg.creatorAlive ? 'alive' : 'exited'})` : 'not recorded (not created by devmap)';
      const lines = [
        `segment   ${escapeText(seg.path)}`,
        `size      ${seg.size} bytes (${bytes(seg.size)})`,
        `mode      ${octal(seg.mode)}, owner uid ${seg.uid}${owner(seg.uid)} gid ${seg.gid}`,
        `modified  ${seg.modified.toISOString()}`,
        `creator   ${creator}`,
        `holders   ${seg.holders.length > 0 ? seg.holders.map((p) => `pid ${p}`).join(', ') : 'none visible'}`,
        '',
      ];
      const where = scanned.length < size ? ` in the first ${bytes(scanned.length)}` : '';
      if (structures.length === 0) lines.push(`structure: none recognized${where}`, '');
      for (const r of structures) {
        lines.push(`structure: ${r.format.name} (at offset ${r.offset})`);
        if (r.error !== undefined) lines.push(`  unreadable: ${escapeText(r.error)}`);
        const width = Math.max(0, ...(r.fields ?? []).map(([label]) => label.length));
        for (const [label, value] of r.fields ?? []) lines.push(`  ${label.padEnd(width)}  ${value}`);
        lines.push('');
      }
      lines.push(`first ${head.length} bytes:`, ...hexdump(head));
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    } finally {
      fs.closeSync(fd);
    }
  },
};

/** Up to `length` bytes at `offset` of a segment of `size` bytes (pread: the segment is never mapped). */
function readAt(fd: number, size: number, offset: number, length: number): Uint8Array {
  if (offset >= size) return new Uint8Array(0);
  const out = Buffer.alloc(Math.min(length, size - offset));
  const n = fs.readSync(fd, out, 0, out.length, offset);
  return out.subarray(0, n);
}

function owner(uid: number): string {
  const name = userName(uid);
  return name === undefined ? '' : ` (${escapeText(name)})`;
}
