/** A subcommand of `hardcron`: its one-line summary, its --help text and what it does. */
export interface Command {
  readonly summary: string;
  readonly help: string;
  run(args: readonly string[]): Promise<void>;
}
