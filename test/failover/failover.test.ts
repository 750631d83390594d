import { afterAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { eventually, freePort, spawnHardcron, type HardcronProcess } from '../support/child.ts';
import { installHardcron, pgPairUnavailable, usePgPair, type FailoverReport, type PairDatabase, type PgPair } from '../support/cluster.ts';
import { withClient } from '../support/database.ts';
import { executorUrl } from '../support/executor.ts';
import { createOwner } from '../support/jobs.ts';
import { authenticatorUrl, data, operation, subscribe, TEST_JWT_SECRET, tokenFor, wsClient, type Subscription } from '../support/server.ts';

/** One event of the jobRunEvents subscription, as the subscriber receives it. */
interface RunEventMessage {
  jobRunEvents: { id: string; runId: string; jobId: string; status: string } | null;
}

/**
 * A subscriber as the API asks clients to be: when its subscription delivers an error or ends
 * with one (the database went away, or is a standby that cannot LISTEN), it subscribes again,
 * after a backoff, with `after` set to the last event id it received. `events` is everything
 * received, across subscriptions.
 */
class ResumingSubscriber {
  readonly events: string[] = [];
  /** The error codes its subscriptions ended with, one per resumption. */
  readonly endings: unknown[] = [];
  private current: Subscription<RunEventMessage> | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private failedInARow = 0;
  private eventsAtLastResume = -1;

  constructor(
    private readonly client: ReturnType<typeof wsClient>,
    private readonly jobId: string | undefined,
  ) {
    this.start('0');
  }

  private start(after: string): void {
    const subscription = subscribe<RunEventMessage>(this.client, operation('job-run-events'), { jobId: this.jobId, after });
    this.current = subscription;
    const taken = { n: 0 };
    let resumed = false;
    const resume = (): void => {
      if (resumed || this.stopped) return;
      resumed = true;
      clearInterval(poll);
      subscription.stop();
      this.endings.push(subscription.errors.flat().map((error) => (error as { extensions?: { code?: string } }).extensions?.code ?? String(error)));
      // 100 ms doubling to 2 s while resumptions fail in a row (no event received in between).
      const failedInARow = this.events.length === this.eventsAtLastResume ? this.failedInARow + 1 : 0;
      this.failedInARow = failedInARow;
      this.eventsAtLastResume = this.events.length;
      this.timer = setTimeout(() => this.start(this.events.at(-1) ?? after), Math.min(2000, 100 * 2 ** failedInARow));
    };
    const take = (): void => {
      // Events up to the first one that came with an error: from there on, it resumes.
      for (const event of subscription.events.slice(taken.n)) {
        if (!event.jobRunEvents) break;
        this.events.push(event.jobRunEvents.id);
        taken.n++;
      }
      if (subscription.errors.length > 0) resume();
    };
    const poll = setInterval(take, 20);
    void subscription.ended.then(() => {
      take();
      resume();
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.current?.stop();
  }
}

/**
 * hardcron across a failover of its database: a primary/standby pair (test/support/cluster.ts)
 * behind one address, two executor processes, per-second jobs and one-offs whose function
 * leaves one effect per run. After a switchover, a crash failover and a spell on a read-only
 * standby, each test checks what must hold: the executors live on, jobs run again, no
 * occurrence has two effects, effects and run records agree, nothing stays `running`.
 */

const unavailable = pgPairUnavailable();
if (unavailable) console.warn(`test/failover: skipped: ${unavailable}`);

/** Short, so stranded runs are found quickly; long enough that a busy machine keeps a healthy executor's lease. */
const LEASE_SECONDS = 4;
const PER_SECOND_JOBS = 50;
const ONE_OFFS = 100;
/** The one-offs fall due spread over this long from their scheduling, so some fall after the switch. */
const ONE_OFF_SPREAD_MS = 8_000;
/** Ceilings, not expectations: each wait ends as soon as its state holds. */
const CEILING_MS = 60_000;
/** Ceiling for states that should hold already when checked (an executor's sessions within bounds). */
const SESSIONS_CEILING_MS = 15_000;
/** Connections running runs in each executor; it holds these, a claimer and a control connection, no more. */
const CONCURRENCY = 4;

/**
 * The owner $fx with fx.effect(job): one row in fx.effects per call, naming the run it was
 * called for. hardcron tells a job nothing about its run, so the function reads it from
 * api.job_runs (fx is given $client for that, as users have it): the one `running` run of its
 * job, as `overlap: skip` (the default) allows only one. No unique constraint: a second effect for
 * an occurrence must show up as a row, not as a failed run.
 */
async function createEffectsOwner(db: PairDatabase): Promise<void> {
  await createOwner(db, 'fx', `
    create table fx.effects (
      id            bigint generated always as identity primary key,
      job_id        bigint not null,
      run_id        bigint,
      scheduled_for timestamptz,
      attempt       integer,
      running_runs  integer not null,
      at            timestamptz not null default clock_timestamp());
    create function fx.effect(job bigint) returns void security definer set search_path = pg_catalog, pg_temp
      language plpgsql as $$
      begin
        insert into fx.effects (job_id, run_id, scheduled_for, attempt, running_runs)
        select job, max(r.id), max(r.scheduled_for), max(r.attempt), count(r.id)::integer
          from api.job_runs r where r.job_id = job and r.status = 'running';
      end $$`);
  await db.admin.query(`grant ${db.admin.escapeIdentifier(db.role('client'))} to ${db.admin.escapeIdentifier(db.role('fx'))}`);
  await db.addUser('alice', { scheduler: true, memberOf: ['fx'] });
}

/** The workload, as alice: per-second jobs and one-offs spread over the next seconds, each calling fx.effect(<its own id>). */
async function scheduleJobs(alice: pg.Client): Promise<{ perSecond: string[]; oneOffs: string[] }> {
  const { rows: perSecond } = await alice.query<{ id: string }>(
    `select (api.update_job(j.id, arguments => jsonb_build_array(j.id))).id
       from (select (api.schedule_job('fx.effect(bigint)', '[0]', schedule => '* * * * * *', name => 'tick ' || i)).id
               from generate_series(1, $1) i) j`,
    [PER_SECOND_JOBS],
  );
  const { rows: oneOffs } = await alice.query<{ id: string }>(
    `select (api.update_job(j.id, arguments => jsonb_build_array(j.id))).id
       from (select (api.schedule_job('fx.effect(bigint)', '[0]', name => 'once ' || i,
                                      run_at => now() + make_interval(secs => i * $2::float8 / $1 / 1000))).id
               from generate_series(1, $1) i) j`,
    [ONE_OFFS, ONE_OFF_SPREAD_MS],
  );
  return { perSecond: perSecond.map((row) => row.id), oneOffs: oneOffs.map((row) => row.id) };
}

/** Executor processes not yet stopped: if the test process exits without stopping them, they go with it. */
const liveExecutors = new Set<HardcronProcess>();
process.once('exit', () => {
  for (const executor of liveExecutors) {
    try {
      process.kill(-executor.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

/** One `hardcron executor` process on the pair's address, logging JSON lines (one per run). */
function spawnExecutor(url: string, id: string): HardcronProcess {
  const executor = spawnHardcron(['executor', '--id', id, '--concurrency', String(CONCURRENCY), '--max-runs-per-owner', String(CONCURRENCY)], {
    EXECUTOR_DATABASE_URL: url,
    HARDCRON_EXECUTOR_LEASE_SECONDS: String(LEASE_SECONDS),
    HARDCRON_EXECUTOR_POLL_MS: '200',
    ...(process.env.TEST_EXECUTOR_LISTEN === 'false' ? { HARDCRON_EXECUTOR_LISTEN: 'false' } : {}),
    LOG_LEVEL: 'info',
  });
  liveExecutors.add(executor);
  void executor.exited.then(() => liveExecutors.delete(executor));
  return executor;
}

interface LogEntry {
  msg?: string;
  level?: number;
  runId?: string;
  jobId?: string;
  status?: string;
  err?: { code?: string; message?: string };
}

function logEntries(executor: HardcronProcess): LogEntry[] {
  return executor.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogEntry);
}

/** Warnings and errors an executor logged, counted by message and error (evidence for a report). */
function warnings(executor: HardcronProcess): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const entry of logEntries(executor)) {
    if ((entry.level ?? 0) < 40) continue;
    const key = `${entry.msg}${entry.err ? ` (${entry.err.code ?? '-'}: ${entry.err.message})` : ''}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Each executor's sessions on `url`'s server by the start of their last statement (which kind of connection they are), as evidence. */
async function executorSessionKinds(url: string): Promise<Record<string, number>> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ kind: string; n: number }>(
      `select substr(application_name, length('hardcron executor ') + 1) || ': ' || left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 60) as kind,
              count(*)::int as n
         from pg_catalog.pg_stat_activity where application_name like 'hardcron executor %' group by 1 order by 1`,
    );
    return Object.fromEntries(rows.map((row) => [row.kind, row.n]));
  });
}

/** Sessions each executor holds on `url`'s server, by executor id (application_name is `hardcron executor <id>`). */
async function executorSessions(url: string): Promise<Record<string, number>> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ executor: string; n: number }>(
      `select substr(application_name, length('hardcron executor ') + 1) as executor, count(*)::int as n
         from pg_catalog.pg_stat_activity where application_name like 'hardcron executor %' group by 1 order by 1`,
    );
    return Object.fromEntries(rows.map((row) => [row.executor, row.n]));
  });
}

/** A pair with hardcron, the workload and two executor processes; `stop()` ends the executors (the pair stops itself). */
class Scenario {
  readonly executors: HardcronProcess[] = [];
  jobs: { perSecond: string[]; oneOffs: string[] } = { perSecond: [], oneOffs: [] };
  readonly started = Date.now();
  /** The `hardcron server` process on the pair's address, and alice's subscription to one per-second job's events. */
  server: { process: HardcronProcess; url: string; token: string; client: ReturnType<typeof wsClient> } | undefined;
  subscription: ResumingSubscriber | undefined;

  private constructor(
    readonly pair: PgPair,
    readonly db: PairDatabase,
  ) {}

  static async start(pair: PgPair): Promise<Scenario> {
    const db = await installHardcron(pair);
    const scenario = new Scenario(pair, db);
    await createEffectsOwner(db);
    const alice = await db.login('alice');
    scenario.jobs = await scheduleJobs(alice);
    const url = await executorUrl(db);
    for (const id of ['ex-a', 'ex-b']) scenario.executors.push(spawnExecutor(url, id));
    await Promise.all(scenario.executors.map((executor) => executor.waitForLog('executor started')));
    await scenario.startServer();
    return scenario;
  }

  /** The GraphQL server, as a process on the address, and a subscriber to the first per-second job's events from the start. */
  private async startServer(): Promise<void> {
    const port = await freePort();
    const child = spawnHardcron(['server'], {
      SERVER_DATABASE_URL: await authenticatorUrl(this.db),
      JWT_SECRET: TEST_JWT_SECRET,
      PORT: String(port),
      LOG_LEVEL: 'info',
    });
    liveExecutors.add(child);
    void child.exited.then(() => liveExecutors.delete(child));
    await child.waitForLog('GraphQL server listening');
    const url = `http://127.0.0.1:${port}`;
    const token = await tokenFor('alice');
    const client = wsClient({ url }, token);
    this.server = { process: child, url, token, client };
    const subscriber = new ResumingSubscriber(client, this.jobs.perSecond[0]);
    this.subscription = subscriber;
    // Subscribed, and receiving, before anything is switched.
    await eventually('the subscriber\'s first event', async () => (subscriber.events.length > 0 ? true : undefined), CEILING_MS);
  }

  /**
   * The server after a switch: the process lives on, answers again, and its subscriber receives
   * events of runs claimed after the promotion. With nothing lost (`complete`), the subscriber has
   * every event the database holds for its job, once and in order.
   */
  async checkServer(report: FailoverReport, label: string, complete: boolean): Promise<void> {
    const { server, subscription } = this;
    if (!server || !subscription) throw new Error('no server');
    expect.soft(server.process.running, `${label}: the server process is still running (${server.process.stderr.slice(-2000)})`).toBe(true);
    let answered = false;
    try {
      await eventually(`${label}: the server answers`, async () => {
        try {
          await data(server, '{ jobs { totalCount } }', {}, server.token);
          return true;
        } catch {
          return undefined;
        }
      }, CEILING_MS);
      answered = true;
    } catch {
      // reported below
    }
    expect.soft(answered, `${label}: the server answers a query after the switch`).toBe(true);
    const job = this.jobs.perSecond[0];
    const { rows: after } = await this.db.admin.query<{ id: string }>(
      `select e.id::text from data.job_run_events e join data.job_runs r on r.id = e.run_id
        where e.job_id = $1 and r.claimed_at > $2::timestamptz order by e.id limit 1`,
      [job, report.promotedAt],
    );
    let received = false;
    try {
      await eventually(`${label}: an event of a run claimed after the promotion`, async () =>
        after[0] && subscription.events.includes(after[0].id) ? true : undefined, CEILING_MS);
      received = true;
    } catch {
      // reported below
    }
    const { rows: jobEvents } = await this.db.admin.query<{ id: string }>('select e.id::text as id from data.job_run_events e where e.job_id = $1 order by e.id', [job]);
    expect.soft(received, `${label}: the subscriber received event ${after[0]?.id} (a run claimed after the promotion; it received ${JSON.stringify(subscription.events)}, the job's events are ${JSON.stringify(jobEvents.map((row) => row.id))}; server warnings: ${server.process.stdout.split('\n').filter((line) => /"level":(4|5)0/.test(line)).map((line) => (JSON.parse(line) as { msg: string }).msg).join(' | ')})`).toBe(true);
    // Resuming is what the API asks of a client whose subscription ended with an error; each such
    // ending must say why, with the database's code.
    expect.soft(subscription.endings.flat().filter((code) => code !== 'HC_DATABASE_UNAVAILABLE' && code !== 'HC_DATABASE_READ_ONLY'),
      `${label}: subscriptions ended otherwise than with HC_DATABASE_UNAVAILABLE or HC_DATABASE_READ_ONLY (${JSON.stringify(subscription.endings)})`).toEqual([]);
    console.log(JSON.stringify({ [label]: { subscriberResumed: subscription.endings.length, eventsReceived: subscription.events.length } }));
    if (!complete) return;
    const received_ = [...subscription.events];
    const { rows } = await this.db.admin.query<{ id: string }>(
      'select e.id::text as id from data.job_run_events e where e.job_id = $1 and e.id <= $2::bigint order by e.id',
      [job, received_[received_.length - 1] ?? '0'],
    );
    const extra = received_.filter((id) => !rows.some((row) => row.id === id));
    const { rows: extraRows } = await this.db.admin.query('select * from data.job_run_events where id = any($1::bigint[])', [extra]);
    expect.soft(received_, `${label}: the subscriber's events are the database's events of its job, once and in order (extra: ${JSON.stringify(extraRows)}; resumed after ${JSON.stringify(subscription.endings)})`).toEqual(rows.map((row) => row.id));
  }

  /** Runs until the executors have, between them, as many succeeded runs as two seconds of the per-second jobs make, and both have taken part. */
  async runAWhile(): Promise<void> {
    const ran = await this.settle<{ done: boolean; by_executor: unknown }>(
      `select count(distinct executor_id) filter (where status = 'succeeded') = 2
              and count(*) filter (where status = 'succeeded') >= $1 as done,
              (select jsonb_object_agg(coalesce(e, '-'), n) from (select executor_id || ' ' || status as e, count(*) as n
                                                             from data.job_runs group by 1) x) as by_executor
         from data.job_runs`,
      [PER_SECOND_JOBS * 2],
    );
    expect(ran, `before the switch: both executors run jobs (${JSON.stringify(this.executors.map(warnings))})`).toMatchObject({ done: true });
  }

  /** Waits (until the ceiling) for `sql`'s `done` to be true; returns its last row either way, as evidence. */
  async settle<T extends { done: boolean }>(sql: string, params: unknown[] = []): Promise<T> {
    let last: T | undefined;
    try {
      await eventually(sql, async () => {
        last = (await this.db.admin.query<T>(sql, params)).rows[0];
        return last?.done ? true : undefined;
      }, CEILING_MS, 250);
    } catch (error) {
      // Not done by the ceiling: the caller's expectations report what the last row says.
      if (!last) throw error;
    }
    return last as T;
  }

  /**
   * Every check after a switch, as soft expectations (each failure is reported, the rest still
   * run), and a summary of the evidence printed for the record.
   */
  async check(report: FailoverReport, label: string): Promise<void> {
    const promotedAt = report.promotedAt;

    // Jobs run again: every per-second job has succeeded for an occurrence after the promotion,
    // and every one-off has succeeded.
    const resumed = await this.settle<{ done: boolean; jobs_resumed: number; one_offs_done: number }>(
      `select count(*) filter (where resumed) = $2 and count(*) filter (where once_done) = $4 as done,
              count(*) filter (where resumed)::int as jobs_resumed, count(*) filter (where once_done)::int as one_offs_done
         from (select j.id,
                      j.id = any($1::bigint[]) and exists (select from data.job_runs r where r.job_id = j.id and r.status = 'succeeded'
                                                                                      and r.scheduled_for > $5::timestamptz) as resumed,
                      j.id = any($3::bigint[]) and exists (select from data.job_runs r where r.job_id = j.id and r.status = 'succeeded') as once_done
                 from data.jobs j) x`,
      [this.jobs.perSecond, PER_SECOND_JOBS, this.jobs.oneOffs, ONE_OFFS, promotedAt],
    );
    // For the record, not asserted: how long after the promotion the first run started.
    const { rows: [gap] } = await this.db.admin.query<{ ms: number | null }>(
      `select (extract(epoch from min(started_at) - $1::timestamptz) * 1000)::int as ms
         from data.job_runs where status = 'succeeded' and started_at > $1::timestamptz`,
      [promotedAt],
    );
    expect.soft(resumed.jobs_resumed, `${label}: per-second jobs that succeeded for an occurrence after the promotion`).toBe(PER_SECOND_JOBS);
    expect.soft(resumed.one_offs_done, `${label}: one-off jobs that succeeded`).toBe(ONE_OFFS);

    // Nothing stays running: a run claimed before the promotion is finished, or declared lost,
    // once a lease has passed (the sweep's promise). Waited for, up to the ceiling.
    const stuck = await this.settle<{ done: boolean; stuck: number; sample: unknown }>(
      `select now() > $1::timestamptz + make_interval(secs => $2::integer) and count(*) = 0 as done, count(*)::int as stuck,
              (array_agg(jsonb_build_object('id', id, 'job', job_id, 'executor', executor_id, 'claimed_at', claimed_at) order by id))[1:5] as sample
         from data.job_runs where status = 'running' and claimed_at < $1::timestamptz`,
      [promotedAt, LEASE_SECONDS],
    );
    const stillRunning = await this.db.admin.query<{ n: number; sample: unknown }>(
      `select count(*)::int as n, (array_agg(jsonb_build_object('id', id, 'job', job_id, 'executor', executor_id, 'claimed_at', claimed_at) order by id))[1:5] as sample
         from data.job_runs where status = 'running' and claimed_at < now() - make_interval(secs => $1::integer)`,
      [LEASE_SECONDS * 2],
    );
    expect.soft({ claimedBeforePromotion: stuck.stuck, sample: stuck.sample }, `${label}: runs claimed before the promotion still running a lease after it`)
      .toEqual({ claimedBeforePromotion: 0, sample: null });
    expect.soft(stillRunning.rows[0]?.n, `${label}: runs running for more than two leases (${JSON.stringify(stillRunning.rows[0]?.sample)})`).toBe(0);

    // One statement, one snapshot: an effect commits with its run's record, so these hold at any moment.
    const { rows: [consistency] } = await this.db.admin.query<Record<string, unknown>>(`
      with succeeded as (select * from data.job_runs where status = 'succeeded'),
           matched as (select s.id, (select count(*) from fx.effects e where e.job_id = s.job_id and e.scheduled_for = s.scheduled_for
                                                                           and e.attempt = s.attempt)::int as effects
                         from succeeded s)
      select (select count(*)::int from fx.effects) as effects,
             (select count(*)::int from succeeded) as succeeded,
             (select count(*)::int from (select from fx.effects group by job_id, scheduled_for having count(*) > 1) d) as occurrences_with_two_effects,
             (select count(*)::int from matched where effects <> 1) as succeeded_without_one_effect,
             (select (array_agg(id order by id))[1:5] from matched where effects <> 1) as succeeded_without_one_effect_sample,
             (select count(*)::int from fx.effects e where not exists (
                select from succeeded s where s.job_id = e.job_id and s.scheduled_for = e.scheduled_for and s.attempt = e.attempt)) as effects_without_succeeded_run,
             (select (array_agg(jsonb_build_object('effect', e.id, 'job', e.job_id, 'run', e.run_id, 'status',
                        (select r.status from data.job_runs r where r.id = e.run_id)) order by e.id))[1:5]
                from fx.effects e where not exists (
                select from succeeded s where s.job_id = e.job_id and s.scheduled_for = e.scheduled_for and s.attempt = e.attempt)) as effects_without_succeeded_run_sample,
             (select count(*)::int from fx.effects e where e.running_runs <> 1) as effects_not_seeing_one_running_run,
             (select count(*)::int from fx.effects e join data.job_runs r on r.job_id = e.job_id and r.scheduled_for = e.scheduled_for
                                                                         and r.attempt = e.attempt and r.status = 'succeeded'
               where r.id is distinct from e.run_id) as effects_naming_another_run_id,
             (select count(*)::int from data.job_runs where status = 'failed' and started_at is null) as failed_without_start,
             (select (array_agg(jsonb_build_object('id', id, 'sqlstate', error_sqlstate, 'message', error_message) order by id))[1:5]
                from data.job_runs where status = 'failed' and started_at is null) as failed_without_start_sample,
             (select jsonb_object_agg(status, n) from (select status, count(*)::int as n from data.job_runs group by status) s) as statuses`);
    if (!consistency) throw new Error('no answer');
    expect.soft(consistency.occurrences_with_two_effects, `${label}: occurrences (job, scheduled_for) with more than one effect`).toBe(0);
    expect.soft(consistency.succeeded_without_one_effect,
      `${label}: succeeded runs without exactly one effect (${JSON.stringify(consistency.succeeded_without_one_effect_sample)})`).toBe(0);
    expect.soft(consistency.effects_without_succeeded_run,
      `${label}: effects without a succeeded run (${JSON.stringify(consistency.effects_without_succeeded_run_sample)})`).toBe(0);
    expect.soft(consistency.effects_not_seeing_one_running_run, `${label}: effects whose call saw other than one running run of its job`).toBe(0);
    expect.soft(consistency.effects_naming_another_run_id, `${label}: effects whose run, read during the call, is not the run recorded succeeded`).toBe(0);
    expect.soft(consistency.failed_without_start,
      `${label}: failed runs with no started_at (${JSON.stringify(consistency.failed_without_start_sample)})`).toBe(0);

    // Lost occurrences are accounted for: every second of every per-second job, from its first
    // occurrence with a row to its newest, has a row of its own or lies in a `missed` row's range
    // (scheduled_for up to missed_before), the commits lost with the old primary included.
    const { rows: [accounted] } = await this.db.admin.query<{ unaccounted: number; sample: unknown }>(
      `with bounds as (select job_id, min(scheduled_for) as lo, max(scheduled_for) as hi
                         from data.job_runs where job_id = any($1::bigint[]) group by job_id),
            seconds as (select b.job_id, t from bounds b, generate_series(b.lo, b.hi, interval '1 second') t)
       select count(*)::int as unaccounted,
              (array_agg(jsonb_build_object('job', s.job_id, 'at', s.t) order by s.t))[1:5] as sample
         from seconds s
        where not exists (select from data.job_runs r
                           where r.job_id = s.job_id
                             and (r.scheduled_for = s.t or (r.status = 'missed' and s.t >= r.scheduled_for and s.t < r.missed_before)))`,
      [this.jobs.perSecond],
    );
    expect.soft(accounted?.unaccounted, `${label}: per-second occurrences with no row and in no missed range (${JSON.stringify(accounted?.sample)})`).toBe(0);

    // What the executors said they ran, against what the database says those run ids are.
    const reported = this.executors.flatMap((executor) =>
      logEntries(executor).filter((entry) => entry.msg === 'run finished' && entry.runId !== undefined),
    );
    // For the record, not asserted: a logged run that is no run now had its commit lost with the
    // old primary (a crash loses acknowledged commits); one whose id is now another job's run had
    // its id handed out again by the new primary (the sequence's state was lost too). The log was
    // right when written; the harm would be an executor acting on such an id after the switch,
    // which the assertions on run records below catch.
    const { rows: [logged] } = await this.db.admin.query<{ gone: number; other_job: number; other_job_statuses: unknown; sample: unknown }>(
      `select count(*) filter (where r.id is null)::int as gone,
              count(*) filter (where r.job_id <> l.logged_job)::int as other_job,
              (select jsonb_object_agg(st, n) from (select r2.status as st, count(*) as n
                 from unnest($1::bigint[], $2::bigint[]) l2(run_id, logged_job) join data.job_runs r2 on r2.id = l2.run_id
                where r2.job_id <> l2.logged_job group by 1) x) as other_job_statuses,
              (array_agg(jsonb_build_object('run', l.run_id, 'logged_job', l.logged_job, 'now_job', r.job_id, 'now_status', r.status,
                                            'now_executor', r.executor_id) order by l.run_id) filter (where r.job_id <> l.logged_job))[1:5] as sample
         from unnest($1::bigint[], $2::bigint[]) l(run_id, logged_job) left join data.job_runs r on r.id = l.run_id`,
      [reported.map((entry) => entry.runId), reported.map((entry) => entry.jobId)],
    );
    if (!logged) throw new Error('no answer');

    // No wrong `lost` record: after the promotion no executor died and no connection made
    // through the address broke (the address moved before any was made to the new primary), so a
    // run claimed after it and recorded lost was lost by nobody. What the executors logged about
    // runs whose connection broke is printed as evidence.
    const { rows: [lostAfter] } = await this.db.admin.query<{ n: number; sample: unknown }>(
      `select count(*)::int as n, (array_agg(jsonb_build_object('id', id, 'job', job_id, 'executor', executor_id,
                'claimed_ms_after_promotion', (extract(epoch from claimed_at - $1::timestamptz) * 1000)::int) order by id))[1:8] as sample
         from data.job_runs where status = 'lost' and claimed_at > $1::timestamptz`,
      [promotedAt],
    );
    expect.soft(lostAfter?.n, `${label}: runs claimed after the promotion recorded lost (${JSON.stringify(lostAfter?.sample)})`).toBe(0);
    const brokenRuns = this.executors.flatMap((executor, i) =>
      logEntries(executor)
        .filter((entry) => entry.msg?.startsWith('connection lost during a run') || entry.msg === 'run not recorded after its failure'
          || entry.msg === 'no connection for a claimed run; the sweep will retry it')
        .map((entry) => ({ executor: `ex-${'ab'[i]}`, msg: entry.msg, runId: entry.runId, lost: (entry as { lost?: boolean }).lost, err: entry.err?.message })),
    );

    // No connection leaks: each executor holds at most its run connections, a claimer, a control connection
    // and, for a moment every HARDCRON_EXECUTOR_HISTORY_SECONDS, the run history upkeep's connection.
    // Waited for (a connection being replaced may linger a moment), up to a shorter ceiling: by now it should hold.
    let sessions: Record<string, number> = {};
    await eventually('executor sessions on the new primary within bounds', async () => {
      sessions = await executorSessions(this.db.adminUrl);
      return Object.values(sessions).every((n) => n <= CONCURRENCY + 3) ? true : undefined;
    }, SESSIONS_CEILING_MS, 500).catch(() => {});
    const sessionKinds = await executorSessionKinds(this.db.adminUrl);
    expect.soft(Math.max(0, ...Object.values(sessions)),
      `${label}: most sessions one executor holds on the new primary (${JSON.stringify(sessions)}; by last statement: ${JSON.stringify(sessionKinds)})`)
      .toBeLessThanOrEqual(CONCURRENCY + 3);

    // No executor process exited.
    const exits = this.executors.map((executor) => ({ pid: executor.pid, running: executor.running, exit: executor.child.exitCode ?? executor.child.signalCode }));
    expect.soft(exits.every((exit) => exit.running), `${label}: executor processes still running: ${JSON.stringify(exits)}\n${
      this.executors.filter((executor) => !executor.running).map((executor) => executor.stderr.slice(-2000)).join('\n')}`).toBe(true);

    console.log(JSON.stringify({
      test: label,
      seconds: Math.round((Date.now() - this.started) / 100) / 10,
      failover: report,
      resumed,
      firstRunAfterPromotionMs: gap?.ms ?? null,
      stuck,
      consistency,
      executorLoggedRuns: { logged: reported.length, gone: logged.gone, otherJob: logged.other_job, otherJobNowStatus: logged.other_job_statuses, otherJobSample: logged.sample },
      lostRunsClaimedAfterPromotion: lostAfter,
      brokenRuns,
      sessions,
      sessionKinds,
      exits,
      warnings: Object.fromEntries(this.executors.map((executor, i) => [`ex-${'ab'[i]}`, warnings(executor)])),
    }, null, 1));
  }

  async stop(): Promise<void> {
    this.subscription?.stop();
    await this.server?.client.dispose();
    const children = [...this.executors, ...(this.server ? [this.server.process] : [])];
    // SIGTERM first, so a stop that hangs shows up as a kill below rather than as a leftover.
    for (const child of children) if (child.running) child.signal('SIGTERM');
    await Promise.all(children.map((executor) =>
      Promise.race([executor.exited, new Promise((resolve) => setTimeout(resolve, 15_000))]).then(() => executor.kill())));
    await this.db.drop();
  }
}

describe.skipIf(unavailable !== undefined)('hardcron across a failover of its database', () => {
  describe('a clean switchover (the standby caught up, the primary stopped -m fast, the standby promoted)', () => {
    const pair = usePgPair();
    let scenario: Scenario | undefined;
    afterAll(async () => {
      await scenario?.stop();
    });

    test('the executors live on, jobs run again, every effect matches one succeeded run', async () => {
      scenario = await Scenario.start(pair());
      await scenario.runAWhile();
      const report = await pair().switchover();
      expect(report.lostBytes).toBe(0);
      await scenario.db.reconnect();
      await scenario.check(report, 'switchover');
      await scenario.checkServer(report, 'switchover', true);
    }, 240_000);
  });

  describe('a crash failover with a delayed replication link (acknowledged commits are lost)', () => {
    const pair = usePgPair({ replicationDelayMs: 300 });
    let scenario: Scenario | undefined;
    afterAll(async () => {
      await scenario?.stop();
    });

    test('the executors live on, jobs run again, every effect matches one succeeded run', async () => {
      scenario = await Scenario.start(pair());
      // What was installed and scheduled is on the standby before the work starts: only work is lost.
      await pair().waitForStandbyCaughtUp();
      await scenario.runAWhile();
      // Crash while commits are on their way: the primary has an effect committed within the last
      // 100 ms (a third of the link's delay) that the standby has not received yet.
      const { db } = scenario;
      await eventually('an effect committed on the primary and still on its way to the standby', async () => {
        const newest = await withClient(pair().primary.url(db.name), async (client) =>
          (await client.query<{ id: string | null }>(`select max(id)::text as id from fx.effects where at > clock_timestamp() - interval '100 ms'`)).rows[0]?.id);
        if (!newest) return undefined;
        const onStandby = await withClient(pair().standby.url(db.name), async (client) =>
          (await client.query<{ id: string }>('select coalesce(max(id), 0)::text as id from fx.effects')).rows[0]?.id ?? '0');
        return BigInt(onStandby) < BigInt(newest) ? true : undefined;
      }, CEILING_MS, 20);
      // The effects the primary has committed just before it dies (it goes on committing until then).
      const committed = await withClient(pair().primary.url(scenario.db.name), async (client) =>
        (await client.query<{ id: string }>('select id from fx.effects order by id')).rows.map((row) => row.id));
      const report = await pair().crashFailover();
      await scenario.db.reconnect();
      const { rows: kept } = await scenario.db.admin.query<{ id: string }>('select id from fx.effects where id = any($1::bigint[])', [committed]);
      const lostEffects = committed.length - kept.length;
      console.log(JSON.stringify({ crash: { committedBeforeCrash: committed.length, lostEffects, ...report } }));
      // The scenario is what it says: committed work was lost (else this tests a clean switchover).
      expect(report.lostBytes).toBeGreaterThan(0);
      expect(lostEffects).toBeGreaterThan(0);
      await scenario.check(report, 'crash failover');
      // Events whose commits were lost with the old primary were delivered and are gone, and the
      // new primary may give their ids to new events: only the service and new events are checked.
      await scenario.checkServer(report, 'crash failover', false);
    }, 240_000);
  });

  describe('the address points at the standby, still read-only, for longer than a lease; then it is promoted', () => {
    const pair = usePgPair();
    let scenario: Scenario | undefined;
    afterAll(async () => {
      await scenario?.stop();
    });

    test('the executors live on through the read-only spell and resume once it is promoted', async () => {
      scenario = await Scenario.start(pair());
      await scenario.runAWhile();
      await pair().waitForStandbyCaughtUp();
      const acceptedBefore = pair().address.accepted;
      pair().pointAddressAt(pair().standby);
      // On the standby: every lease recorded has expired, and the executors have been connecting
      // to it (each reconnect goes through the address). Its clock is the one the leases use.
      const database = scenario.db.name;
      await eventually('every lease to expire on the standby while the executors connect to it', async () => {
        const expired = await withClient(pair().standby.url(database), async (client) =>
          (await client.query<{ done: boolean }>('select pg_is_in_recovery() and now() > max(lease_expires_at) as done from data.executors')).rows[0]?.done);
        return expired && pair().address.accepted >= acceptedBefore + 4 ? true : undefined;
      }, CEILING_MS);
      const standbySessions = await executorSessions(pair().standby.url(database));
      const standbySessionKinds = await executorSessionKinds(pair().standby.url(database));
      const duringReadOnly = scenario.executors.map((executor) => ({ running: executor.running, warnings: warnings(executor) }));
      console.log(JSON.stringify({ readOnlySpell: { standbySessions, standbySessionKinds, executors: duringReadOnly } }, null, 1));
      expect.soft(Math.max(0, ...Object.values(standbySessions)), `read-only spell: most sessions one executor holds on the standby (${JSON.stringify(standbySessions)}; by last statement: ${JSON.stringify(standbySessionKinds)})`)
        .toBeLessThanOrEqual(CONCURRENCY + 3);
      // An executor that cannot renew its lease says so, or says that the database is read-only:
      // meanwhile it may claim nothing and its runs may be declared lost, and an operator must
      // learn why. (A claim's failure alone, logged with the error, does not say it.)
      for (const [i, executor] of scenario.executors.entries()) {
        const said = logEntries(executor).some((entry) => (entry.level ?? 0) >= 40 && /lease|read-only|standby|recovery/i.test(entry.msg ?? ''));
        expect.soft(said, `read-only spell: ex-${'ab'[i]} warned about its lease or the read-only database (it logged: ${JSON.stringify(warnings(executor))})`).toBe(true);
      }
      // The address stays where it is: sessions the executors hold on the standby carry on after promotion.
      const report = await pair().switchover();
      await scenario.db.reconnect();
      await scenario.check(report, 'read-only standby, then promotion');
      await scenario.checkServer(report, 'read-only standby, then promotion', true);
    }, 240_000);
  });
});
