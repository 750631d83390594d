import { Client, cacheExchange, fetchExchange, mapExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import { apiErrors, isAuthFailure } from './errors.ts';

export interface Connection {
  readonly client: Client;
  dispose(): void;
}

/**
 * One urql client per signed-in token: HTTP requests carry it as a bearer header, and the one
 * websocket (graphql-ws, opened with the first subscription) sends it in connectionParams, as
 * the server expects. Both go to this page's own origin. A response saying the token is no good
 * (expired, unknown user…) calls `onAuthFailure` once.
 */
export function connect(token: string, onAuthFailure: (message: string) => void): Connection {
  const authorization = `Bearer ${token}`;
  let failed = false;
  const fail = (message: string): void => {
    if (failed) return;
    failed = true;
    onAuthFailure(message);
  };
  const ws = createWsClient({
    url: `${window.location.protocol === 'https:' ? 'wss' : 'ws'}://${window.location.host}/graphql`,
    connectionParams: { Authorization: authorization },
    lazy: true,
    // A server restart or a network hiccup: reconnect (with graphql-ws's backoff); the pages
    // fetch what they show again when their subscription resumes.
    retryAttempts: 1_000,
    shouldRetry: () => !failed,
  });
  const client = new Client({
    url: '/graphql',
    preferGetMethod: false,
    requestPolicy: 'cache-and-network',
    fetchOptions: () => ({ headers: { authorization } }),
    exchanges: [
      mapExchange({
        onError(error) {
          const refused = apiErrors(error).find((e) => isAuthFailure(e.code));
          if (refused) fail(refused.message);
        },
      }),
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? '' };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return {
    client,
    dispose() {
      failed = true;
      void ws.dispose();
    },
  };
}

/**
 * Asks the server whether a token is good before the page keeps it: a refused token gets its
 * HTTP 401 and the server's reason (extensions.code HC_AUTH_…). Null when it is good.
 */
export async function checkToken(token: string): Promise<string | null> {
  let response: Response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
  } catch {
    return 'The server could not be reached. Try again in a moment.';
  }
  if (response.ok) return null;
  const body = (await response.json().catch(() => null)) as { errors?: Array<{ message?: string; extensions?: { code?: string } }> } | null;
  const first = body?.errors?.[0];
  return first?.message ? `${first.message}${first.extensions?.code ? ` (${first.extensions.code})` : ''}` : `The server refused the token (HTTP ${response.status}).`;
}
