import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { GraphQLError } from 'postgraphile/graphql';
import { HardcronError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** The id of the HTTP request being served (also sent back as the `x-request-id` header). */
export const requestIds = new AsyncLocalStorage<string>();

/**
 * SQLSTATEs whose message is written for the caller: hardcron's own errors (HC…, see the
 * scheduling error table in DESIGN.md) and "permission denied" (e.g. a caller without a token
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
 * grafserv's maskError: GraphQL's own errors (validation, coercion) and hardcron's database
 * errors pass with their message and `extensions.code`; anything else is logged with the request
 * id and reaches the client as "internal error" with that id only (no stack, no SQL).
 */
export function makeMaskError(logger: Logger): (error: GraphQLError) => GraphQLError {
  return (error) => {
    const original = error.originalError;
    if (!original || original instanceof GraphQLError) return error;
    const { code, hint } = original as PgErrorLike;
    if (original instanceof HardcronError || (typeof code === 'string' && isPublicSqlState(code))) {
      return new GraphQLError(original.message, {
        nodes: error.nodes,
        source: error.source,
        positions: error.positions,
        path: error.path,
        originalError: original,
        extensions: { code, ...(typeof hint === 'string' && { hint }) },
      });
    }
    const requestId = requestIds.getStore() ?? randomUUID();
    logger.error({ requestId, err: original, path: error.path }, 'internal error in a GraphQL request');
    return new GraphQLError(`internal error (request id ${requestId})`, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      extensions: { code: 'HC_INTERNAL', requestId },
    });
  };
}
