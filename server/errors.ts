/**
 * Errors hardcron raises on purpose. Each carries a stable `code` that callers (CLI, GraphQL,
 * tests) can rely on; the message is written for a person.
 */
export class HardcronError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A setting from the environment or the command line is missing or malformed. */
export class ConfigError extends HardcronError {}

/** A PostgreSQL target (URL, embedded cluster, container) could not be used. */
export class DatabaseTargetError extends HardcronError {}

/** A migration could not be applied, or the database disagrees with the migration files. */
export class MigrationError extends HardcronError {}

/** A GraphQL request was refused by one of the server's per-user limits (HC_BUSY). */
export class LimitError extends HardcronError {}
