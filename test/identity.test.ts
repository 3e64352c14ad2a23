// lib/identity.ts against real processes: dead only on the kernel's word (ESRCH, a zombie, another start
// time); EPERM from kill and a /proc that hides the process (hidepid=2) mean alive.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { isAlive, selfIdentityOf, startTimeOf } from '../lib/identity';
import { asNobody, distModule, hidepidWorks, nobodyCanRun } from './identity-nobody';
import { trackLeaks } from './helpers/leaks';

trackLeaks();

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function sleeper(cmd = 'exec sleep 30'): ChildProcess {
  const c = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(c);
  return c;
}

const exited = (c: ChildProcess) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve())));

/** Field 22 of /proc/<pid>/stat read directly (a zombie still has it). */
function rawStartTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10)); // hang guard only
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

const identityModule = distModule('identity.js');

describe('startTimeOf / selfIdentityOf', () => {
  it('reads field 22 of /proc/<pid>/stat; the calling process is read once', () => {
    const me = selfIdentityOf();
    expect(me.pid).toBe(process.pid);
    expect(me.startTime).toBe(rawStartTime(process.pid));
    expect(startTimeOf(process.pid)).toBe(me.startTime);
    expect(selfIdentityOf()).toBe(me);
  });

  it('is null for a pid no process has', () => {
    expect(startTimeOf(0x3fffffff)).toBeNull();
  });
});

describe('isAlive', () => {
  it('a live child is alive, with its start time or without one', async () => {
    const c = sleeper();
    await until('the child to exec', () => startTimeOf(c.pid!) !== null);
    expect(isAlive(c.pid!, startTimeOf(c.pid!))).toBe(true);
    expect(isAlive(c.pid!, null)).toBe(true);
    expect(isAlive(process.pid, selfIdentityOf().startTime)).toBe(true);
  });

  it('a record with another start time names a process that is gone (the pid was reused)', async () => {
    const c = sleeper();
    await until('the child to exec', () => startTimeOf(c.pid!) !== null);
    expect(isAlive(c.pid!, startTimeOf(c.pid!)! + 1)).toBe(false);
    expect(isAlive(process.pid, selfIdentityOf().startTime + 1)).toBe(false);
  });

  it('a child that exited (and was reaped) is dead', async () => {
    const c = sleeper();
    await until('the child to exec', () => startTimeOf(c.pid!) !== null);
    const start = startTimeOf(c.pid!);
    c.kill('SIGKILL');
    await exited(c);
    expect(isAlive(c.pid!, start)).toBe(false);
    expect(isAlive(c.pid!, null)).toBe(false);
  });

  it('a zombie (exited, not yet reaped by its parent) is dead', async () => {
    // sh starts a child, prints its pid and becomes `sleep`, which never reaps it. The child exits only once its
    // parent is `sleep` (exiting earlier, sh could reap it first: the test then raced on a loaded machine).
    const c = sleeper("sh -c 'until grep -qx sleep /proc/$PPID/comm; do sleep 0.01; done' & echo $!; exec sleep 30");
    const pid = await new Promise<number>((resolve) => c.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
    await until('the grandchild to be a zombie', () => / Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1').slice(-1000)));
    expect(isAlive(pid, rawStartTime(pid))).toBe(false);
    expect(isAlive(pid, null)).toBe(false);
    expect(startTimeOf(pid)).toBeNull();
  });

  it('pids no process can have are dead', () => {
    for (const pid of [0, -1, 1.5, NaN, 2 ** 31, Infinity]) expect(isAlive(pid, null)).toBe(false);
  });

  it('pid 1 is alive', () => {
    expect(isAlive(1, startTimeOf(1))).toBe(true);
  });

  it.skipIf(!nobodyCanRun)("EPERM from kill means alive: another user's live process, checked as nobody", async () => {
    const c = sleeper();
    await until('the child to exec', () => startTimeOf(c.pid!) !== null);
    const start = startTimeOf(c.pid!);
    const r = asNobody(
      `const { isAlive } = require(${identityModule});
       let eperm; try { process.kill(${c.pid}, 0) } catch (e) { eperm = e.code }
       console.log(JSON.stringify({ eperm, alive: isAlive(${c.pid}, ${start}), other: isAlive(${c.pid}, ${start! + 1}) }))`,
      false,
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ eperm: 'EPERM', alive: true, other: false });
  });

  it.skipIf(!hidepidWorks)('with /proc mounted hidepid=2, a hidden live process is alive and a gone one dead', async () => {
    const c = sleeper();
    await until('the child to exec', () => startTimeOf(c.pid!) !== null);
    const start = startTimeOf(c.pid!);
    const gone = sleeper();
    await until('the child to exec', () => startTimeOf(gone.pid!) !== null);
    const goneStart = startTimeOf(gone.pid!);
    gone.kill('SIGKILL');
    await exited(gone);
    const r = asNobody(
      `const { isAlive, startTimeOf } = require(${identityModule});
       console.log(JSON.stringify({ hidden: startTimeOf(${c.pid}), alive: isAlive(${c.pid}, ${start}), gone: isAlive(${gone.pid}, ${goneStart}) }))`,
      true,
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ hidden: null, alive: true, gone: false });
  });
});
