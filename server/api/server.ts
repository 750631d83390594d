import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import pg from 'pg';
import { postgraphile, type PostGraphileInstance } from 'postgraphile';
import { grafserv } from 'postgraphile/grafserv/express/v4';
import { pinSearchPath } from '../db/connect.ts';
import { sessionConfig } from '../db/session.ts';
import { checkRuntimeLogin } from '../db/login.ts';
import type { Logger } from '../logger.ts';
import { checkWholeNumber, LOOPBACK } from '../settings.ts';
import { AuthError, createTokenVerifier, type AuthOptions } from './auth.ts';
import { checkCorsOrigins, corsPolicy } from './cors.ts';
import { DASHBOARD_PATH, dashboardRouter } from './dashboard.ts';
import { anonymousRequests, DATABASE_TROUBLE, DatabaseHealth, requestIds } from './errors.ts';
import { makePreset } from './graphile.config.ts';
import { RunEventPump } from './run-events.ts';
import { ServerMetrics } from './metrics.ts';
import { DEFAULT_QUERY_LIMITS, type QueryLimits } from './guards.ts';
import { RequestIdentities } from './identity.ts';
import { POOL_SIZE, resolveRequestLimits, type RequestLimits } from './limits.ts';
import { UserDirectory } from './users.ts';

/**
 * The server's settings. The request limits (`statementTimeoutMs`, `lockTimeoutMs`,
 * `connectionsPerUser`, `queuedPerUser`; see limits.ts) default to 15 s, 5 s, a quarter of the
 * pool and 50.
 */
export interface GraphQLServerOptions extends Partial<RequestLimits> {
  /** Logs in as the database's $authenticator (never a superuser). */
  readonly connectionString: string;
  readonly auth: AuthOptions;
  readonly logger: Logger;
  /** Default 5678; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Connections in the pool (default 10). */
  readonly poolSize?: number;
  /** Largest request body in bytes (default 100,000). */
  readonly maxRequestBytes?: number;
  readonly limits?: Partial<QueryLimits>;
  /**
   * Origins whose pages may call /graphql from a browser (CORS), each exact, such as
   * https://app.example.com. None (the default): no CORS headers, same-origin pages only.
   */
  readonly corsOrigins?: readonly string[];
}

export interface RunningGraphQLServer {
  /** Base URL, e.g. http://127.0.0.1:5678 (GraphiQL at /, GraphQL at /graphql). */
  readonly url: string;
  readonly database: string;
  readonly pgl: PostGraphileInstance;
  stop(): Promise<void>;
}

/** Starts the GraphQL server: express 5, grafserv, PostGraphile over schema api. */
export async function startGraphQLServer(options: GraphQLServerOptions): Promise<RunningGraphQLServer> {
  const { logger } = options;
  // Checked before anything connects: a bad limit is a ConfigError naming it.
  const poolSize = checkWholeNumber('poolSize', options.poolSize ?? POOL_SIZE.default, POOL_SIZE);
  const requestLimits = resolveRequestLimits(poolSize, options);
  const corsOrigins = options.corsOrigins?.length ? checkCorsOrigins('corsOrigins', options.corsOrigins) : null;
  const pool = new pg.Pool({
    ...sessionConfig(options.connectionString, 'hardcron server'),
    max: poolSize,
    // pg-pool awaits this before it hands out a new connection (the types say void).
    onConnect: pinSearchPath,
  });
  const health = new DatabaseHealth(logger);
  // A connection that breaks (a failover, a restart, a cut link) makes its client emit 'error',
  // and an 'error' event nobody listens to ends the process. pg-pool listens only while a client
  // is idle in the pool; this listener stays for the client's whole life, checked out (inside a
  // request's transaction, or as the run event reader's LISTEN connection) or not. The failure
  // itself reaches the query that was running, or the next one ("not queryable"); the pool then
  // discards the client on release and connects anew on demand.
  pool.on('connect', (client) => {
    health.reachable();
    client.on('error', (error) => health.unavailable(error, 'a pooled connection'));
  });
  pool.on('error', (error) => health.unavailable(error, 'an idle pooled connection'));
  const runEvents = new RunEventPump(pool, logger, health);
  try {
    const database = await checkRuntimeLogin(pool, 'authenticator', 'the server', options.connectionString);
    const identities = new RequestIdentities(createTokenVerifier(options.auth, database), new UserDirectory(pool, database));
    const pgl = postgraphile(
      makePreset({
        pool,
        runEvents,
        database,
        identities,
        limits: { ...DEFAULT_QUERY_LIMITS, ...options.limits },
        requestLimits,
        maxRequestBytes: options.maxRequestBytes ?? 100_000,
        logger,
        health,
      }),
    );
    const serv = pgl.createServ(grafserv);
    const app = express();
    app.disable('x-powered-by');
    const metrics = new ServerMetrics(pool);
    app.use(assignRequestId);
    app.use(metrics.middleware);
    app.get('/metrics', (_req, res) => {
      metrics.registry.metrics().then(
        (text) => res.type(metrics.registry.contentType).send(text),
        () => res.status(500).type('text/plain').send('metrics unavailable\n'),
      );
    });
    app.get('/favicon.ico', (_req, res) => {
      res.status(204).end(); // none; answered so that browsers do not log a 404
    });
    app.get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    });
    app.get('/readyz', (_req, res) => {
      // Ready means writable: behind the address after a failover may be a standby (in recovery)
      // or a database set read-only, where every mutation would fail.
      pool
        .query<{ recovery: boolean; read_only: string }>(
          `select pg_catalog.pg_is_in_recovery() as recovery, pg_catalog.current_setting('transaction_read_only') as read_only`,
        )
        .then(
          ({ rows }) => {
            if (rows[0]?.recovery === true || rows[0]?.read_only === 'on') {
              health.readOnly(null, '/readyz');
              res.status(503).json({ status: 'unready', code: DATABASE_TROUBLE['read-only'].code });
              return;
            }
            health.writable();
            res.json({ status: 'ready' });
          },
          (error: unknown) => {
            const trouble = health.note(error, '/readyz') ?? 'unavailable';
            res.status(503).json({ status: 'unready', code: DATABASE_TROUBLE[trouble].code });
          },
        );
    });
    // The web dashboard (web/, built by npm install): a static page that talks to /graphql.
    app.use(DASHBOARD_PATH, dashboardRouter());
    // Before the token check: a preflight carries no token, and a 401 must carry the CORS headers
    // for the page to read its code.
    if (corsOrigins) app.use('/graphql', corsPolicy(corsOrigins));
    app.use('/graphql', authenticate(identities, logger, health));
    const server = createServer(app);
    // Upgraded (websocket) connections are not closed by server.close(): track every socket.
    const sockets = new Set<Socket>();
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await serv.addTo(app, server);
    await pgl.getSchema(); // fail at start-up, not at the first request
    await listen(server, options.port ?? 5678, options.host ?? LOOPBACK);
    const address = server.address() as AddressInfo;
    const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    logger.info({ url, database }, 'GraphQL server listening');
    return {
      url,
      database,
      pgl,
      async stop() {
        logger.debug('stopping: closing connections');
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await closed;
        logger.debug('stopping: releasing PostGraphile');
        await pgl.release(); // releases grafserv too, but not the database service
        await runEvents.stop();
        logger.debug('stopping: closing the pool');
        await pool.end();
        logger.info('GraphQL server stopped');
      },
    };
  } catch (error) {
    await runEvents.stop();
    await pool.end().catch(() => {});
    throw error;
  }
}

function assignRequestId(req: Request, res: Response, next: NextFunction): void {
  const requestId = randomUUID();
  res.setHeader('x-request-id', requestId);
  requestIds.run(requestId, next);
}

/**
 * Verifies the bearer token of every GraphQL HTTP request before grafserv sees it: a bad token
 * is a 401 with a GraphQL error body, and nothing reaches PostgreSQL.
 */
function authenticate(identities: RequestIdentities, logger: Logger, health: DatabaseHealth) {
  return (req: Request, res: Response, next: NextFunction): void => {
    identities.authenticateHttp(req).then(
      // Remembered for the error mapping: a refusal of an anonymous request says a token is missing.
      (identity) => anonymousRequests.run(identity.nickname === null, next),
      (error: unknown) => {
        if (error instanceof AuthError) {
          res.status(401).setHeader('www-authenticate', 'Bearer error="invalid_token"');
          res.json({ errors: [{ message: error.message, extensions: { code: error.code } }] });
          return;
        }
        // The token was good, but the user directory could not be asked: logged once per outage.
        const trouble = health.note(error, 'the token check');
        if (trouble) {
          res.status(503).json({ errors: [{ message: DATABASE_TROUBLE[trouble].message, extensions: { code: DATABASE_TROUBLE[trouble].code } }] });
          return;
        }
        logger.error({ err: error, requestId: res.getHeader('x-request-id') }, 'token check failed');
        res.status(503).json({ errors: [{ message: 'the server cannot check tokens right now', extensions: { code: 'HC_UNAVAILABLE' } }] });
      },
    );
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
