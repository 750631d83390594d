import { PgSimplifyInflectionPreset } from '@graphile/simplify-inflection';
import type pg from 'pg';
import { makePgService, type PgSubscriber } from 'postgraphile/adaptors/pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import type { Logger } from '../logger.ts';
import { makeMaskError } from './errors.ts';
import { makeGuardsPlugin, type QueryLimits } from './guards.ts';
import type { RequestIdentities } from './identity.ts';
import { RunEventsPlugin } from './run-events.ts';

export interface PresetOptions {
  /** Pool of $authenticator connections. */
  readonly pool: pg.Pool;
  /** LISTENs for run events on one connection of the pool (released by the server). */
  readonly pgSubscriber: PgSubscriber;
  /** current_database(), read once at start-up: role names are `<database>$<nickname>`. */
  readonly database: string;
  readonly identities: RequestIdentities;
  readonly limits: QueryLimits;
  /** Largest request body in bytes. */
  readonly maxRequestBytes: number;
  readonly logger: Logger;
}

/** `id` stays `id` (PostGraphile renames it `rowId` to make room for Relay's global ids). */
const PlainIdsPlugin: GraphileConfig.Plugin = {
  name: 'HardcronPlainIdsPlugin',
  version: '1.0.0',
  inflection: {
    replace: {
      _attributeName(previous, _options, details) {
        return previous!.call(this, { ...details, skipRowId: true });
      },
    },
  },
};

/**
 * The PostGraphile preset of the GraphQL server. The schema is schema `api` only, introspected
 * as $client: it holds exactly the views and shims a client may use. Each request runs as the
 * role of its verified token (or $anonymous), set by PostGraphile with SET LOCAL ROLE through
 * `pgSettings.role`; the verified claims travel as `request.jwt.claims` for convenience only.
 */
export function makePreset(options: PresetOptions): GraphileConfig.Preset {
  const { pool, database, identities } = options;
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset],
    plugins: [PlainIdsPlugin, RunEventsPlugin, makeGuardsPlugin(options.limits, identities)],
    // Global object ids would add a second way to name every row; ids are plain bigints here
    // (and Query.query, a Relay convenience, has nothing to offer without them).
    disablePlugins: ['NodePlugin', 'QueryQueryPlugin'],
    pgServices: [
      makePgService({
        pool,
        pgSubscriber: options.pgSubscriber,
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
      maskError: makeMaskError(options.logger),
    },
    grafast: {
      explain: false,
      async context(requestContext) {
        const identity = await identities.of(requestContext);
        return {
          hardcronIdentity: identity,
          pgSettings: {
            role: identity.role,
            ...(identity.claims && { 'request.jwt.claims': JSON.stringify(identity.claims) }),
          },
        };
      },
    },
  };
}
