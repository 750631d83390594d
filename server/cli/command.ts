import type { Env } from '../config.ts';

/** A subcommand of `hardcron`: its one-line summary, its --help text and what it does. */
export interface Command {
  readonly summary: string;
  readonly help: string;
  /**
   * Runs the command with its arguments and the process environment, from which (with its flags)
   * it makes its configuration once (config.ts) before doing anything else.
   */
  run(args: readonly string[], env: Env): Promise<void>;
}
