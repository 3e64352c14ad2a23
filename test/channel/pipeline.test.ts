// examples/channel-pipeline.ts, run as users run it (npm run example:channel-pipeline): Node producer, Node
// stage killed and restarted mid-stream, Python sink — every result arrives, at most one twice, none wrong.
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { run } from '../helpers/child';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();

it('the pipeline example delivers every result across a crash of its middle stage', async () => {
  const r = await run(process.execPath, [join(__dirname, '..', '..', 'dist', 'examples', 'channel-pipeline.js')]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/stage \d+ killed \(SIGKILL\); stage \d+ takes over its slots/);
  const m = /sink \(Python\): (\d+) distinct results \(1\.\.3000\), (\d+) delivered twice after the crash, (\d+) wrong/.exec(r.stdout);
  expect(m).not.toBeNull();
  expect(Number(m![1])).toBe(3000);
  expect(Number(m![2])).toBeLessThanOrEqual(1);
  expect(Number(m![3])).toBe(0);
}, 60_000);
