// Fault injection in child processes: address-space and descriptor limits (prlimit), a file truncated under a
// mapping, a sealed memfd. Each asserts a clean, coded error (or, for the unsealed file, the documented SIGBUS).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/child';

const dir = mkdtempSync(join(tmpdir(), 'devmap-test-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function underLimit(limit: string[], args: string[]) {
  const r = spawnSync('prlimit', [...limit, process.execPath, fixture('fault-child.cjs'), ...args], { encoding: 'utf8' });
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  return { ...r, json: lines.length ? JSON.parse(lines[lines.length - 1]) : undefined };
}

describe('fault injection', () => {
  it('RLIMIT_AS: mmap fails with ENOMEM, coded, and the process carries on without leaks', () => {
    const r = underLimit(['--as=1500000000'], ['address-space']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.errors).toEqual([
      { label: 'mapAnonymous 8 GiB', code: 'ENOMEM', syscall: 'mmap' },
      { label: 'memfd map 8 GiB', code: expect.stringMatching(/^(ENOMEM|ENOSPC)$/), syscall: expect.any(String) },
      { label: 'kernel with a 4 GiB address space', code: 'ERR_DEVMAP_NO_ADDRESS_SPACE', syscall: null },
    ]);
    expect(r.json.fdsLeaked).toBe(0);
  });

  it('RLIMIT_NOFILE: EMFILE from memfd_create, shm_open and open; everything works again once descriptors are closed', () => {
    const file = join(dir, 'f');
    writeFileSync(file, Buffer.alloc(4096));
    const r = underLimit(['--nofile=40'], ['descriptors', file]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.held).toBeGreaterThan(0);
    expect(r.json.errors.map((e: { code: string }) => e.code)).toEqual(['EMFILE', 'EMFILE', 'EMFILE']);
    expect(r.json.errors.map((e: { syscall: string }) => e.syscall)).toEqual(['memfd_create', 'shm_open', 'open']);
    expect(r.json.recovered).toBe(true);
  });

  it('a regular file truncated under a mapping costs the Mapping (ERR_DEVMAP_TRUNCATED), not the process', () => {
    const file = join(dir, 'trunc');
    writeFileSync(file, Buffer.alloc(8192));
    const r = spawnSync(process.execPath, [fixture('fault-child.cjs'), 'truncated-file', file], { encoding: 'utf8' });
    expect(r.stdout).toContain('"touching":true');
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status).toBe(0);
    const json = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(json.errors).toEqual([{ label: 'read after the truncation', code: 'ERR_DEVMAP_TRUNCATED', syscall: null }]);
    expect(json.survived).toBe(true);
  });

  it('a SIGBUS outside devmap\'s ranges still reaches the default action (the previous handler, unchanged)', () => {
    const file = join(dir, 'foreign');
    writeFileSync(file, Buffer.alloc(8192));
    const r = spawnSync(process.execPath, ['-e', `
      require(${JSON.stringify(join(__dirname, '..', 'dist'))}).mapAnonymous(4096).unmap();
      process.kill(process.pid, 'SIGBUS');
      setTimeout(() => {}, 1000);`], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGBUS');
  });

  it('a sealed memfd cannot be truncated, so the same access is safe', () => {
    const out = execFileSync(process.execPath, [fixture('fault-child.cjs'), 'sealed-memfd'], { encoding: 'utf8' });
    const json = JSON.parse(out.trim().split('\n').pop()!);
    expect(json.errors).toEqual([{ label: 'ftruncate a sealed memfd', code: 'EPERM', syscall: 'ftruncate' }]);
    expect(json.survived).toBe(true);
  });
});
