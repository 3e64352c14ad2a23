// Shared pieces of the client-process tests: a kernel host on a socket in a fresh directory, real programs
// started under the preload shim, and waits on what they print and on the host's exit events.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { ClientInfo, ExitReason, Kernel, KernelHost, ListenOptions } from '../../lib';
import { clientEnv } from '../../lib/cli/run';
import { run } from '../helpers/child';

export interface Served {
  host: KernelHost;
  path: string;
  exits: (ClientInfo & { reason: ExitReason })[];
  /** Defects of the host itself ('error' events): every test expects none. */
  errors: unknown[];
  /** Resolves when `n` client processes in all have exited (hang guard: 20 s). */
  untilExits(n: number): Promise<void>;
  close(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Runs `fn` after the current test (in reverse order of registration). */
export function onCleanup(fn: () => Promise<void>): void {
  cleanups.push(fn);
}

export async function serve(kernel: Kernel, opts?: ListenOptions): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'devmap-clients-'));
  const path = join(dir, 'kernel.sock');
  const host = await kernel.listen(path, opts);
  const exits: Served['exits'] = [];
  host.on('exit', (e) => exits.push(e));
  const errors: unknown[] = [];
  host.on('error', (e) => errors.push(e));
  return {
    host,
    errors,
    path,
    exits,
    untilExits: (n) => until(() => exits.length >= n, `${n} client exits (have ${exits.length})`),
    async close() {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `ok` until true; the timeout is only a hang guard. */
export async function until(ok: () => boolean, what: string, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const binaries = mkdtempSync(join(tmpdir(), 'devmap-clients-bin-'));
process.on('exit', () => rmSync(binaries, { recursive: true, force: true }));

/** Compiles test/fixtures/<name>.c once per test file; returns the program's path. */
export async function compile(name: string): Promise<string> {
  const out = join(binaries, name);
  const r = await run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, join(__dirname, '..', 'fixtures', `${name}.c`)]);
  if (r.code !== 0) throw new Error(`cc ${name}.c failed:\n${r.stderr}`);
  return out;
}

/** A real program running under the shim, with its output collected line by line. */
export class Program {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(cmd: string, args: string[], served: Served, paths: string[], extraEnv: NodeJS.ProcessEnv = {}) {
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...clientEnv(served.path, paths), ...extraEnv } });
    this.child.stdout!.on('data', (d) => (this.stdout += d));
    this.child.stderr!.on('data', (d) => (this.stderr += d));
    this.child.stdin!.on('error', () => undefined);
    this.exited = new Promise((done) => this.child.on('close', (code, signal) => done({ code, signal })));
  }

  /** Resolves when the program has printed a line matching `re`; returns the match. */
  async line(re: RegExp): Promise<RegExpMatchArray> {
    let m: RegExpMatchArray | null = null;
    await until(() => (m = re.exec(this.stdout)) !== null || this.child.exitCode !== null || this.child.signalCode !== null, `${re} from the program`);
    if (!m) throw new Error(`the program ended without printing ${re}:\n${this.stdout}\n${this.stderr}`);
    return m;
  }

  go(): void {
    this.child.stdin!.write('g');
  }
}

/** Runs a command with `input` on its stdin (then closed); resolves with its status and output. */
export function runWithInput(cmd: string, args: string[], input: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input);
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
