// The command dispatcher: help, unknown commands, exit statuses.
import { describe, expect, it } from 'vitest';
import { devmap } from './devmap';

describe('devmap', () => {
  it('lists the commands and exits 2 when called with none', async () => {
    const r = await devmap();
    expect(r.code).toBe(2);
    for (const c of ['bench', 'ls', 'rm', 'inspect']) expect(r.stdout).toContain(`  ${c} `);
  });

  it('--help exits 0', async () => {
    const r = await devmap('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: devmap <command>/);
  });

  it.each(['bench', 'ls', 'rm', 'inspect'])('%s --help prints its usage and exits 0', async (command) => {
    const r = await devmap(command, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: devmap ${command}`));
    expect((await devmap('help', command)).stdout).toBe(r.stdout);
  });

  it('refuses an unknown command with a hint', async () => {
    const r = await devmap('lss');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'lss' (did you mean 'ls'?)");
    expect(r.stderr).toContain('devmap --help');
  });

  it('refuses an unknown option with a hint, naming the command', async () => {
    const r = await devmap('rm', '--stael');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('devmap rm: unknown option --stael (did you mean --stale?)');
    expect(r.stderr).toContain('devmap rm --help');
  });

  it('prints the package version', async () => {
    const r = await devmap('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(require('../../package.json').version);
  });
});
