/** devmap ls: the POSIX shm segments of this machine, like ipcs. */
import { parse, UsageError } from './args';
import { bytes, escapeText, jsonText, octal, table } from './format';
import { listSegments, myUid, type Segment } from './segments';
import type { Command } from './command';
import { userName } from './users';

export const ls: Command = {
  name: 'ls',
  summary: 'list the POSIX shm segments in /dev/shm',
  help: `Usage: devmap ls [--json] [--mine]

Lists the POSIX shm segments in /dev/shm (named semaphores excepted), like ipcs:

  NAME     the segment name (what shm_open, SharedMemory.open and Python's SharedMemory(name=) take);
           control, format, bidi and zero-width characters, other spaces and "\\" are shown as \\u{hex}
  SIZE     its size
  MODE     permission bits
  UID      the owner's uid
  USER     the owner's user name (from /etc/passwd; "-" when it has none)
  CREATOR  the pid of the process that created it, when recorded. devmap records the creator of every
           segment it creates (the user.devmap.creator extended attribute), so this is exact for them;
           other programs' segments show "-"
  ALIVE    whether that creator still runs (same pid and same start time, so a reused pid does not count)
  HOLDERS  processes that have it open or mapped now (those this user can see in /proc)

Options:
  --json   one JSON array, one object per segment
  --mine   only segments this user owns
`,
  run(argv) {
    const { values, positionals } = parse('ls', argv, { json: { type: 'boolean' }, mine: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`, 'ls');
    let segments = listSegments();
    if (values.mine) segments = segments.filter((s) => s.uid === myUid());
    if (values.json) {
      process.stdout.write(jsonText(segments.map(toJson)) + '\n');
      return 0;
    }
    if (segments.length === 0) {
      process.stdout.write('no segments in /dev/shm\n');
      return 0;
    }
    const rows = segments.map((s) => [
      escapeText(s.name), bytes(s.size), octal(s.mode), String(s.uid), escapeText(userName(s.uid) ?? '-'), s.creator ? String(s.creator.pid) : '-', alive(s),
      s.holders.length > 0 ? s.holders.join(',') : '-',
    ]);
    process.stdout.write(table(['NAME', 'SIZE', 'MODE', 'UID', 'USER', 'CREATOR', 'ALIVE', 'HOLDERS'], rows, [1, 3, 5]) + '\n');
    return 0;
  },
};

function alive(s: Segment): string {
  return s.creatorAlive === null ? '-' : s.creatorAlive ? 'yes' : 'no';
}

export function toJson(s: Segment) {
  return {
    name: s.name, path: s.path, size: s.size, mode: octal(s.mode), uid: s.uid, user: userName(s.uid) ?? null, gid: s.gid,
    modified: s.modified.toISOString(),
    creator: s.creator ? { pid: s.creator.pid, startTime: String(s.creator.startTime) } : null,
    creatorAlive: s.creatorAlive, holders: s.holders,
  };
}
