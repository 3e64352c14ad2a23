/*
 * devmap rm: remove segments by name, or those whose creator is gone.
 *
 * Removing is shm_unlink: the name goes, and every process that has the segment open or mapped keeps its
 * memory until it lets go, exactly as with rm on a file. Two rules keep it safe:
 *  - only the caller's own segments are removed (owner uid = our uid), even when run as root: cleaning up
 *    after another user is a deliberate act for `rm /dev/shm/...`, not a side effect of --stale;
 *  - --stale removes a segment only when its recorded creator has exited (same pid *and* start time, so a
 *    reused pid does not keep it) and no visible process still holds it open or mapped. A segment with no
 *    creator record (made by Python, C, or a devmap older than the record) is never stale: nothing
 *    says who is responsible for it.
 * There is a window between these checks and the unlink in which another process could replace the name;
 * the same is true of every tool that removes by name.
 *
 * --stale decides for the user which segments to remove, and "the caller's uid" can be every job of a
 * machine where all jobs run as root: a creator that exited may belong to another job whose other processes
 * still mean to open the segment by name. So --stale always prints the list first, and removes nothing
 * without a confirmation: a "y" typed at the terminal, or --yes. Run from a script (standard input not a
 * terminal) without --yes, it prints what it would remove and exits 1.
 */
import { createInterface } from 'node:readline/promises';
import { getSystemErrorName } from 'node:util';
import { native } from '../native';
import { parse, UsageError } from './args';
import { escapeText } from './format';
import type { Command } from './command';
import { checkName, findSegment, listSegments, myUid, type Segment } from './segments';

export const rm: Command = {
  name: 'rm',
  summary: 'remove segments by name, or those whose creator is gone (--stale)',
  help: `Usage: devmap rm [--dry-run] NAME...
       devmap rm [--dry-run | --yes] --stale [NAME...]

Removes POSIX shm segments (shm_unlink). Processes that have a segment mapped keep their memory; the name
is gone for anyone who would open it next.

  NAME...     segments to remove, as "devmap ls" names them (no "/dev/shm/" prefix)
  --stale     remove this user's segments whose recorded creator has exited and that no process holds
              open or mapped (with NAMEs: only those of them that are stale). Segments without a
              creator record (not made by devmap) are never stale. The list is printed first; on a
              terminal you are asked to confirm, otherwise --yes is required.
  --yes       with --stale: remove without asking
  --dry-run   print what would be removed, remove nothing

Segments other users own are refused, even for root. Exit status: 0 when everything named was removed
(or would be), 1 when some segment was missing or refused, 2 for a usage error.
`,
  run(argv) {
    const { values, positionals } = parse('rm', argv, { stale: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, yes: { type: 'boolean', short: 'y' } });
    const dryRun = values['dry-run'] === true;
    if (!values.stale && positionals.length === 0) throw new UsageError('name at least one segment, or give --stale', 'rm');
    if (values.yes && !values.stale) throw new UsageError('--yes only applies to --stale', 'rm');
    if (values.yes && dryRun) throw new UsageError('--yes and --dry-run contradict each other', 'rm');
    return values.stale ? removeStale(positionals, dryRun, values.yes === true) : removeNamed(positionals, dryRun);
  },
};

function removeNamed(names: string[], dryRun: boolean): number {
  const segments = names.map((name) => [name, findSegment(name, 'rm')] as const); // validates every name first
  let status = 0;
  for (const [name, seg] of segments) {
    if (seg === null) {
      process.stderr.write(`devmap rm: ${escapeText(name)}: no such segment in /dev/shm\n`);
      status = 1;
    } else if (seg.uid !== myUid()) {
      process.stderr.write(`devmap rm: ${escapeText(name)}: refused, owned by uid ${seg.uid} (you are uid ${myUid()})\n`);
      status = 1;
    } else if (!remove(seg, dryRun)) {
      status = 1;
    }
  }
  return status;
}

async function removeStale(names: string[], dryRun: boolean, yes: boolean): Promise<number> {
  for (const name of names) checkName(name, 'rm');
  const candidates = listSegments().filter((s) => names.length === 0 || names.includes(s.name));
  const stale = candidates.filter((s) => s.uid === myUid() && s.creatorAlive === false && s.holders.length === 0);
  if (stale.length === 0) {
    process.stdout.write('no stale segments\n');
    return 0;
  }
  if (dryRun || !yes) for (const seg of stale) remove(seg, true);
  if (dryRun) return 0;
  if (!yes) {
    const n = `${stale.length} segment${stale.length === 1 ? '' : 's'}`;
    if (!process.stdin.isTTY) {
      process.stderr.write(`devmap rm: --stale removes nothing without --yes when standard input is not a terminal (${n} listed above)\n`);
      return 1;
    }
    if (!(await confirm(`remove ${n}? [y/N] `))) {
      process.stdout.write('nothing removed\n');
      return 1;
    }
  }
  let status = 0;
  for (const seg of stale) if (!remove(seg, false)) status = 1;
  return status;
}

/** Asks on the terminal; true only for an answer starting with "y". */
async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y/i.test(await rl.question(question));
  } finally {
    rl.close();
  }
}

function remove(seg: Segment, dryRun: boolean): boolean {
  const held = seg.holders.length > 0 ? ` (still open or mapped by pid ${seg.holders.join(', ')})` : '';
  if (dryRun) {
    process.stdout.write(`would remove ${escapeText(seg.name)}${held}\n`);
    return true;
  }
  const rc = native().shm_unlink(`/${seg.name}`);
  if (rc < 0) {
    process.stderr.write(`devmap rm: ${escapeText(seg.name)}: shm_unlink failed: ${getSystemErrorName(rc)}\n`);
    return false;
  }
  process.stdout.write(`removed ${escapeText(seg.name)}${held}\n`);
  return true;
}
