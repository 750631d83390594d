import { parseArgs } from 'node:util';
import { serverConfig } from '../config.ts';
import { startGraphQLServer } from '../api/server.ts';
import { stopOnSignals } from '../signals.ts';
import { POOL_SIZE, REQUEST_LIMITS } from '../api/limits.ts';
import { createLogger, DEFAULT_LOG_LEVEL } from '../logger.ts';
import { LOOPBACK } from '../settings.ts';
import type { Command } from './command.ts';

export const serverCommand: Command = {
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
  HOST                 address to listen on (default ${LOOPBACK})
  CORS_ORIGINS         origins whose pages may call /graphql from a browser, exact and comma-separated,
                       e.g. https://app.example.com (default: none, no CORS headers)
  HARDCRON_SERVER_POOL_SIZE  database connections (default ${POOL_SIZE.default})
  HARDCRON_SERVER_STATEMENT_TIMEOUT_MS  longest statement of a request (default ${REQUEST_LIMITS.statementTimeoutMs.default}): HC_TIMEOUT
  HARDCRON_SERVER_LOCK_TIMEOUT_MS       longest lock wait of a request (default ${REQUEST_LIMITS.lockTimeoutMs.default}): HC_LOCK_TIMEOUT
  HARDCRON_SERVER_CONNECTIONS_PER_USER  connections one user may hold (default: a quarter of the pool)
  HARDCRON_SERVER_QUEUE_PER_USER        a user's work that may wait for them (default ${REQUEST_LIMITS.queuedPerUser.default}): HC_BUSY beyond
  LOG_LEVEL            pino level (default ${DEFAULT_LOG_LEVEL})`,

  async run(args, env) {
    const { values } = parseArgs({
      args: [...args],
      options: { port: { type: 'string' }, host: { type: 'string' } },
      strict: true,
    });
    const config = serverConfig(env, values);
    const logger = createLogger('hardcron-server', config.logLevel);
    const server = await startGraphQLServer({ ...config.server, logger });
    stopOnSignals(() => server.stop(), logger);
    await new Promise(() => {}); // serves until a signal stops the process
  },
};
