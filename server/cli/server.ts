import { parseArgs } from 'node:util';
import { requiredUrl, wholeNumber } from '../config.ts';
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
  PORT                 port to listen on (default 5678)
  HOST                 address to listen on (default 127.0.0.1)
  HARDCRON_SERVER_POOL_SIZE  database connections (default 10)
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
      },
      ...(port !== undefined && { port }),
      ...((values.host ?? env.HOST) && { host: values.host ?? env.HOST }),
      ...(poolSize !== undefined && { poolSize }),
    });
    stopOnSignals(() => server.stop(), logger);
    await new Promise(() => {}); // serves until a signal stops the process
  },
};
