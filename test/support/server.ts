import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createClient, type Client as WsClient } from 'graphql-ws';
import { SignJWT, type JWTPayload } from 'jose';
import { pino } from 'pino';
import WebSocket from 'ws';
import { startGraphQLServer, type GraphQLServerOptions, type RunningGraphQLServer } from '../../server/api/server.ts';
import type { TestDatabase } from './database.ts';

export const TEST_JWT_SECRET = 'test-secret-0123456789abcdef0123456789';

/** The URL that logs in as the database's $authenticator (with a fresh password). */
export async function authenticatorUrl(db: TestDatabase): Promise<string> {
  const password = randomBytes(12).toString('hex');
  await db.admin.query(`alter role ${db.admin.escapeIdentifier(db.role('authenticator'))} password ${db.admin.escapeLiteral(password)}`);
  return db.urlFor(db.role('authenticator'), password);
}

/** A real GraphQL server on a free port, logging in as $authenticator; stop it with `stop()`. */
export async function startTestServer(db: TestDatabase, options: Partial<GraphQLServerOptions> = {}): Promise<RunningGraphQLServer> {
  return startGraphQLServer({
    connectionString: await authenticatorUrl(db),
    auth: { secret: TEST_JWT_SECRET },
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    port: 0,
    ...options,
  });
}

/**
 * An HS256 token for `role` (a nickname), issued now and valid for an hour unless the claims say
 * otherwise (`iat: undefined` leaves `iat` out).
 */
export async function tokenFor(role: unknown, claims: JWTPayload = {}, secret = TEST_JWT_SECRET): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ role, iat: now, exp: now + 3600, ...claims } as JWTPayload)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(new TextEncoder().encode(secret));
}

/** The text of an operation in graphql/ (e.g. `operation('schedule-job')`). */
export function operation(name: string): string {
  return readFileSync(fileURLToPath(new URL(`../../graphql/${name}.graphql`, import.meta.url)), 'utf8');
}

export interface GraphQLResponse<T = Record<string, unknown>> {
  status: number;
  body: { data?: T | null; errors?: Array<{ message: string; extensions?: Record<string, unknown>; path?: unknown[] }> };
  headers: Headers;
}

/** POSTs a GraphQL request, with a bearer token when given (an empty string sends none). */
export async function graphql<T = Record<string, unknown>>(
  server: { url: string },
  query: string,
  variables: Record<string, unknown> = {},
  token = '',
): Promise<GraphQLResponse<T>> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  let body: GraphQLResponse<T>['body'];
  try {
    body = JSON.parse(text) as GraphQLResponse<T>['body'];
  } catch {
    throw new Error(`not JSON (HTTP ${response.status}): ${text.slice(0, 500)}`);
  }
  return { status: response.status, body, headers: response.headers };
}

/** Data of a request that must succeed; fails the test with the errors otherwise. */
export async function data<T = Record<string, unknown>>(
  server: { url: string },
  query: string,
  variables: Record<string, unknown> = {},
  token = '',
): Promise<T> {
  const { status, body } = await graphql<T>(server, query, variables, token);
  if (status !== 200 || body.errors || !body.data) throw new Error(`GraphQL request failed (HTTP ${status}): ${JSON.stringify(body)}`);
  return body.data;
}

/** A graphql-ws client over a real websocket, authenticating through connectionParams. */
export function wsClient(server: { url: string }, token = ''): WsClient {
  return createClient({
    url: `${server.url.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: token ? { authorization: `Bearer ${token}` } : {},
    retryAttempts: 0,
    lazy: true,
  });
}

export interface Subscription<T> {
  /** Everything received so far. */
  readonly events: T[];
  /** Errors the subscription ended with (empty while it runs or after a clean end). */
  readonly errors: unknown[];
  /** Resolves when the server ends the subscription (complete or error). */
  readonly ended: Promise<void>;
  /** Waits until `count` events have arrived (fails after `timeoutMs`). */
  waitForEvents(count: number, timeoutMs?: number): Promise<T[]>;
  stop(): void;
}

/** Subscribes and collects events. */
export function subscribe<T>(client: WsClient, query: string, variables: Record<string, unknown> = {}): Subscription<T> {
  const events: T[] = [];
  const errors: unknown[] = [];
  const waiters: Array<() => void> = [];
  let end!: () => void;
  const ended = new Promise<void>((resolve) => {
    end = resolve;
  });
  const notify = (): void => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  const stop = client.subscribe<T>(
    { query, variables },
    {
      next: (result) => {
        if (result.errors) errors.push(...result.errors);
        if (result.data) events.push(result.data);
        notify();
      },
      error: (error) => {
        errors.push(error);
        end();
        notify();
      },
      complete: () => {
        end();
        notify();
      },
    },
  );
  return {
    events,
    errors,
    ended,
    stop,
    async waitForEvents(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (events.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} events, got ${JSON.stringify(events)} (errors: ${JSON.stringify(errors)})`);
        await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), new Promise((resolve) => setTimeout(resolve, 100))]);
      }
      return events;
    },
  };
}
