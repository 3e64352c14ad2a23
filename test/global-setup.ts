// Suite-wide leak check for /dev/shm: every segment a test creates carries the test prefix, and none may
// outlive the run (each test file checks its own fds and mappings in test/helpers/leaks.ts).
import { readdirSync } from 'node:fs';

const PREFIX = 'devmap-test-';
const ours = () => readdirSync('/dev/shm').filter((n) => n.startsWith(PREFIX));

export function setup(): void {
  for (const stale of ours()) console.warn(`global-setup: stale /dev/shm/${stale} from an earlier run`);
}

export function teardown(): void {
  const left = ours();
  if (left.length > 0) throw new Error(`/dev/shm entries leaked by the suite: ${left.join(', ')}`);
}
