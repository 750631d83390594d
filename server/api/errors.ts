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
 * errors pass with their message and `extensions.code`; a request stopped by a timeout gets
 * HC_TIMEOUT or HC_LOCK_TIMEOUT; a permission refusal (42501) of a request without a token
 * becomes HC_AUTH_REQUIRED, since "permission denied for function schedule_job" does not tell
 * a newcomer that the token is what is missing; anything else is logged with the request id and reaches the
 * client as "internal error" with that id only (no stack, no SQL).
 */
export function makeMaskError(logger: Logger, timeouts: RequestTimeouts): (error: GraphQLError) => GraphQLError {
  return (error) => {
    const original = error.originalError;
    if (!original || original instanceof GraphQLError) return error;
    const { code, hint } = original as PgErrorLike;
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
