/*
 * Command-line argument parsing for the devmap CLI: node:util parseArgs in strict mode, with its errors turned
 * into UsageErrors that name the command and, for a misspelled option, suggest the closest one.
 */
import { parseArgs } from 'node:util';

/** A mistake in how the command was called: printed with a pointer to --help, exit status 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface OptionSpec {
  type: 'boolean' | 'string';
  short?: string;
}

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Parses `argv` for `command`; `--help`/`-h` is always accepted. */
export function parse(command: string, argv: string[], options: Record<string, OptionSpec>): Parsed {
  const all: Record<string, OptionSpec> = { help: { type: 'boolean', short: 'h' }, ...options };
  try {
    const { values, positionals } = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const given = /'(-{1,2}[^']*)'/.exec(e.message)?.[1] ?? '';
      const hint = closest(given.replace(/^-+/, '').split('=')[0], Object.keys(all));
      throw new UsageError(`unknown option ${given}${hint ? ` (did you mean --${hint}?)` : ''}`, command);
    }
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw new UsageError(e.message.replace(/\. To specify.*$/s, '').replace(/^Option '/, "option '"), command);
    }
    throw err;
  }
}

/** The option name nearest to `word` by edit distance, if it is close enough to be a typo. */
export function closest(word: string, names: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of names) {
    const d = distance(word, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return bestDistance <= Math.max(1, Math.ceil(word.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

/** A positive integer option value, or a UsageError naming the option. */
export function positiveInteger(value: string | boolean | undefined, name: string, command: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--${name} needs a positive integer, got '${String(value)}'`, command);
  }
  return n;
}
