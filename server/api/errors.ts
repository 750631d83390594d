import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { isSafeError } from 'postgraphile/grafast';
import { GraphQLError } from 'postgraphile/graphql';
import type { Result } from 'postgraphile/grafserv';
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
 * A value of the request that PostgreSQL refused as it stood (SQLSTATE class 22): an id that is
 * not a bigint or out of its range, a date that does not parse, in the query PostGraphile built
 * from the arguments (PostgreSQL names the parameter in `where`), or a negative `first`, `last`
 * or `offset` (2201W, 2201X: only those build a LIMIT or OFFSET from a request). What the client
 * is told (its own value at most), or null for anything else: class-22 errors inside hardcron's
 * functions are refused there with HC codes, so one reaching here from elsewhere is a bug.
 */
function argumentError(original: PgErrorLike & { message: string; where?: unknown }): string | null {
  const { code, where, message } = original;
  if (code === '2201W' || code === '2201X') return 'first, last and offset must not be negative';
  if (typeof code === 'string' && code.startsWith('22') && typeof where === 'string' && /^(unnamed )?portal parameter \$\d+/.test(where)) {
    return `an argument is not a valid value of its type: ${message}`;
  }
  return null;
}

/**
 * grafserv's maskError: every error leaves with an `extensions.code` (docs/errors.md). GraphQL's
 * own errors about the request (a variable missing or of the wrong type) get HC_GRAPHQL_INVALID;
 * a field error GraphQL raised itself (a null where the schema promises none) is a bug, logged
 * and answered HC_INTERNAL with a request id, its message kept; a value PostgreSQL refused as
 * malformed (argumentError) and grafast's errors meant for the client (an invalid cursor,
 * `offset` with `last`) get HC_BAD_ARGUMENT; hardcron's database
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
    if (!original || original instanceof GraphQLError) {
      if (typeof error.extensions.code === 'string') return error;
      if (error.path === undefined) return answer(error, error.message, { ...error.extensions, code: 'HC_GRAPHQL_INVALID' }, original);
      const requestId = requestIds.getStore() ?? randomUUID();
      logger.error({ requestId, err: error, path: error.path }, 'a GraphQL field error of the server (the schema promised otherwise)');
      return answer(error, error.message, { code: 'HC_INTERNAL', requestId }, original);
    }
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
    const badArgument = original instanceof HardcronError ? null : isSafeError(original) ? original.message : argumentError(original);
    if (badArgument !== null) return answer(error, badArgument, { code: 'HC_BAD_ARGUMENT' }, original);
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

/**
 * The codes of the errors GraphQL and grafserv make themselves, so that every error a client
 * receives has an `extensions.code`: a document that does not parse or validate (an unknown
 * field, a wrong argument type, an enum value that does not exist, a query limit of guards.ts)
 * gets HC_GRAPHQL_INVALID, over HTTP and websockets alike; grafserv's refusals of the HTTP request
 * itself (a body that is not JSON, a batch, more than the size limit, another media type or
 * method) get HC_BAD_REQUEST. Errors that already carry a code keep it.
 */
export const ErrorCodesPlugin: GraphileConfig.Plugin = {
  name: 'HardcronErrorCodesPlugin',
  version: '1.0.0',
  grafserv: {
    middleware: {
      setPreset(next, event) {
        const getExecutionConfig = event.getExecutionConfig;
        event.getExecutionConfig = async function (ctx) {
          const config = await getExecutionConfig.call(this, ctx);
          return {
            ...config,
            parseAndValidate(query: string) {
              const result = config.parseAndValidate(query);
              return result.errors ? { errors: result.errors.map((e) => withCode(e, 'HC_GRAPHQL_INVALID')) } : result;
            },
          };
        };
        return next();
      },
      async processRequest(next) {
        const result = await next();
        return result && withRequestCodes(result);
      },
    },
  },
};

/** `error` with `code` unless it has one: a copy (validation results are cached and shared). */
function withCode(error: GraphQLError, code: string): GraphQLError {
  if (typeof error.extensions.code === 'string') return error;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    ...(error.originalError && { originalError: error.originalError }),
    extensions: { ...error.extensions, code },
  });
}

interface ErrorsBody {
  errors: Array<{ extensions?: Record<string, unknown> }>;
}

function isErrorsBody(body: unknown): body is ErrorsBody {
  return typeof body === 'object' && body !== null && Array.isArray((body as { errors?: unknown }).errors) &&
    (body as { errors: unknown[] }).errors.every((e) => typeof e === 'object' && e !== null);
}

/**
 * A JSON answer of grafserv with status 400 or more whose errors lack a code: they get
 * HC_BAD_REQUEST. (Under express, grafserv answers with buffers.)
 */
function withRequestCodes(result: Result): Result {
  if (result.type !== 'buffer' || result.statusCode < 400 || !/json/.test(result.headers['content-type'] ?? '')) return result;
  let body: unknown;
  try {
    body = JSON.parse(result.buffer.toString('utf8'));
  } catch {
    return result;
  }
  if (!isErrorsBody(body) || body.errors.every((e) => typeof e.extensions?.code === 'string')) return result;
  const coded = { ...body, errors: body.errors.map((e) => ({ ...e, extensions: { ...e.extensions, code: e.extensions?.code ?? 'HC_BAD_REQUEST' } })) };
  const buffer = Buffer.from(JSON.stringify(coded), 'utf8');
  return { ...result, headers: { ...result.headers, 'content-length': String(buffer.length) }, buffer };
}
