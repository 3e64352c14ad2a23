/** The shape of a devmap subcommand. */
export interface Command {
  name: string;
  /** One line for `devmap --help`. */
  summary: string;
  /** The full text of `devmap <name> --help`. */
  help: string;
  /** Runs with the arguments after the command name; resolves to the exit status. */
  run(argv: string[]): number | Promise<number>;
}
