/*
 * Process identity: which process a record names, and whether that process still runs.
 *
 * A pid alone names a process only until it exits and the number is handed out again. devmap therefore
 * records a process as (pid, start time), the start time being field 22 of /proc/<pid>/stat — clock ticks
 * after boot at which the process began. The pair names one process for the life of the machine.
 *
 * The liveness rule is one-sided on purpose: a process is dead only when the kernel says so. Mistaking a live
 * process for a dead one hands its resources to somebody else (units allocated twice, a record skipped that
 * is still being written); mistaking a dead one for alive only delays a clean-up. So:
 *
 *   - kill(pid, 0) answering ESRCH: dead (no such process).
 *   - /proc/<pid>/stat readable: a zombie (state Z or X) is dead — it has exited and only waits to be reaped;
 *     a start time other than the recorded one is a different process on a reused pid, so the recorded one is
 *     dead.
 *   - anything else — EPERM from kill, /proc unreadable or hidden (hidepid=2), a stat line that does not
 *     parse: alive.
 *
 * Start times are kept as numbers: clock ticks since boot stay far below 2^53 (at 100 Hz that is 2.8 million
 * years).
 */
import { readFileSync } from 'node:fs';

/** One process for the life of the machine. */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot at which the process started. */
  startTime: number;
}

/** What /proc/<pid>/stat says of a process: its state letter and start time; null when it cannot be read. */
function readStat(pid: number): { state: string; startTime: number } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')': cut at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  const start = fields[22 - 3];
  if (fields[0] === undefined || start === undefined || !/^\d{1,20}$/.test(start)) return null;
  return { state: fields[0], startTime: Number(start) };
}

/** The start time of process `pid` as /proc shows it, or null when it cannot be read (gone, hidden, a zombie). */
export function startTimeOf(pid: number): number | null {
  const s = readStat(pid);
  return s === null || s.state === 'Z' || s.state === 'X' ? null : s.startTime;
}

let selfIdentity: ProcessIdentity | undefined;

/** The calling process. Read once: a Node process does not fork, so its pid and start time never change. */
export function selfIdentityOf(): ProcessIdentity {
  if (selfIdentity === undefined || selfIdentity.pid !== process.pid) {
    selfIdentity = { pid: process.pid, startTime: startTimeOf(process.pid) ?? 0 };
  }
  return selfIdentity;
}

/** True when the kernel has no process `pid` at all (kill(pid, 0) → ESRCH). EPERM means it exists. */
function noSuchProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Whether the process a record names may still run. Dead only on the kernel's word: no such pid, a zombie,
 * or the pid now belongs to a process with another start time. Pass startTime null when the record has none
 * (then only the pid is checked).
 */
export function isAlive(pid: number, startTime: number | null): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x3fffffff) return false; // no process can have it
  if (pid === process.pid) return startTime === null || startTime === selfIdentityOf().startTime;
  if (noSuchProcess(pid)) return false;
  const s = readStat(pid);
  if (s === null) return true; // exists (kill said so) but /proc hides it: alive
  if (s.state === 'Z' || s.state === 'X') return false;
  return startTime === null || s.startTime === startTime;
}
