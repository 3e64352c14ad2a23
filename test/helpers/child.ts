// Runs real child processes for the multi-process tests. Fixtures are plain CommonJS that require the built
// package (dist/), so they exercise exactly what users get.
import { spawn, type SpawnOptions } from 'node:child_process';
import { join } from 'node:path';

export const fixture = (name: string) => join(__dirname, '..', 'fixtures', name);

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns `node fixture args…` and resolves when it exits (never rejects on a non-zero exit). */
export function runNode(name: string, args: string[] = [], opts: SpawnOptions = {}): Promise<ChildResult> {
  return run(process.execPath, [fixture(name), ...args], opts);
}

export function run(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
