import type pg from 'pg';
import type { WithPgClient } from 'postgraphile/@dataplan/pg';
import { context, lambda, listen, type GrafastSubscriber } from 'postgraphile/grafast';
import { extendSchema } from 'postgraphile/utils';
import { HardcronError } from '../errors.ts';
import { databaseTrouble, type DatabaseHealth } from './errors.ts';
import type { Logger } from '../logger.ts';
import type { Identity } from './auth.ts';

/** The channel the executor notifies on (code.notify_run in sql/routines/code/run_events.sql); its payload is always empty. */
export const RUN_EVENTS_CHANNEL = 'hardcron_run_events';

/** At most one question to the database per this many milliseconds, however many notifications arrive. */
export const PUMP_INTERVAL_MS = 100;
/** Ids one question reads at most (server.run_events_since refuses more). */
const IDS_PER_QUESTION = 10_000;
/** How long an id the log skipped (taken by a transaction not yet committed) is waited for. */
const MISSING_FOR_MS = 10 * 60_000;
/** Waits between attempts to listen again, or to read again, after the database went away: from the first to the last, doubling. */
const RETRY_FIRST_MS = 200;
const RETRY_LAST_MS = 10_000;
/** Skipped ids remembered at most; the oldest are given up first. */
const MAX_MISSING = 10_000;
/**
 * Ids (not events) a catch-up from `after` covers per statement: each statement then costs a
 * bounded number of lookups, whatever the caller may see (api.job_run_events cannot return its
 * rows in id order without reading the whole range first).
 */
const CATCH_UP_WINDOW = 5_000n;
/**
 * After the listening connection was lost, the pump announces again the last this-many ids below
 * where it stood: a failover to a standby that had not received the newest events loses them,
 * and the new primary gives their ids to new events, which would otherwise never be announced.
 * Each subscription skips what it has already delivered (the same id logged at the same time).
 */
const REANNOUNCE_IDS = 10_000n;
/** Deliveries a subscription remembers, to skip them when they are announced again. */
const REMEMBERED_DELIVERIES = 20_000;
const MAX_BIGINT = 9223372036854775807n;

/**
 * A subscription the server refuses: `HC_AUTH_REQUIRED` (no token: run events are for users),
 * `HC_BAD_ARGUMENT` (jobId or after is not a bigint), `HC_UNAVAILABLE` (the server is stopping).
 */
export class SubscriptionError extends HardcronError {}

/**
 * What one question to the log found: ids in (`from`, `to`] committed since the question before,
 * except `missing` (taken by transactions that had not committed), and `late`: ids at or below
 * `from` that were missing before and are committed now.
 */
export interface Announcement {
  readonly from: bigint;
  readonly to: bigint;
  readonly missing: readonly bigint[];
  readonly late: readonly bigint[];
}

/** Where the log stood when a listener registered; announcements cover everything after it. */
export interface Registration {
  readonly head: bigint;
  readonly missing: readonly bigint[];
  unregister(): void;
}

/**
 * The server's one reader of the event log, shared by every subscription.
 *
 * It LISTENs on hardcron_run_events on one connection of the pool. A notification carries
 * nothing and anyone may send one, so it only means "look": the pump looks at most once per
 * PUMP_INTERVAL_MS, however many arrive, with one question as $authenticator
 * (server.run_events_since: which event ids have committed since I last looked?). Only when the
 * answer names new ids does it announce them, and only then does each subscription read, once,
 * through api.job_run_events as its subscriber. A flood of forged notifications therefore costs
 * one cheap question per interval and no subscriber reads at all.
 *
 * Identity values are taken at insert and committed later, so an event with a smaller id can
 * commit after one with a larger id (a batch of runs commits after its last run; a claim may
 * commit in between). A cursor "id > last seen" would skip it for good. So the pump remembers
 * the ids it passed that were not committed yet (`missing`: the gaps below its head), asks
 * about them again at each question, and announces each one once, when it commits. A gap is
 * waited for MISSING_FOR_MS (a rolled-back id never commits), and at most MAX_MISSING are kept.
 * Each id is announced exactly once, and an event of a run cannot be announced before the
 * run's earlier events: its transaction began after theirs committed.
 *
 * When its connection breaks (the database restarts or fails over), the pump keeps its head and
 * its missing ids and listens again with backoff (RETRY_FIRST_MS doubling to RETRY_LAST_MS, also
 * while a read-only standby refuses LISTEN), then asks about everything since its head: what
 * committed while nobody listened is announced then, each id once. Subscriptions stay open
 * meanwhile; they simply receive nothing until the pump listens again.
 */
export class RunEventPump {
  private client: pg.PoolClient | null = null;
  private connecting: Promise<void> | null = null;
  private head: bigint | null = null;
  /** Ids below the head not committed when last asked, with when they were first missed; oldest first. */
  private readonly missing = new Map<bigint, number>();
  private readonly listeners = new Set<(announcement: Announcement) => void>();
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Counts losses: a retry loop begun for an earlier loss stops when a newer one begins. */
  private losses = 0;
  private asking = false;
  private pending = false;
  private lastAskedAt = 0;
  private failures = 0;
  private stopped = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
    private readonly health: DatabaseHealth,
    private readonly intervalMs = PUMP_INTERVAL_MS,
  ) {}

  /**
   * Registers `listener` for every announcement from now on. Resolves once the pump listens,
   * with the head and the missing ids as they stand: what is announced afterwards is exactly the
   * ids above the head and those missing ids, as they commit.
   */
  async register(listener: (announcement: Announcement) => void): Promise<Registration> {
    await this.listening();
    this.listeners.add(listener);
    return {
      head: this.head as bigint,
      missing: [...this.missing.keys()],
      unregister: () => this.listeners.delete(listener),
    };
  }

  /** The oldest logged event id (the newest + 1 when the log is empty): older ids were pruned. */
  async oldest(): Promise<bigint> {
    const { rows } = await this.pool.query<{ oldest: string }>('select b.oldest::text as oldest from server.run_events_bounds() b');
    return BigInt(rows[0]?.oldest ?? '0');
  }

  /** Stops listening and releases the connection; registrations end. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    this.listeners.clear();
    await this.connecting?.catch(() => {});
    const client = this.client;
    this.client = null;
    client?.release(true);
  }

  private async listening(): Promise<void> {
    for (;;) {
      if (this.stopped) throw new SubscriptionError('HC_UNAVAILABLE', 'the server is stopping');
      if (this.client && this.head !== null) return;
      this.connecting ??= this.connect().finally(() => {
        this.connecting = null;
      });
      await this.connecting;
    }
  }

  private async connect(): Promise<void> {
    const client = await this.pool.connect();
    const onError = (error: Error): void => this.lost(client, error);
    const onEnd = (): void => this.lost(client, new Error('the connection ended'));
    client.on('error', onError);
    client.on('end', onEnd);
    client.on('notification', this.onNotification);
    try {
      await client.query(`listen ${RUN_EVENTS_CHANNEL}`);
      // Read after LISTEN: whatever commits from here on is noticed.
      const { rows } = await client.query<{ newest: string }>('select b.newest::text as newest from server.run_events_bounds() b');
      const newest = BigInt(rows[0]?.newest ?? '0');
      if (this.head === null) {
        this.head = newest;
      } else {
        // Listening again: what happened meanwhile may include a failover that lost the newest
        // events, whose ids the new primary hands out again. Announce the recent ids again
        // (REANNOUNCE_IDS); subscriptions skip those they delivered already.
        if (newest < this.head) {
          this.logger.warn(
            { head: this.head.toString(), newest: newest.toString() },
            'run events: the event log went back (a failover lost its newest events); announcing the recent ones again',
          );
        }
        const from = (newest < this.head ? newest : this.head) - REANNOUNCE_IDS;
        this.head = from > 0n ? from : 0n;
        this.missing.clear();
      }
    } catch (error) {
      client.off('error', onError);
      client.off('end', onEnd);
      client.release(true);
      throw error;
    }
    if (this.stopped) {
      client.release(true);
      return;
    }
    this.client = client;
    this.poke(); // after a reconnection: whatever committed while nobody listened
  }

  private lost(client: pg.PoolClient, error: Error): void {
    if (this.client !== client) return;
    this.client = null;
    client.release(true);
    if (this.stopped) return;
    // The outage itself is logged once by `health` (with the pool's own failures); this says
    // what it means for subscriptions, once per loss, not once per attempt.
    this.health.note(error, 'the run event reader');
    this.logger.info({ err: error }, 'run events: the listening connection was lost; listening again when the database answers (subscriptions stay open and miss nothing)');
    clearTimeout(this.retryTimer);
    this.relisten(++this.losses, 0);
  }

  /** Tries to listen again, with backoff, until it does, the pump stops or the connection is lost anew. */
  private relisten(loss: number, attempt: number): void {
    this.retryTimer = undefined;
    if (this.stopped || this.client || loss !== this.losses) return;
    this.listening().then(
      () => this.logger.info({ attempts: attempt + 1 }, 'run events: listening again'),
      (error: unknown) => {
        if (this.stopped || loss !== this.losses) return;
        this.health.note(error, 'the run event reader');
        this.logger.debug({ err: error, attempt }, 'run events: listening again failed; retrying');
        this.retryTimer = setTimeout(() => this.relisten(loss, attempt + 1), retryDelay(attempt)).unref();
      },
    );
  }

  private readonly onNotification = (message: pg.Notification): void => {
    if (message.channel === RUN_EVENTS_CHANNEL) this.poke();
  };

  /** Asks for a question: at most one per interval, never two at once. */
  private poke(): void {
    this.pending = true;
    if (this.asking || this.timer !== undefined || this.stopped) return;
    const backoff = this.failures === 0 ? 0 : Math.min(5_000, this.intervalMs * 2 ** this.failures);
    const wait = Math.max(0, this.lastAskedAt + this.intervalMs + backoff - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.ask();
    }, wait);
  }

  private async ask(): Promise<void> {
    const client = this.client;
    const after = this.head;
    if (!client || after === null) return; // the reconnection asks again
    this.asking = true;
    this.pending = false;
    this.lastAskedAt = Date.now();
    try {
      const { rows } = await client.query<{ id: string }>(
        'select s.id::text as id from server.run_events_since($1::bigint, $2::bigint[], $3::integer) s',
        [after.toString(), [...this.missing.keys()].map(String), IDS_PER_QUESTION],
      );
      this.failures = 0;
      this.record(after, rows.map((row) => BigInt(row.id)));
    } catch (error) {
      if (!this.stopped) {
        this.failures++;
        this.pending = true;
        // A broken connection is the outage `health` logs (and lost() reconnects); anything else
        // is logged when it starts, not at every retry.
        if (!this.health.note(error, 'the run event reader') && this.failures === 1) {
          this.logger.warn({ err: error }, 'run events: reading the log failed; retrying with backoff');
        }
      }
    } finally {
      this.asking = false;
      if (this.pending) this.poke();
    }
  }

  /** Takes an answer in, in one synchronous step (registrations see a consistent head), and announces it. */
  private record(after: bigint, ids: readonly bigint[]): void {
    const now = Date.now();
    const fresh = ids.filter((id) => id > after).sort(compareIds);
    const late = ids.filter((id) => id <= after && this.missing.delete(id)).sort(compareIds);
    const to = fresh.at(-1) ?? after;
    const missing: bigint[] = [];
    let previous = after;
    for (const id of fresh) {
      // Ids skipped between two committed ones; a huge jump (an identity restarted higher) is capped.
      const first = id - previous - 1n > BigInt(MAX_MISSING) ? id - BigInt(MAX_MISSING) : previous + 1n;
      for (let gap = first; gap < id; gap++) missing.push(gap);
      previous = id;
    }
    for (const gap of missing) this.missing.set(gap, now);
    for (const [id, since] of this.missing) {
      if (since >= now - MISSING_FOR_MS && this.missing.size <= MAX_MISSING) break;
      this.missing.delete(id);
    }
    if (fresh.length === IDS_PER_QUESTION) this.pending = true; // more to read
    this.head = to;
    if (fresh.length === 0 && late.length === 0) return;
    const announcement: Announcement = { from: after, to, missing, late };
    for (const listener of this.listeners) listener(announcement);
  }
}

/** The wait before retry `attempt` (0, 1, …): doubling from RETRY_FIRST_MS up to RETRY_LAST_MS, less up to a quarter at random so that servers do not retry in step. */
function retryDelay(attempt: number): number {
  const full = Math.min(RETRY_LAST_MS, RETRY_FIRST_MS * 2 ** Math.min(attempt, 16));
  return full - Math.floor(Math.random() * (full / 4));
}

function compareIds(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

type PgSettings = Record<string, string | undefined> | null | undefined;

/**
 * `jobRunEvents(jobId, after)`: the events of the runs the subscriber may see, each once, as
 * `JobRunEvent` rows read through api.job_run_events as the subscriber. With `after`, the logged
 * events past that id come first (a client resumes after the last id it received).
 */
export function makeRunEventsPlugin(pump: RunEventPump): GraphileConfig.Plugin {
  return extendSchema((build) => {
    const events = build.pgResources.job_run_events;
    if (!events) throw new Error('api.job_run_events is missing from the schema: is the database migrated?');
    return {
      typeDefs: /* GraphQL */ `
        extend type Subscription {
          """
          State changes of the runs you may see: running when a run starts, then its outcome,
          each once, in order for each run. With jobId, that job's runs only. With after (an
          event id), the logged events after it come first: pass the last id you received to
          resume. Needs a token; ends when the token expires.
          """
          jobRunEvents(jobId: BigInt, after: BigInt): JobRunEvent
        }
      `,
      objects: {
        Subscription: {
          plans: {
            jobRunEvents: {
              subscribePlan(_$root, fieldArgs) {
                const $subscriber = lambda(
                  [
                    context().get('withPgClient'),
                    context().get('pgSettings'),
                    context().get('hardcronIdentity'),
                    fieldArgs.getRaw('jobId'),
                    fieldArgs.getRaw('after'),
                  ],
                  ([withPgClient, pgSettings, identity, jobId, after]) =>
                    new RunEventSubscriber(pump, withPgClient as WithPgClient, pgSettings as PgSettings, identity as Identity | undefined, {
                      jobId: bigintArgument('jobId', jobId),
                      after: bigintArgument('after', after),
                    }),
                  true,
                );
                return listen($subscriber, RUN_EVENTS_CHANNEL, ($id) => $id);
              },
              plan($id) {
                return events.get({ id: $id });
              },
            },
          },
        },
      },
    };
  });
}

/** A GraphQL BigInt argument (a string) as a bigint, null when absent; an error (thrown at subscribe) otherwise. */
function bigintArgument(name: string, value: unknown): bigint | null | SubscriptionError {
  if (value === null || value === undefined) return null;
  const text = typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
  if (typeof text === 'string' && /^(0|[1-9][0-9]{0,18})$/.test(text) && BigInt(text) <= MAX_BIGINT) return BigInt(text);
  return new SubscriptionError('HC_BAD_ARGUMENT', `${name} must be an id: a whole number from 0 to ${MAX_BIGINT}`);
}

interface Filter {
  readonly jobId: bigint | null | SubscriptionError;
  readonly after: bigint | null | SubscriptionError;
}

/** Turns a subscription request into a stream of the ids of events its subscriber may see. */
class RunEventSubscriber implements GrafastSubscriber {
  constructor(
    private readonly pump: RunEventPump,
    private readonly withPgClient: WithPgClient,
    private readonly pgSettings: PgSettings,
    private readonly identity: Identity | undefined,
    private readonly filter: Filter,
  ) {}

  async subscribe<TTopic extends string | number>(_topic: TTopic): Promise<AsyncIterableIterator<string>> {
    // Each subscriber costs a read per announcement: only users (who can be held to account and
    // whose token expires) may have one; $anonymous sees no runs anyway.
    if (!this.identity || this.identity.nickname === null) {
      throw new SubscriptionError('HC_AUTH_REQUIRED', 'subscriptions need a token: send "Authorization: Bearer <token>" in the connection parameters');
    }
    const { jobId, after } = this.filter;
    if (jobId instanceof SubscriptionError) throw jobId;
    if (after instanceof SubscriptionError) throw after;
    const stream = new EventStream(this.withPgClient, this.pgSettings, jobId, after, this.identity.expiresAt);
    await stream.start(this.pump);
    return stream;
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ value: undefined, done: true });

/**
 * One subscription's events, read through api.job_run_events as its subscriber: first the
 * logged ones past `after` (page by page, up to where the pump stood when it registered), then,
 * for every announcement, one read of the announced ids. Written as an iterator rather than a
 * generator so that ending the subscription (return()) takes effect while it waits.
 */
class EventStream implements AsyncIterableIterator<string> {
  private readonly ready: string[] = [];
  private readonly announcements: Announcement[] = [];
  private registration: Registration | null = null;
  private catchUp: { cursor: bigint; upTo: bigint; skip: readonly bigint[] } | null = null;
  private wake: (() => void) | null = null;
  private readonly expiry: { cancel(): void } | null;
  private closed = false;
  /** Reads in a row that found the database unavailable. */
  private failedReads = 0;
  /** The latest deliveries, id → the time the event was logged: announced again, they are skipped. */
  private readonly delivered = new Map<string, string>();

  constructor(
    private readonly withPgClient: WithPgClient,
    private readonly pgSettings: PgSettings,
    private readonly jobId: bigint | null,
    private readonly after: bigint | null,
    expiresAt: number | null,
  ) {
    // The subscription ends when the token expires (at once for one already expired within the
    // clock skew the server tolerates).
    this.expiry = expiresAt === null ? null : atTime(expiresAt, () => this.close());
  }

  async start(pump: RunEventPump): Promise<void> {
    try {
      this.registration = await pump.register((announcement) => {
        this.announcements.push(announcement);
        this.wake?.();
      });
    } catch (error) {
      this.close();
      throw error;
    }
    if (this.closed) {
      this.registration.unregister();
      return;
    }
    if (this.after !== null) {
      const { head, missing } = this.registration;
      // The log up to the head, without the ids still missing there: those are announced when
      // they commit, so nothing is read twice. Pruned ids are skipped, not walked.
      const oldest = await pump.oldest();
      const cursor = oldest - 1n > this.after ? oldest - 1n : this.after;
      if (cursor < head) this.catchUp = { cursor, upTo: head, skip: missing };
    }
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<string> {
    return this;
  }

  async next(): Promise<IteratorResult<string>> {
    try {
      for (;;) {
        if (this.closed) return DONE;
        const id = this.ready.shift();
        if (id !== undefined) return { value: id, done: false };
        if (!this.catchUp && this.announcements.length === 0) {
          await this.sleep();
          continue;
        }
        try {
          if (this.catchUp) await this.readCatchUpPage(this.catchUp);
          else await this.readAnnounced();
          this.failedReads = 0;
        } catch (error) {
          // The database went away under this read: what it was to read stays queued (a catch-up
          // page moves on only once read, announcements are taken only once read), and it is read
          // again after a backoff, or as soon as the pump announces more (it listens again by
          // then). Any other error ends the subscription.
          if (this.closed || databaseTrouble(error) !== 'unavailable') throw error;
          await this.sleep(retryDelay(this.failedReads++));
        }
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  async return(): Promise<IteratorResult<string>> {
    this.close();
    return DONE;
  }

  async throw(error: unknown): Promise<IteratorResult<string>> {
    this.close();
    throw error;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.registration?.unregister();
    this.expiry?.cancel();
    this.wake?.();
  }

  /** Until an announcement arrives or the subscription ends (its client left, its token expired), or at most `ms`. */
  private sleep(ms?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => this.wake?.(), ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** The next window of the catch-up: one statement over at most CATCH_UP_WINDOW ids. */
  private async readCatchUpPage(catchUp: { cursor: bigint; upTo: bigint; skip: readonly bigint[] }): Promise<void> {
    const upper = catchUp.cursor + CATCH_UP_WINDOW < catchUp.upTo ? catchUp.cursor + CATCH_UP_WINDOW : catchUp.upTo;
    const ids = await this.read(
      `select e.id::text as id, e.at::text as at from api.job_run_events e
        where e.id operator(pg_catalog.>) $1::bigint and e.id operator(pg_catalog.<=) $2::bigint
          and e.id operator(pg_catalog.<>) all ($3::bigint[])
          and ($4::bigint is null or e.job_id operator(pg_catalog.=) $4::bigint)
        order by e.id`,
      [catchUp.cursor.toString(), upper.toString(), catchUp.skip.map(String), this.jobId?.toString() ?? null],
    );
    catchUp.cursor = upper;
    if (upper >= catchUp.upTo) this.catchUp = null;
    this.ready.push(...ids);
  }

  /**
   * One read for all the announcements waiting (consecutive: each starts where the one before
   * ended); they are taken off the queue only once read.
   */
  private async readAnnounced(): Promise<void> {
    const announcements = this.announcements.slice();
    const first = announcements[0];
    const last = announcements.at(-1);
    if (!first || !last) return;
    // A resumed subscription has already received the announced range up to `after`.
    const from = this.after !== null && this.after > first.from ? this.after : first.from;
    const ids = await this.read(
      `select e.id::text as id, e.at::text as at from api.job_run_events e
        where ((e.id operator(pg_catalog.>) $1::bigint and e.id operator(pg_catalog.<=) $2::bigint
                and e.id operator(pg_catalog.<>) all ($3::bigint[]))
               or e.id operator(pg_catalog.=) any ($4::bigint[]))
          and ($5::bigint is null or e.job_id operator(pg_catalog.=) $5::bigint)
        order by e.id`,
      [
        from.toString(),
        last.to.toString(),
        announcements.flatMap((a) => a.missing.map(String)),
        announcements.flatMap((a) => a.late.map(String)),
        this.jobId?.toString() ?? null,
      ],
    );
    this.announcements.splice(0, announcements.length);
    this.ready.push(...ids);
  }

  /**
   * Ids of events the subscriber may see, read as the subscriber in a transaction of its own,
   * without those it has delivered already (the same id, logged at the same time).
   */
  private async read(text: string, values: unknown[]): Promise<string[]> {
    const { rows } = await this.withPgClient(this.pgSettings ?? null, (client) => client.query<{ id: string; at: string }>({ text, values }));
    if (this.closed) return [];
    const fresh = rows.filter((row) => this.delivered.get(row.id) !== row.at);
    for (const row of fresh) {
      this.delivered.delete(row.id);
      this.delivered.set(row.id, row.at);
    }
    for (const id of this.delivered.keys()) {
      if (this.delivered.size <= REMEMBERED_DELIVERIES) break;
      this.delivered.delete(id);
    }
    return fresh.map((row) => row.id);
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `then` at `time` (ms since the epoch; at once if it has passed), unless cancelled. */
function atTime(time: number, then: () => void): { cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  // setTimeout fires at once for delays beyond 2^31-1 ms: re-arm until the time has come.
  const arm = (): void => {
    const left = time - Date.now();
    if (left <= 0) then();
    else timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}
