import { parseArgs } from 'node:util';
import { jwtMaxTtlSeconds, requiredUrl, wholeNumber } from '../config.ts';
import { requestLimitsFromEnv } from '../api/limits.ts';
import { startGraphQLServer } from '../api/server.ts';
import { stopOnSignals } from '../signals.ts';
import { createLogger } from '../logger.ts';
import type { Command } from './command.ts';

export const serverCommand: Command = {
  summary: 'serve the GraphQL API and GraphiQL (a long-running process)',
  help: `Usage: hardcron server [--port N] [--host HOST]

Connects as the database's $authenticator role and serves GraphQL at /graphql (websockets for
subscriptions on the same path) and GraphiQL at /. Each request runs as the user named by the
"role" claim of its bearer token, or as $anonymous without a token.

Environment (flags win):
  SERVER_DATABASE_URL  postgres://<db>$authenticator:<password>@host/<db> (required)
  JWT_SECRET           HS256 secret, at least 32 bytes (JWT_SECRET and/or JWKS_URL required)
  JWKS_URL             JSON Web Key Set for RS256/ES256 tokens
  JWT_AUDIENCE         when set, tokens must carry this audience
  JWT_ISSUER           when set, tokens must carry this issuer
  JWT_MAX_TTL          longest token lifetime accepted, e.g. 90m, 24h, 7d (default 24h)
  PORT                 port to listen on (default 5678)
  HOST                 address to listen on (default 127.0.0.1)
  HARDCRON_SERVER_POOL_SIZE  database connections (default 10)
  HARDCRON_SERVER_STATEMENT_TIMEOUT_MS  longest statement of a request (default 15000): HC_TIMEOUT
  HARDCRON_SERVER_LOCK_TIMEOUT_MS       longest lock wait of a request (default 5000): HC_LOCK_TIMEOUT
  HARDCRON_SERVER_CONNECTIONS_PER_USER  connections one user may hold (default: a quarter of the pool)
  HARDCRON_SERVER_QUEUE_PER_USER        a user's work that may wait for them (default 50): HC_BUSY beyond
  LOG_LEVEL            pino level (default info)`,

  async run(args) {
    const { values } = parseArgs({
      args: [...args],
      options: { port: { type: 'string' }, host: { type: 'string' } },
      strict: true,
    });
    const env = process.env;
    const connectionString = requiredUrl(env, 'SERVER_DATABASE_URL', 'the URL of the $authenticator role');
    const port = wholeNumber('--port', values.port ?? env.PORT, 0, 65535);
    const poolSize = wholeNumber('HARDCRON_SERVER_POOL_SIZE', env.HARDCRON_SERVER_POOL_SIZE, 1, 1000);
    const logger = createLogger('hardcron-server');
    const server = await startGraphQLServer({
      connectionString,
      logger,
      auth: {
        secret: env.JWT_SECRET || undefined,
        jwksUrl: env.JWKS_URL || undefined,
        audience: env.JWT_AUDIENCE || undefined,
        issuer: env.JWT_ISSUER || undefined,
        maxTtlSeconds: jwtMaxTtlSeconds(env),
      },
      ...(port !== undefined && { port }),
      ...((values.host ?? env.HOST) && { host: values.host ?? env.HOST }),
      ...(poolSize !== undefined && { poolSize }),
      ...requestLimitsFromEnv(env),
    });
    stopOnSignals(() => server.stop(), logger);
    await new Promise(() => {}); // serves until a signal stops the process
  },
};
