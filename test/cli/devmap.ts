// Runs the real devmap binary (the compiled dist/cli/main.js, as the package's "bin" points at it).
import { join } from 'node:path';
import { run, type ChildResult } from '../helpers/child';

export const BIN = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

export function devmap(...args: string[]): Promise<ChildResult> {
  return run(process.execPath, [BIN, ...args]);
}
