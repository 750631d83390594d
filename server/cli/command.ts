import type { Env } from '../config.ts';

/** A subcommand of `hardcron`: its --help text and what it does (its summary is in main.ts). */
export interface Command {
  readonly help: string;
  /**
   * Runs the command with its arguments and the process environment, from which (with its flags)
   * it makes its configuration once (config.ts) before doing anything else.
   */
  run(args: readonly string[], env: Env): Promise<void>;
}
