// The context-switch case of bench/faults.mjs (devmap bench --filter faults) measures what it says: in both
// variants two real processes take turns on one device page and every touch is a switch — the other process
// unloaded by its agent, the faulting one loaded — or the variant fails instead of reporting a figure.
// The host process has signal handlers (Node's SIGCHLD one, which the clients' exits trigger): a signal
// arriving while a variant waits on the clients interrupts that wait and must not end it.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { trackLeaks } from '../helpers/leaks';

interface BenchCase {
  name: string;
  variants: Record<string, (n: number) => number | Promise<number>>;
}

trackLeaks();

/** The context-switch case of bench/faults.mjs (quick), and its cleanup. */
async function ctxCase(): Promise<{ ctx: BenchCase; cleanup: () => Promise<void> }> {
  const { faultsCases } = await import(pathToFileURL(join(__dirname, '..', '..', 'bench', 'faults.mjs')).href);
  const { cases, cleanup } = (await faultsCases({ quick: true })) as { cases: BenchCase[]; cleanup: () => Promise<void> };
  const ctx = cases.find((c) => c.name.startsWith('a context switch'))!;
  return { ctx, cleanup };
}

/**
 * Runs `body` while another process sends this one SIGUSR2 every millisecond (a handler is installed, so each
 * one interrupts whatever system call the main thread is sleeping in, as the SIGCHLD of an exiting child does).
 */
async function underSignals<T>(body: () => Promise<T>): Promise<T> {
  let caught = 0;
  const onSignal = () => caught++;
  process.on('SIGUSR2', onSignal);
  const sender = spawn(
    process.execPath,
    ['-e', `const p = ${process.pid}; process.kill(p, 'SIGUSR2'); console.log('ready'); setInterval(() => process.kill(p, 'SIGUSR2'), 1);`],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  try {
    await once(sender.stdout!, 'data');
    const result = await body();
    expect(caught).toBeGreaterThan(0);
    return result;
  } finally {
    // The handler stays until the sender is gone: SIGUSR2 without one would end this process.
    sender.kill('SIGKILL');
    if (sender.exitCode === null && sender.signalCode === null) await once(sender, 'exit');
    process.off('SIGUSR2', onSignal);
  }
}

describe('bench: a context switch between two real processes', () => {
  it('both variants serve every touch as a switch and report ns per switch', async () => {
    const { ctx, cleanup } = await ctxCase();
    try {
      expect(ctx).toBeDefined();
      expect(Object.keys(ctx.variants)).toHaveLength(2);
      for (const variant of Object.values(ctx.variants)) {
        const ns = await variant(20);
        expect(ns).toBeGreaterThan(0);
      }
    } finally {
      await cleanup();
    }
  });

  it('a signal to the host while the clients take turns does not cut either variant short', async () => {
    const { ctx, cleanup } = await ctxCase();
    try {
      await underSignals(async () => {
        for (const [name, variant] of Object.entries(ctx.variants)) {
          for (let i = 0; i < 5; i++) expect(await variant(20), `${name}, run ${i}`).toBeGreaterThan(0);
        }
      });
    } finally {
      await cleanup();
    }
  });
});
