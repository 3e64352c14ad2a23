/*
 * A three-stage pipeline over two devmap channels, across processes and languages, with a crash in the middle.
 *
 *   producer (this Node process) ──"jobs" (spsc)──▶ stage (a Node process) ──"results" (spsc)──▶ sink (Python)
 *
 * The producer sends numbered jobs without blocking its event loop (sendAsync). The stage consumes each job in
 * place (consume: zero-copy), squares the number and sends "n n²" on. The Python sink (python/devmap_channel.py)
 * receives the results and checks them. A third of the way in, the producer SIGKILLs the stage and starts a new
 * one: the new stage takes over the dead one's reader slot on "jobs" and writer slot on "results" (the kernel
 * says their owner is dead) and continues where it stopped. The job the old stage was consuming when it died is
 * delivered again (consume is at-least-once), so the sink may see its result twice — it keeps the first. It
 * reports how many distinct results it got (all of them), how many came twice, and whether any was wrong.
 *
 * Run: npm run example:channel-pipeline
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Channel, SharedMemory } from 'devmap';

const JOBS = 3000;

function open(name: string, spin = 200): Channel {
  const shm = SharedMemory.open(name);
  const mapping = shm.map();
  shm.close();
  return Channel.attach(mapping, { spin });
}

function create(name: string): { channel: Channel; dispose(): void } {
  const opts = { capacity: 16384, mode: 'spsc' as const };
  const shm = SharedMemory.create(name, Channel.bytesFor(opts));
  const mapping = shm.map();
  shm.close();
  const channel = Channel.create(mapping, opts);
  return {
    channel,
    dispose() {
      channel.detach();
      mapping.unmap();
      SharedMemory.unlink(name);
    },
  };
}

/** The middle stage: jobs in, squares out; closes "results" when "jobs" is closed and drained. */
function stage(jobsName: string, resultsName: string): void {
  const jobs = open(jobsName);
  const results = open(resultsName);
  const decoder = new TextDecoder();
  for (;;) {
    const got = jobs.consume((view) => {
      const n = Number(decoder.decode(view));
      results.send(`${n} ${n * n}`);
      if (process.env.PIPELINE_SLOW === '1') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    });
    if (!got) break; // closed and drained
  }
  results.close();
}

const SINK = String.raw`
import json, sys
sys.path.insert(0, sys.argv[1])
from devmap_channel import Channel
ch = Channel.open(sys.argv[2])
seen, twice, wrong = set(), 0, 0
for message in ch:
    n, square = map(int, message.split())
    if n in seen:
        twice += 1
        continue
    seen.add(n)
    wrong += square != n * n
ch.detach()
ch.close_mapping()
print(json.dumps({"distinct": len(seen), "twice": twice, "wrong": wrong, "lowest": min(seen), "highest": max(seen)}))
`;

function startStage(jobs: string, results: string): ChildProcess {
  return spawn(process.execPath, [__filename, 'stage', jobs, results], {
    stdio: 'inherit', env: { ...process.env, PIPELINE_SLOW: '1' },
  });
}

export async function main(log: (line: string) => void = console.log): Promise<{ distinct: number; twice: number; wrong: number }> {
  const tag = `devmap-example-${process.pid}`;
  const jobs = create(`${tag}-jobs`);
  const results = create(`${tag}-results`);
  try {
    const python = join(__dirname, '..', '..', 'python');
    const sink = spawn('python3', ['-c', SINK, python, `${tag}-results`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let summary = '';
    sink.stdout!.on('data', (d) => (summary += d));
    const sinkDone = new Promise<number | null>((resolve) => sink.on('exit', resolve));
    let current = startStage(`${tag}-jobs`, `${tag}-results`);
    log(`producer ${process.pid}: stage ${current.pid} (Node), sink ${sink.pid} (Python)`);
    for (let n = 1; n <= JOBS; n++) {
      if (!(await jobs.channel.sendAsync(String(n), { timeout: 30_000 }))) throw new Error('the stage stopped reading');
      if (n === Math.floor(JOBS / 3)) {
        const dead = current;
        await new Promise((resolve) => {
          dead.on('exit', resolve);
          dead.kill('SIGKILL');
        });
        current = startStage(`${tag}-jobs`, `${tag}-results`);
        log(`job ${n}: stage ${dead.pid} killed (SIGKILL); stage ${current.pid} takes over its slots`);
      }
    }
    jobs.channel.close();
    log(`producer: ${JOBS} jobs sent, "jobs" closed`);
    const stageCode = await new Promise<number | null>((resolve) => current.on('exit', resolve));
    const sinkCode = await sinkDone;
    if (stageCode !== 0 || sinkCode !== 0) throw new Error(`stage exited ${stageCode}, sink exited ${sinkCode}`);
    const report = JSON.parse(summary) as { distinct: number; twice: number; wrong: number; lowest: number; highest: number };
    log(`sink (Python): ${report.distinct} distinct results (${report.lowest}..${report.highest}), ${report.twice} delivered twice after the crash, ${report.wrong} wrong`);
    const st = jobs.channel.stats();
    log(`"jobs": ${st.sent} sent, ${st.skipped} skipped, closed: ${st.closed}`);
    return report;
  } finally {
    jobs.dispose();
    results.dispose();
  }
}

if (require.main === module) {
  if (process.argv[2] === 'stage') stage(process.argv[3], process.argv[4]);
  else main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
