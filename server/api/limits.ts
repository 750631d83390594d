import type { PgClient, WithPgClient } from 'postgraphile/@dataplan/pg';
import { LimitError } from '../errors.ts';
import { checkWholeNumber, type WholeSetting, type WholeSettingWithDefault } from '../settings.ts';

/**
 * What one GraphQL request may take from the database. Timeouts are PostgreSQL's, set per
 * request as transaction-local settings; the share is of the server's connection pool.
 */
export interface RequestLimits {
  /** statement_timeout of every statement of a request, in ms (default 15,000): then HC_TIMEOUT. */
  readonly statementTimeoutMs: number;
  /** lock_timeout of every lock wait of a request, in ms (default 5,000): then HC_LOCK_TIMEOUT. */
  readonly lockTimeoutMs: number;
  /** Pool connections one user may hold at once (default: a quarter of the pool, at least 1). */
  readonly connectionsPerUser: number;
  /** A user's database work that may wait for one of its connections (default 50); beyond it, HC_BUSY. */
  readonly queuedPerUser: number;
}

/**
 * Bounds and defaults of the request limits: the server applies the defaults, and both the
 * server (options given by a program) and the configuration (HARDCRON_SERVER_*) check the
 * bounds from here. A timeout of 0 would switch PostgreSQL's timeout off, which is exactly what
 * these are here to prevent.
 */
export const REQUEST_LIMITS = {
  statementTimeoutMs: { min: 1, max: 3_600_000, default: 15_000 },
  lockTimeoutMs: { min: 1, max: 3_600_000, default: 5_000 },
  /** Default: defaultConnectionsPerUser(poolSize). */
  connectionsPerUser: { min: 1, max: 1000 },
  queuedPerUser: { min: 0, max: 100_000, default: 50 },
} as const satisfies Record<keyof RequestLimits, WholeSetting & { readonly default?: number }>;

/** Connections in the server's pool. */
export const POOL_SIZE: WholeSettingWithDefault = { min: 1, max: 1000, default: 10 };

/** A quarter of the pool, at least 1: four users at once can use the whole pool, no fewer. */
export function defaultConnectionsPerUser(poolSize: number): number {
  return Math.max(1, Math.floor(poolSize / 4));
}

/** The limits with every default filled in; a value out of range is a ConfigError naming it. */
export function resolveRequestLimits(poolSize: number, given: Partial<RequestLimits> = {}): RequestLimits {
  const limits: RequestLimits = {
    statementTimeoutMs: given.statementTimeoutMs ?? REQUEST_LIMITS.statementTimeoutMs.default,
    lockTimeoutMs: given.lockTimeoutMs ?? REQUEST_LIMITS.lockTimeoutMs.default,
    connectionsPerUser: given.connectionsPerUser ?? defaultConnectionsPerUser(poolSize),
    queuedPerUser: given.queuedPerUser ?? REQUEST_LIMITS.queuedPerUser.default,
  };
  for (const name of Object.keys(REQUEST_LIMITS) as Array<keyof RequestLimits>) checkWholeNumber(name, limits[name], REQUEST_LIMITS[name]);
  return limits;
}

/**
 * The timeouts as pgSettings: PostGraphile applies pgSettings with set_config(…, true) at the
 * start of each transaction, so they hold for that request's statements and end with it; a
 * pooled connection never carries them into the next request.
 */
export function timeoutSettings(limits: RequestLimits): Record<string, string> {
  return { statement_timeout: String(limits.statementTimeoutMs), lock_timeout: String(limits.lockTimeoutMs) };
}

interface Share {
  /** Connections the user holds (or is being handed). */
  active: number;
  /** Work waiting for one of them, first come first served. */
  readonly waiting: Array<() => void>;
}

/**
 * Each user's share of the server's pool. Every database use of a GraphQL request goes through
 * the `withPgClient` in its context (queries, mutations, and the re-reads of subscriptions, over
 * HTTP and websockets alike), and this wraps it: a user's work holds at most
 * `connectionsPerUser` connections at once, further work waits in the user's own line, and work
 * beyond `queuedPerUser` waiting is refused at once with HC_BUSY. So one user whose requests are
 * slow or blocked (on a lock its own psql session holds, say) cannot take the connections that
 * other users' requests need. Users are told apart by the role a request runs as: every caller
 * without a token is $anonymous, one user.
 */
export class ConnectionShares {
  private readonly shares = new Map<string, Share>();

  constructor(private readonly limits: Pick<RequestLimits, 'connectionsPerUser' | 'queuedPerUser'>) {}

  /** `withPgClient` for the requests of `user`, within the user's share. */
  wrap<TClient extends PgClient>(user: string, withPgClient: WithPgClient<TClient>): WithPgClient<TClient> {
    return <T>(pgSettings: Record<string, string | undefined> | null, callback: (client: TClient) => T | Promise<T>): Promise<T> =>
      this.run(user, () => withPgClient(pgSettings, callback));
  }

  /** Runs `work` once `user` has a free slot; refuses with HC_BUSY when the user's line is full. */
  async run<T>(user: string, work: () => Promise<T>): Promise<T> {
    await this.acquire(user);
    try {
      return await work();
    } finally {
      this.release(user);
    }
  }

  /** Connections in use and work waiting, of one user (for tests and metrics). */
  usage(user: string): { active: number; waiting: number } {
    const share = this.shares.get(user);
    return { active: share?.active ?? 0, waiting: share?.waiting.length ?? 0 };
  }

  private acquire(user: string): Promise<void> {
    let share = this.shares.get(user);
    if (!share) {
      share = { active: 0, waiting: [] };
      this.shares.set(user, share);
    }
    if (share.active < this.limits.connectionsPerUser) {
      share.active++;
      return Promise.resolve();
    }
    if (share.waiting.length >= this.limits.queuedPerUser) {
      return Promise.reject(
        new LimitError(
          'HC_BUSY',
          `too many requests of yours are running at once: ${this.limits.connectionsPerUser} may use the database ` +
            `and ${this.limits.queuedPerUser} more may wait; try again when some have finished`,
        ),
      );
    }
    const waiting = share.waiting;
    return new Promise<void>((resolve) => waiting.push(resolve));
  }

  private release(user: string): void {
    const share = this.shares.get(user);
    if (!share) return;
    const next = share.waiting.shift();
    if (next) {
      next(); // the slot passes to the next in line: `active` stays
      return;
    }
    share.active--;
    if (share.active === 0) this.shares.delete(user); // idle users cost no memory
  }
}
