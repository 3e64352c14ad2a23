// Seed 001's context-management driver with two real processes (examples/devmap-contexts.ts --processes 2):
// every context switch is a real fault, and the context timeout holds the context with a real timer.
import { describe, expect, it } from 'vitest';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

describe('devmap-contexts with real processes', () => {
  it('two client processes take turns: each write is a real fault that switches the context (8 switches in 4 rounds)', async () => {
    const { mainProcesses } = await import('../../examples/devmap-contexts');
    const lines: string[] = [];
    await mainProcesses(2, (l) => lines.push(l));
    const switches = lines.filter((l) => l.includes('devmap_contextmgt'));
    const faults = lines.filter((l) => l.includes('real write fault'));
    expect(switches).toHaveLength(8);
    expect(faults).toHaveLength(8);
    // The owners alternate: no two switches in a row for one process.
    const pids = switches.map((l) => /\[pid (\d+)\]/.exec(l)![1]);
    for (let i = 1; i < pids.length; i++) expect(pids[i]).not.toBe(pids[i - 1]);
    expect(lines.at(-1)).toMatch(/clients exited \(0, 0\); 8 context switches.*contexts still allocated: 0/);
  });
});
