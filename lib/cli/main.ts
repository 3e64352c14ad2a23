#!/usr/bin/env node
/*
 * The devmap command line: `devmap <command> [options]`. Each command lives in its own module and reports
 * an exit status: 0 done, 1 the operation failed (a missing or refused segment, say), 2 a usage error
 * (printed with a pointer to --help).
 */
import { UsageError, closest } from './args';
import { escapeText } from './format';
import { bench } from './bench';
import type { Command } from './command';
import { inspect } from './inspect';
import { ls } from './ls';
import { rm } from './rm';
import { run } from './run';

const COMMANDS: Command[] = [bench, ls, rm, inspect, run];

const HELP = `Usage: devmap <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(8)} ${c.summary}`).join('\n')}

Run "devmap <command> --help" for a command's options. Guides: docs/guide-sharing.md,
docs/guide-drivers.md, docs/guide-performance.md.
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    process.stdout.write(topic?.help ?? HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${require('../../package.json').version}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  try {
    if (command === undefined) {
      const hint = closest(name, COMMANDS.map((c) => c.name));
      throw new UsageError(`unknown command '${name}'${hint ? ` (did you mean '${hint}'?)` : ''}`);
    }
    const end = rest.indexOf('--');
    const options = end < 0 ? rest : rest.slice(0, end);
    if (options.includes('--help') || options.includes('-h')) {
      process.stdout.write(command.help);
      return 0;
    }
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      const where = err.command ? `devmap ${err.command}` : 'devmap';
      process.stderr.write(`${where}: ${escapeLines(err.message)}\nRun "${where} --help" for usage.\n`);
      return 2;
    }
    const e = err as Error;
    process.stderr.write(`devmap ${name}: ${escapeLines(e.message)}\n`);
    if (process.env.DEVMAP_DEBUG) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

/** A message that may quote the user's arguments or a segment's name: escaped line by line (format.ts). */
function escapeLines(message: string): string {
  return message.split('\n').map(escapeText).join('\n');
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`devmap: ${(err as Error).stack}\n`);
      process.exitCode = 1;
    },
  );
}
