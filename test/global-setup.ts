// Suite-wide leak check for /dev/shm: every segment a test creates carries the test prefix, and none may
// outlive the run (each test file checks its own fds and mappings in test/helpers/leaks.ts).
import { readdirSync } from 'node:fs';

// One id per run, inherited by the test workers (test/helpers/leaks.ts puts it in every segment name).
process.env.DEVMAP_TEST_RUN ??= `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const PREFIX = `devmap-test-${process.env.DEVMAP_TEST_RUN}-`;
const ours = () => readdirSync('/dev/shm').filter((n) => n.startsWith(PREFIX));

let before = new Set<string>();

export function setup(): void {
  before = new Set(ours());
  for (const stale of before) console.warn(`global-setup: stale /dev/shm/${stale} from an earlier run (not counted)`);
}

export function teardown(): void {
  const left = ours().filter((n) => !before.has(n));
  if (left.length > 0) throw new Error(`/dev/shm entries leaked by the suite: ${left.join(', ')}`);
}
