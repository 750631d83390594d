import { PgSimplifyInflectionPreset } from '@graphile/simplify-inflection';
import type pg from 'pg';
import { makePgService } from 'postgraphile/adaptors/pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import type { Logger } from '../logger.ts';
import { ErrorCodesPlugin, makeMaskError, type DatabaseHealth } from './errors.ts';
import { makeGuardsPlugin, type QueryLimits } from './guards.ts';
import type { RequestIdentities } from './identity.ts';
import { ConnectionShares, timeoutSettings, type RequestLimits } from './limits.ts';
import { PlainIdsPlugin } from './plain-ids.ts';
import { makeRunEventsPlugin, type RunEventPump } from './run-events.ts';

export interface PresetOptions {
  /** Pool of $authenticator connections. */
  readonly pool: pg.Pool;
  /** The server's one reader of the run event log (stopped by the server). */
  readonly runEvents: RunEventPump;
  /** current_database(), read once at start-up: role names are `<database>$<nickname>`. */
  readonly database: string;
  readonly identities: RequestIdentities;
  readonly limits: QueryLimits;
  /** Per-request timeouts and each user's share of the pool. */
  readonly requestLimits: RequestLimits;
  /** Largest request body in bytes. */
  readonly maxRequestBytes: number;
  readonly logger: Logger;
  /** Logs database outages once each; errors of requests that meet one are noted in it. */
  readonly health: DatabaseHealth;
}

/**
 * The PostGraphile preset of the GraphQL server. The schema is schema `api` only, introspected
 * as $client: it holds exactly the views and shims a client may use. Each request runs as the
 * role of its verified token (or $anonymous), set by PostGraphile with SET LOCAL ROLE through
 * `pgSettings.role`, under the request timeouts (statement_timeout, lock_timeout, also
 * transaction-local through pgSettings), and within its user's share of the pool (the context's
 * withPgClient is wrapped); the verified claims travel as `request.jwt.claims` for convenience only.
 */
export function makePreset(options: PresetOptions): GraphileConfig.Preset {
  const { pool, database, identities, requestLimits } = options;
  const shares = new ConnectionShares(requestLimits);
  const timeouts = timeoutSettings(requestLimits);
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset],
    plugins: [PlainIdsPlugin, makeRunEventsPlugin(options.runEvents), makeGuardsPlugin(options.limits, identities), ErrorCodesPlugin],
    // Global object ids would add a second way to name every row; ids are plain bigints here
    // (and Query.query, a Relay convenience, has nothing to offer without them).
    disablePlugins: ['NodePlugin', 'QueryQueryPlugin'],
    pgServices: [
      makePgService({
        pool,
        // Run events have a reader of their own (RunEventPump); nothing else listens.
        pubsub: false,
        schemas: ['api'],
        pgSettingsForIntrospection: { role: `${database}$client` },
      }),
    ],
    grafserv: {
      graphqlPath: '/graphql',
      graphiqlPath: '/',
      graphiql: true,
      websockets: true,
      maxRequestLength: options.maxRequestBytes,
      maskError: makeMaskError(options.logger, requestLimits, options.health),
    },
    grafast: {
      explain: false,
      async context(requestContext, args) {
        const identity = await identities.of(requestContext);
        // PostGraphile's PgContextPlugin has put the service's withPgClient here already; every
        // database use of this request (HTTP or websocket) goes through the one returned below.
        const withPgClient = args.contextValue.withPgClient as typeof args.contextValue.withPgClient | undefined;
        if (typeof withPgClient !== 'function') throw new Error('no withPgClient in the GraphQL context: is the pg service configured?');
        return {
          hardcronIdentity: identity,
          withPgClient: shares.wrap(identity.role, withPgClient),
          pgSettings: {
            role: identity.role,
            ...timeouts,
            ...(identity.claims && { 'request.jwt.claims': JSON.stringify(identity.claims) }),
          },
        };
      },
    },
  };
}
