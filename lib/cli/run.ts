/*
 * devmap run: runs an unmodified program as a client process of a kernel host.
 *
 * The program starts with the preload shim (native/shim) in LD_PRELOAD, DEVMAP_KERNEL naming the host's socket
 * and DEVMAP_PATHS the device paths the host serves (asked of the host first, by a hello and an exit). Its opens
 * of those paths, and what it then does with the descriptors and mappings, go to the host; everything else is
 * the program's own business. `devmap run` waits for the program and exits with its status (128 + the signal
 * number when a signal ended it, as a shell reports it).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { constants } from 'node:os';
import nodeGypBuild from 'node-gyp-build';
import { DevmapError } from '../errors';
import { connectKernel } from '../kernel/remote/client';
import { parse, UsageError } from './args';
import type { Command } from './command';

/** The preload shim's file: a local build (native/shim/build/Release) first, then the shipped prebuild. */
export function shimPath(): string {
  const dir = join(__dirname, '..', '..', 'native', 'shim');
  try {
    return nodeGypBuild.path(dir);
  } catch (cause) {
    throw new DevmapError(
      'ERR_DEVMAP_SHIM_MISSING',
      `devmap's preload shim is not built for ${process.platform}-${process.arch}: looked in ${dir}/build/Release and ${dir}/prebuilds. ` +
        'Build it with `npx node-gyp rebuild -C native/shim`.',
      { cause },
    );
  }
}

/** The environment a program needs to be a client of the host at `socket` serving `paths`. */
export function clientEnv(socket: string, paths: readonly string[], base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const preload = [shimPath(), base.LD_PRELOAD].filter(Boolean).join(':');
  return { ...base, LD_PRELOAD: preload, DEVMAP_KERNEL: resolve(socket), DEVMAP_PATHS: paths.join(':') };
}

export const run: Command = {
  name: 'run',
  summary: 'run a program as a client process of a kernel host (kernel.listen)',
  help: `Usage: devmap run --kernel PATH -- PROGRAM [ARGS...]

Runs PROGRAM with devmap's preload shim, as a process of the kernel served at PATH (kernel.listen(PATH) in
a Node program). Its open(2) of the device paths the kernel serves, and read, write, ioctl, mmap, munmap,
mprotect, dup, close and fork on what it opened, go to that kernel's drivers; everything else goes to the
system untouched. When it exits, crashes or is killed, the kernel runs its exit path.

  --kernel PATH   the kernel host's socket

Exit status: the program's (128 + the signal number if a signal ended it); 1 when the kernel cannot be
reached; 2 for a usage error. See docs/guide-drivers.md, "Your program against your driver".
`,
  async run(argv) {
    const end = argv.indexOf('--');
    const { values, positionals } = parse('run', end < 0 ? argv : argv.slice(0, end), { kernel: { type: 'string' } });
    if (positionals.length > 0) throw new UsageError(`unexpected ${positionals[0]} before -- (the program goes after --)`, 'run');
    const socket = values.kernel;
    if (typeof socket !== 'string' || socket === '') throw new UsageError('--kernel PATH is required', 'run');
    const program = end < 0 ? [] : argv.slice(end + 1);
    if (program.length === 0) throw new UsageError('no program given after --', 'run');
    if (!existsSync(socket)) throw new DevmapError('ERR_DEVMAP_NO_KERNEL', `no kernel host at ${socket}`);
    const probe = connectKernel(socket);
    const paths = probe.paths;
    await probe.exit();
    const child = spawn(program[0], program.slice(1), { stdio: 'inherit', env: clientEnv(socket, paths) });
    return new Promise<number>((done, fail) => {
      child.on('error', fail);
      child.on('exit', (code, signal) => done(signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1)));
    });
  },
};
