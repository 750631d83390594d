import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { GraphQLError } from 'postgraphile/graphql';
import { HardcronError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** The id of the HTTP request being served (also sent back as the `x-request-id` header). */
export const requestIds = new AsyncLocalStorage<string>();

/**
 * Whether the HTTP request being served came without a token (it runs as $anonymous). Set once
 * the token check has passed; unset for websocket requests (subscriptions refuse anonymity
 * themselves).
 */
export const anonymousRequests = new AsyncLocalStorage<boolean>();

/** What an anonymous caller is told when PostgreSQL refuses it something: a token is missing. */
export const AUTH_REQUIRED_MESSAGE =
  'this needs a token, and the request had none: send the header "Authorization: Bearer <token>"; ' +
  'get a token with `hardcron token <nickname>` (`npm start` prints one for the user "demo")';

/**
 * SQLSTATEs whose message is written for the caller: hardcron's own errors (HC…, see
 * docs/errors.md) and "permission denied" (e.g. a caller without a token
 * trying a mutation). Their message and code reach the client as they are.
 */
function isPublicSqlState(code: string): boolean {
  return /^HC[0-9A-Z]{3}$/.test(code) || code === '42501';
}

interface PgErrorLike {
  code?: unknown;
  hint?: unknown;
  detail?: unknown;
}

/**
 * What a client is told when the database could not serve its request. HC_DATABASE_UNAVAILABLE:
 * a connection broke or could not be made (the database is restarting, failing over, or out of
 * reach); a COMMIT in flight when it broke may or may not have taken effect, hence the advice.
 * HC_DATABASE_READ_ONLY: the database refused a write (SQLSTATE 25006): a standby, or one in
 * recovery, is behind the address.
 */
export const DATABASE_TROUBLE = {
  unavailable: {
    code: 'HC_DATABASE_UNAVAILABLE',
    message:
      'the database cannot be reached right now (its connection broke or could not be made: it may be restarting or failing over); ' +
      'try again shortly, and if this request changed something, check whether the change was made before repeating it',
  },
  'read-only': {
    code: 'HC_DATABASE_READ_ONLY',
    message:
      'the database is read-only right now (a standby, or a database in recovery, e.g. during a failover), and nothing was changed; ' +
      'try again once it accepts writes',
  },
} as const;

export type DatabaseTrouble = keyof typeof DATABASE_TROUBLE;

/** Node's codes for a socket that could not connect or broke. */
const SOCKET_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * node-postgres's own errors for a connection that broke or never came: they carry no code, only
 * these messages ("not queryable" is what a query on a client whose connection already broke gets,
 * e.g. the ROLLBACK after the statement that found it broken).
 */
const PG_CONNECTION_MESSAGES =
  /^(Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable|Client was closed and is not queryable|timeout exceeded when trying to connect)$/;

/**
 * Whether `error` says the database is unavailable (SQLSTATE class 08, 57P01-57P03: the server
 * ended the session or does not accept one yet; a socket error; node-postgres's "connection
 * terminated"), or read-only (25006), looking through `cause` and AggregateError's `errors` (a
 * host name with several addresses fails with one error per address). Null for anything else.
 */
export function databaseTrouble(error: unknown, depth = 0): DatabaseTrouble | null {
  if (depth > 4 || typeof error !== 'object' || error === null) return null;
  const { code, message, cause } = error as { code?: unknown; message?: unknown; cause?: unknown };
  if (code === '25006') return 'read-only';
  if (typeof code === 'string' && (/^08[0-9A-Z]{3}$/.test(code) || /^57P0[123]$/.test(code) || SOCKET_ERROR_CODES.has(code))) return 'unavailable';
  if (typeof message === 'string' && PG_CONNECTION_MESSAGES.test(message)) return 'unavailable';
  if (error instanceof AggregateError) {
    for (const inner of error.errors as unknown[]) {
      const trouble = databaseTrouble(inner, depth + 1);
      if (trouble) return trouble;
    }
  }
  return databaseTrouble(cause, depth + 1);
}

/**
 * What the server knows of its database, for its log: one warning when connections start failing
 * (or the database turns read-only) and one line when they work again (or it accepts writes
 * again), however many requests, pooled connections and reconnection attempts fail in between
 * (those are logged at debug). Read-only is only ever cleared by /readyz finding the database
 * writable, since nothing else asks.
 */
export class DatabaseHealth {
  private unreachable = false;
  private readOnlyNow = false;

  constructor(private readonly logger: Logger) {}

  /** A connection broke or could not be made (`where` says whose). */
  unavailable(error: unknown, where: string): void {
    if (this.unreachable) {
      this.logger.debug({ err: error, where }, 'database still unavailable');
      return;
    }
    this.unreachable = true;
    this.logger.warn(
      { err: error, where, code: DATABASE_TROUBLE.unavailable.code },
      'database connection lost: requests get HC_DATABASE_UNAVAILABLE and /readyz answers 503 until a connection succeeds; reconnecting as needed',
    );
  }

  /** A new connection was made: the database answers again (read-only or not: /readyz tells). */
  reachable(): void {
    if (!this.unreachable) return;
    this.unreachable = false;
    this.logger.info('database connection works again');
  }

  /** The database refused a write, or says it is in recovery. */
  readOnly(error: unknown, where: string): void {
    if (this.readOnlyNow) return;
    this.readOnlyNow = true;
    this.logger.warn(
      { err: error, where, code: DATABASE_TROUBLE['read-only'].code },
      'database is read-only (a standby, or in recovery): writes get HC_DATABASE_READ_ONLY and /readyz answers 503 until it accepts writes',
    );
  }

  /** /readyz found the database answering and writable. */
  writable(): void {
    this.reachable();
    if (!this.readOnlyNow) return;
    this.readOnlyNow = false;
    this.logger.info('database accepts writes again');
  }

  /** Takes an error in: its kind of trouble (logged once per outage), or null when it is none. */
  note(error: unknown, where: string): DatabaseTrouble | null {
    const trouble = databaseTrouble(error);
    if (trouble === 'unavailable') this.unavailable(error, where);
    else if (trouble === 'read-only') this.readOnly(error, where);
    return trouble;
  }
}

/** The per-request timeouts, named in the messages of the requests they stop. */
export interface RequestTimeouts {
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
}

/**
 * A request stopped by a per-request timeout (see limits.ts): SQLSTATE 57014 (query_canceled,
 * here: statement_timeout) becomes HC_TIMEOUT, 55P03 (lock_not_available, here: lock_timeout)
 * HC_LOCK_TIMEOUT, with a message that says what happened and what to do. Null otherwise.
 */
function timeoutError(code: unknown, timeouts: RequestTimeouts): { code: string; message: string } | null {
  if (code === '57014') {
    return {
      code: 'HC_TIMEOUT',
      message:
        `the database stopped this request: it ran longer than the ${timeouts.statementTimeoutMs} ms a statement may take, ` +
        'and what it had done was rolled back; try again later, or ask for less at once',
    };
  }
  if (code === '55P03') {
    return {
      code: 'HC_LOCK_TIMEOUT',
      message:
        `the database stopped this request: it waited longer than ${timeouts.lockTimeoutMs} ms for a lock that another ` +
        'transaction holds (something it needs, such as the same job or function, is being changed right now), ' +
        'and what it had done was rolled back; try again shortly',
    };
  }
  return null;
}

/**
 * grafserv's maskError: GraphQL's own errors (validation, coercion) and hardcron's database
 * errors pass with their message and `extensions.code`; a request that found the database gone
 * or read-only gets HC_DATABASE_UNAVAILABLE or HC_DATABASE_READ_ONLY (noted in `health`, which
 * logs once per outage, not once per request); a request stopped by a timeout gets
 * HC_TIMEOUT or HC_LOCK_TIMEOUT; a permission refusal (42501) of a request without a token
 * becomes HC_AUTH_REQUIRED, since "permission denied for function schedule_job" does not tell
 * a newcomer that the token is what is missing; anything else is logged with the request id and reaches the
 * client as "internal error" with that id only (no stack, no SQL).
 */
export function makeMaskError(logger: Logger, timeouts: RequestTimeouts, health: DatabaseHealth): (error: GraphQLError) => GraphQLError {
  return (error) => {
    const original = error.originalError;
    if (!original || original instanceof GraphQLError) return error;
    const { code, hint } = original as PgErrorLike;
    const trouble = original instanceof HardcronError ? null : health.note(original, 'a GraphQL request');
    if (trouble) {
      const { code: troubleCode, message } = DATABASE_TROUBLE[trouble];
      return answer(error, message, { code: troubleCode }, original);
    }
    const timedOut = original instanceof HardcronError ? null : timeoutError(code, timeouts);
    if (timedOut) {
      logger.warn({ requestId: requestIds.getStore(), code: timedOut.code, path: error.path }, 'a GraphQL request was stopped by a timeout');
      return answer(error, timedOut.message, { code: timedOut.code }, original);
    }
    if (code === '42501' && anonymousRequests.getStore() === true) {
      return answer(error, AUTH_REQUIRED_MESSAGE, { code: 'HC_AUTH_REQUIRED' }, original);
    }
    if (original instanceof HardcronError || (typeof code === 'string' && isPublicSqlState(code))) {
      return answer(error, original.message, { code, ...(typeof hint === 'string' && { hint }) }, original);
    }
    const requestId = requestIds.getStore() ?? randomUUID();
    logger.error({ requestId, err: original, path: error.path }, 'internal error in a GraphQL request');
    return answer(error, `internal error (request id ${requestId})`, { code: 'HC_INTERNAL', requestId });
  };
}

/** What the client gets instead of `error`: same place in the request, this message and extensions. */
function answer(error: GraphQLError, message: string, extensions: Record<string, unknown>, originalError?: Error): GraphQLError {
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    ...(originalError && { originalError }),
    extensions,
  });
}
