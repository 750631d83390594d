import type { IncomingMessage } from 'node:http';
import type {} from 'postgraphile/grafserv/node'; // Grafast.RequestContext's node and ws
import { AuthError, type Identity, type VerifyAuthorization } from './auth.ts';
import type { UserDirectory } from './users.ts';

declare global {
  namespace Grafast {
    interface Context {
      /** Who the request runs as (set by the server's context callback). */
      hardcronIdentity?: Identity;
    }
  }
}

/**
 * Who a request is, decided once per HTTP request (before GraphQL sees it) or once per
 * websocket connection (from `connectionParams.authorization`, since browsers cannot send
 * headers on websockets). Every failure is an AuthError; nothing has reached PostgreSQL then,
 * except the user directory's "may $authenticator become this role" question for valid tokens.
 */
export class RequestIdentities {
  private readonly httpIdentities = new WeakMap<IncomingMessage, Identity>();
  private readonly wsIdentities = new WeakMap<object, Promise<Identity>>();

  constructor(
    private readonly verify: VerifyAuthorization,
    private readonly users: UserDirectory,
  ) {}

  /** Verifies an HTTP request's token and remembers the answer for the GraphQL context. */
  async authenticateHttp(req: IncomingMessage): Promise<Identity> {
    const identity = await this.identify(headerValue(req.headers.authorization));
    this.httpIdentities.set(req, identity);
    return identity;
  }

  /** The identity of a GraphQL request (HTTP or websocket). */
  async of(requestContext: Partial<Grafast.RequestContext>): Promise<Identity> {
    const req = requestContext.node?.req;
    if (req) return this.httpIdentities.get(req) ?? this.authenticateHttp(req);
    const params = requestContext.ws?.connectionParams;
    if (!params) return this.identify(undefined);
    let identity = this.wsIdentities.get(params);
    if (!identity) {
      identity = this.identify(connectionAuthorization(requestContext.ws?.normalizedConnectionParams));
      this.wsIdentities.set(params, identity);
      // A refusal stands for the connection; a failure to ask (the database away) does not, or the
      // connection's later subscriptions would fail after the database is back.
      const asked = identity;
      asked.catch((error: unknown) => {
        if (!(error instanceof AuthError) && this.wsIdentities.get(params) === asked) this.wsIdentities.delete(params);
      });
    }
    return identity;
  }

  private async identify(authorization: string | undefined): Promise<Identity> {
    const identity = await this.verify(authorization);
    await this.users.requireAssumable(identity);
    return identity;
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

/** `authorization` in the graphql-ws connection parameters (keys are lower-cased by grafserv). */
function connectionAuthorization(params: Record<string, unknown> | undefined): string | undefined {
  const value = params?.authorization;
  return typeof value === 'string' ? value : undefined;
}
