// A child process whose stdout is read as JSON lines while it runs, for tests that must act between a
// child's steps (kill it while it holds a lock, notify once it is waiting).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { SharedMemory, pageSize, type Mapping } from '../../lib';
import { fixture } from '../helpers/child';
import { uniqueName } from '../helpers/leaks';

export interface LineChild {
  proc: ChildProcess;
  /** Resolves with the next JSON line the child prints. */
  next(): Promise<any>;
  /** Resolves when the child has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

export function spawnLines(name: string, args: string[]): LineChild {
  return spawnProgramLines(process.execPath, [fixture(name), ...args]);
}

/** spawnLines for any program (a C peer compiled by the test). */
export function spawnProgramLines(program: string, args: string[]): LineChild {
  const proc = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: any[] = [];
  const takers: ((v: any) => void)[] = [];
  let buf = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      const take = takers.shift();
      if (take) take(line);
      else lines.push(line);
    }
  });
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  return {
    proc,
    next: () => (lines.length > 0 ? Promise.resolve(lines.shift()) : new Promise((resolve) => takers.push(resolve))),
    exited,
  };
}

/** Threads of this process. */
export function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

/**
 * Whether a thread of process `pid` (default: this one) is blocked in system call `nr`, with `args` (hex, as
 * /proc/…/task/…/syscall prints them) as its first arguments when given.
 */
export function inSyscall(nr: number, pid: number | 'self' = 'self', ...args: (string | undefined)[]): boolean {
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const fields = readFileSync(`/proc/${pid}/task/${t}/syscall`, 'latin1').trim().split(' ');
      if (fields[0] === String(nr) && args.every((a, i) => a === undefined || fields[i + 1] === a)) return true;
    } catch {
      // the thread exited while we looked
    }
  }
  return false;
}
export const SYS_FUTEX = 202;
export const SYS_FUTEX_WAITV = 449;

/** Yields to the event loop until `cond` holds (tests bound the wait with their own timeout). */
export async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 1));
}

/** A /dev/shm segment that children open by name, mapped here; done() unlinks and unmaps it. */
export function segment(tag: string, size = pageSize): { name: string; mapping: Mapping; a: Int32Array; done(): void } {
  const name = uniqueName(tag);
  const shm = SharedMemory.create(name, size);
  const mapping = shm.map();
  shm.close();
  return {
    name,
    mapping,
    a: new Int32Array(mapping.buffer),
    done() {
      SharedMemory.unlink(name);
      if (mapping.mapped) mapping.unmap();
    },
  };
}
