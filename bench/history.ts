/**
 * npm run bench:history — what a long run history costs: the same reads, claims and runs on a
 * database with a large history (full) and on one with none (empty), in one run, side by side.
 *
 * Prints one JSON line per figure. Target: BENCH_DATABASE_URL or DATABASE_URL (a superuser URL;
 * two fresh databases are created next to it and dropped afterwards, with their roles) or,
 * without either, embedded PostgreSQL in temporary directories.
 *
 * Both databases: owner role $hist with the SECURITY DEFINER no-op hist.work(); schedulers
 * sched_1, sched_2, … (members of $hist) own the jobs, 10,000 each (the most one role may own);
 * user viewer (member of $hist, not a scheduler) sees every job; user stranger (no owner role)
 * sees none. BENCH_HISTORY_DUE_JOBS one-off jobs (sched_1's) are due now.
 *  - full: BENCH_HISTORY_JOBS jobs in all (the others due in ten years) and BENCH_HISTORY_RUNS
 *    finished runs over BENCH_HISTORY_DAYS days, in partitions of BENCH_HISTORY_PARTITION_DAYS
 *    days (7, the installation's default; made as the executor makes them:
 *    data.create_run_partition, data.open_run_partition at the day's start), the newest today;
 *    one run in 20 failed, with its error fields; all partitions but the newest two settled.
 *    Rows are inserted as the superuser with set-based SQL, then VACUUM ANALYZE.
 *  - empty: the due jobs only.
 * While it measures, retention is set to keep everything (keep_days 36500), so that the
 * executors' upkeep pass prunes nothing (the retention figure then sets it on purpose), and
 * partition_seconds to BENCH_HISTORY_PARTITION_DAYS, as the history is built.
 *
 * Figures, each with both databases' values and `ratio` = full / empty:
 *  - drain_runs_per_s, drain_server_cpu_ms_per_run: an executor (BENCH_CONCURRENCY connections,
 *    all for the one owner) running the due jobs;
 *  - jobs_page_viewer / jobs_page_stranger: `select * from api.jobs order by id desc limit 20`;
 *  - runs_page_viewer / runs_page_stranger: the same over api.job_runs;
 *  - job_runs_page_viewer: the 20 newest runs of one job (one with runs in every partition);
 *  - my_jobs_graphql / my_jobs_sql: "my 20 newest jobs with their last 5 runs" as viewer, through
 *    the GraphQL server (bench/graphql.ts's query) and as the same read in SQL;
 * Each read: `begin; set local role <user>`, the statement timed alone (one after another,
 * BENCH_HISTORY_REPS times or until BENCH_HISTORY_BUDGET_SECONDS have passed, at least 3), p50
 * and p95; and from one EXPLAIN (ANALYZE, BUFFERS) the buffers it touched (shared hit + read,
 * planning included) and its rows. BENCH_EXPLAIN=1 prints those plans on stderr.
 *  - retention (full only): with an executor running BENCH_HISTORY_TICKING_JOBS jobs due every
 *    second, retention set so that only the oldest partition is past it (keep_days =
 *    keep_failed_days = days − partition days − 1, keep_last_runs 0), one pass of
 *    code.maintain_run_history(now()) timed (it truncates that partition), then a second (the partition made eligible again) that drops the
 *    emptied partition if it gets its lock in time; the action rows, data.job_runs' size summed
 *    over its partitions before and after, and the runs recorded meanwhile by status (any
 *    failed, timed out, rejected or lost run is an error).
 * A last line gathers the ratios. The process exits non-zero on errors only, never on a figure.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { availableParallelism, cpus } from 'node:os';
import { SignJWT } from 'jose';
import type pg from 'pg';
import { pino } from 'pino';
import { executorServerCpu, withBenchDatabase, withClient, type BenchDatabase } from './database.ts';
import { Executor } from '../server/executor/executor.ts';
import { EXECUTOR_SETTINGS } from '../server/executor/options.ts';
import { startGraphQLServer, type RunningGraphQLServer } from '../server/api/server.ts';

function setting(name: string, fallback: number, min = 1): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be a whole number of at least ${min}`);
  return value;
}

const JOBS = setting('BENCH_HISTORY_JOBS', 100_000);
const DUE_JOBS = setting('BENCH_HISTORY_DUE_JOBS', 1_000);
const RUNS = setting('BENCH_HISTORY_RUNS', 5_000_000);
const PARTITION_DAYS = setting('BENCH_HISTORY_PARTITION_DAYS', 7, 1);
// Retention keeps days − partition days − 1 days (at least 1), so that only the oldest partition is past it.
const DAYS = setting('BENCH_HISTORY_DAYS', 60, 1);
if (DAYS - PARTITION_DAYS - 1 < 1) throw new Error('BENCH_HISTORY_DAYS must exceed BENCH_HISTORY_PARTITION_DAYS by at least 2');
const REPS = setting('BENCH_HISTORY_REPS', 30, 3);
const BUDGET_SECONDS = setting('BENCH_HISTORY_BUDGET_SECONDS', 20);
const CONCURRENCY = Math.min(setting('BENCH_CONCURRENCY', 8), EXECUTOR_SETTINGS.concurrency.max);
const TICKING_JOBS = setting('BENCH_HISTORY_TICKING_JOBS', 10);
const DRAIN_ROUNDS = setting('BENCH_HISTORY_DRAIN_ROUNDS', 3);
const EXPLAIN = process.env.BENCH_EXPLAIN === '1';
const SECRET = randomBytes(32).toString('hex');
if (DUE_JOBS > JOBS) throw new Error('BENCH_HISTORY_DUE_JOBS must not exceed BENCH_HISTORY_JOBS');

// bench/graphql.ts's read: "my 20 newest jobs with their last 5 runs".
const QUERY = `query MyJobsWithRecentRuns {
  jobs(first: 20, orderBy: ID_DESC) {
    nodes {
      id name functionSignature schedule enabled nextRunAt lastRunAt lastStatus
      runs(first: 5, orderBy: ID_DESC) {
        nodes { id scheduledFor startedAt finishedAt status errorMessage }
      }
    }
  }
}`;

// The same read in SQL, through the same views, as one JSON document (as in bench/graphql.ts).
const MY_JOBS_SQL = `
  select coalesce(json_agg(json_build_object(
           'id', j.id, 'name', j.name, 'functionSignature', j.function_signature, 'schedule', j.schedule,
           'enabled', j.enabled, 'nextRunAt', j.next_run_at, 'lastRunAt', j.last_run_at, 'lastStatus', j.last_status,
           'runs', runs.nodes) order by j.id desc), '[]')::text as jobs
    from (select * from api.jobs order by id desc limit 20) j
    cross join lateral (
      select coalesce(json_agg(json_build_object(
               'id', r.id, 'scheduledFor', r.scheduled_for, 'startedAt', r.started_at, 'finishedAt', r.finished_at,
               'status', r.status, 'errorMessage', r.error_message) order by r.id desc), '[]') as nodes
        from (select * from api.job_runs r where r.job_id = j.id order by r.id desc limit 5) r
    ) runs`;

const FAILED_STATUSES = ['failed', 'timed_out', 'rejected', 'lost'];
// The most jobs one role may own (code.require_room_for_job): the jobs are spread over schedulers.
const JOBS_PER_SCHEDULER = 10_000;
const SCHEDULERS = Math.ceil(JOBS / JOBS_PER_SCHEDULER);

interface Db {
  readonly kind: 'full' | 'empty';
  readonly adminUrl: string;
  readonly name: string;
  readonly executorUrl: string;
  readonly authenticatorUrl: string;
  /** The job whose runs job_runs_page_viewer reads. */
  sampleJob: number;
  role(nick: string): string;
}

interface Timing {
  p50_ms: number;
  p95_ms: number;
  reps: number;
}

interface Plan {
  /** Shared buffers the execution touched (hit + read), planning not included. */
  buffers: number;
  rows: number;
  planning_ms: number;
  execution_ms: number;
}

const ratios: Record<string, number | null> = {};

function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function report(figure: string, values: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ bench: 'history', figure, ...values })}\n`);
}

/** A figure of both databases, with full / empty of `key` (recorded for the last line). */
function compare<T extends object>(figure: string, full: T, empty: T, key: keyof T & string, extra: Record<string, unknown> = {}): void {
  const a = full[key];
  const b = empty[key];
  const ratio = typeof a === 'number' && typeof b === 'number' && b > 0 ? round(a / b, 2) : null;
  ratios[`${figure}.${key}`] = ratio;
  // The buffers a read touched: its cost without the machine's load in it.
  const buffers = (values: T): unknown => (values as { buffers?: unknown }).buffers;
  const fb = buffers(full);
  const eb = buffers(empty);
  if (typeof fb === 'number' && typeof eb === 'number' && eb > 0) ratios[`${figure}.buffers`] = round(fb / eb, 2);
  report(figure, { full, empty, ratio, ratio_of: key, ...extra });
}

function commitOfTree(): { commit: string; sql_changed: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--', 'sql'], { encoding: 'utf8' }).trim() !== '';
    return { commit, sql_changed: changed };
  } catch {
    return { commit: 'unknown', sql_changed: false };
  }
}

async function main(): Promise<void> {
  await withBenchDatabase(async (fullDatabase) => {
    await withBenchDatabase(async (emptyDatabase) => {
      const started = performance.now();
      const full = await setUp(fullDatabase, 'full');
      const empty = await setUp(emptyDatabase, 'empty');
      await fillJobs(empty);
      await fillJobs(full);
      const built = performance.now();
      await fillHistory(full);
      const filled = performance.now();
      for (const db of [full, empty]) await prepare(db);
      const views = await withClient(full.adminUrl, async (c) =>
        (await c.query<{ jobs: string; runs: string }>(
          `select md5(pg_get_viewdef('api.jobs'::regclass)) as jobs, md5(pg_get_viewdef('api.job_runs'::regclass)) as runs`,
        )).rows[0],
      );
      report('setup', {
        postgres: fullDatabase.version,
        target: fullDatabase.target,
        ...commitOfTree(),
        views_md5: views,
        cpus: availableParallelism(),
        cpu_model: cpus()[0]?.model ?? 'unknown',
        jobs: JOBS,
        due_jobs: DUE_JOBS,
        runs: RUNS,
        days: DAYS,
        partition_days: PARTITION_DAYS,
        reps: REPS,
        budget_seconds: BUDGET_SECONDS,
        concurrency: CONCURRENCY,
        build_s: { jobs: round((built - started) / 1000, 1), history: round((filled - built) / 1000, 1), vacuum: round((performance.now() - filled) / 1000, 1) },
        sizes: { full: await history(full), empty: await history(empty) },
      });

      // Claims and runs first, on the history as built; the reads after them. Rounds alternate
      // between the databases, so that load from elsewhere on the machine falls on both alike.
      const rounds: Record<Db['kind'], Drain[]> = { full: [], empty: [] };
      for (let pass = 0; pass < DRAIN_ROUNDS; pass++) {
        for (const db of [full, empty]) rounds[db.kind].push(await measureDrain(db, pass));
      }
      const drainFull = medianDrain(rounds.full);
      const drainEmpty = medianDrain(rounds.empty);
      compare('drain_runs_per_s', drainFull, drainEmpty, 'runs_per_s', { note: `median of ${DRAIN_ROUNDS} rounds` });
      ratios['drain_server_cpu_ms_per_run'] =
        drainFull.server_cpu_ms_per_run !== null && drainEmpty.server_cpu_ms_per_run !== null && drainEmpty.server_cpu_ms_per_run > 0
          ? round(drainFull.server_cpu_ms_per_run / drainEmpty.server_cpu_ms_per_run)
          : null;
      report('drain_server_cpu_ms_per_run', {
        full: drainFull.server_cpu_ms_per_run,
        empty: drainEmpty.server_cpu_ms_per_run,
        ratio: ratios['drain_server_cpu_ms_per_run'],
        note: "the executor's PostgreSQL processes (from /proc: null when PostgreSQL runs elsewhere)",
      });

      const reads: Array<[string, string, (db: Db) => string]> = [
        ['jobs_page_viewer', 'viewer', () => 'select * from api.jobs order by id desc limit 20'],
        ['jobs_page_stranger', 'stranger', () => 'select * from api.jobs order by id desc limit 20'],
        ['runs_page_viewer', 'viewer', () => 'select * from api.job_runs order by id desc limit 20'],
        ['runs_page_stranger', 'stranger', () => 'select * from api.job_runs order by id desc limit 20'],
        ['job_runs_page_viewer', 'viewer', (db) => `select * from api.job_runs where job_id = ${db.sampleJob} order by id desc limit 20`],
        ['my_jobs_sql', 'viewer', () => MY_JOBS_SQL],
      ];
      for (const [figure, user, sql] of reads) {
        const a = await measureRead(full, user, sql(full), figure);
        const b = await measureRead(empty, user, sql(empty), figure);
        // The viewer sees every job and run, the stranger none: a page that says otherwise means
        // a wrong set-up or views that hide or show the wrong rows, not a figure.
        for (const [db, result] of [[full, a], [empty, b]] as const) {
          if ((user === 'viewer') !== result.rows_returned > 0) {
            throw new Error(`${figure} (${db.kind}): ${user} got ${result.rows_returned} rows`);
          }
        }
        compare(figure, a, b, 'p50_ms', { user });
      }
      const graphqlFull = await measureGraphQL(full);
      const graphqlEmpty = await measureGraphQL(empty);
      compare('my_jobs_graphql', graphqlFull, graphqlEmpty, 'p50_ms', { user: 'viewer' });

      await measureRetention(full);
      report('ratios', { ratios, note: 'full / empty of each figure: p50 and buffers for the reads' });
    });
  });
}

/**
 * Owner role $hist with hist.work(); schedulers sched_<n> and ticker (members of $hist), viewer
 * (member of $hist) and stranger (no owner role); passwords for $executor and $authenticator.
 */
async function setUp(database: BenchDatabase, kind: Db['kind']): Promise<Db> {
  return withClient(database.adminUrl, async (c) => {
    const role = (nick: string): string => `${database.name}$${nick}`;
    const ident = (nick: string): string => c.escapeIdentifier(role(nick));
    await c.query(`begin;
      set local role ${ident('mgr')};
      call mgr.re_create_role('hist', null, true);
      ${Array.from({ length: SCHEDULERS }, (_, i) => `call mgr.add_user('sched_${i + 1}', null, true, '{hist}');`).join('\n      ')}
      call mgr.add_user('ticker', null, true, '{hist}');
      call mgr.add_user('viewer', null, false, '{hist}');
      call mgr.add_user('stranger', null, false, '{}');
      set local role ${ident('hist')};
      create schema hist;
      create function hist.work() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;
      commit`);
    const password = randomBytes(16).toString('hex');
    const urlOf = (nick: string): string => {
      const url = new URL(database.adminUrl);
      url.username = encodeURIComponent(role(nick));
      url.password = password;
      return url.toString();
    };
    for (const nick of ['executor', 'authenticator']) await c.query(`alter role ${ident(nick)} password ${c.escapeLiteral(password)}`);
    // Keep everything while measuring: the executors' upkeep pass must not prune the history.
    // Partitions of PARTITION_DAYS, as the history is built.
    await c.query(`update data.history_settings set keep_days = 36500, keep_failed_days = 36500, partition_seconds = ${PARTITION_DAYS * 86400}`);
    return { kind, adminUrl: database.adminUrl, name: database.name, executorUrl: urlOf('executor'), authenticatorUrl: urlOf('authenticator'), sampleJob: 0, role };
  });
}

/**
 * The jobs, as their schedulers would have scheduled them (one-off calls of hist.work()): in the
 * empty database the due ones only; in the full one JOBS in all, the due ones first; job i
 * (from 1) belongs to sched_<(i - 1) / 10,000 + 1>.
 */
async function fillJobs(db: Db): Promise<void> {
  const count = db.kind === 'full' ? JOBS : DUE_JOBS;
  await withClient(db.adminUrl, (c) =>
    c.query(
      `insert into data.jobs (name, owner, function_signature, function_owner, arguments, run_at, time_zone, options, next_run_at)
       select 'job ' || i, $1::text || ((i - 1) / ${JOBS_PER_SCHEDULER} + 1), 'hist.work()', $2, '[]', due, 'UTC', o.options, due
         from (select code.job_options('{}') as options) o, generate_series(1, $3::integer) i,
              lateral (select case when i <= $4 then now() else now() + interval '3650 days' end as due) d
        order by i`,
      [db.role('sched_'), db.role('hist'), count, DUE_JOBS],
    ),
  );
  // The roles whose runs can be seen, as scheduling remembers them (code.schedule_job): the jobs
  // were inserted directly. Where the function is missing (before migration 0017) nothing needs it.
  await withClient(db.adminUrl, (c) =>
    c.query(`do $$ begin
               if to_regprocedure('code.remember_history_roles(text,text)') is not null then
                 perform code.remember_history_roles(j.owner, j.function_owner) from (select distinct owner, function_owner from data.jobs) j;
               end if;
             end $$`),
  );
  // Full: one with runs in every partition, not due; empty: a due one (one run after the drain).
  db.sampleJob = await withClient(db.adminUrl, async (c) =>
    Number((await c.query<{ id: string }>('select min(id) + $1 as id from data.jobs', [db.kind === 'full' ? Math.min(DUE_JOBS, JOBS - 1) : 0])).rows[0]?.id),
  );
}

/**
 * DAYS days of history ending today (UTC), in partitions of PARTITION_DAYS days, each opened at
 * its first day's start, with each day's runs spread over the day (today's up to now): partition
 * 0 (the installation's) for the oldest days, then data.create_run_partition and
 * data.open_run_partition for each next one. Jobs take turns, so every job has runs in every
 * partition. All partitions but the newest two are then settled.
 */
async function fillHistory(db: Db): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
    const first = Number((await c.query<{ id: string }>('select min(id) as id from data.jobs')).rows[0]?.id);
    const perDay = Math.floor(RUNS / DAYS);
    let done = 0;
    for (let day = 0; day < DAYS; day++) {
      const count = day === DAYS - 1 ? RUNS - done : perDay;
      const dayStart = `date_trunc('day', now(), 'UTC') - interval '${DAYS - 1 - day} days'`;
      await c.query('begin');
      if (day === 0) {
        await c.query(`update data.run_partitions set opened_at = ${dayStart} where first_id = 0`);
      } else if (day % PARTITION_DAYS === 0) {
        await c.query('select data.create_run_partition()');
        await c.query(`select data.open_run_partition(${dayStart})`);
      }
      await c.query(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, claimed_at, started_at, finished_at, status,
                                    rows_returned, rows_affected, error_sqlstate, error_message, error_detail, error_hint,
                                    error_context, executor_id, trigger)
         select $1::bigint + j.idx, $4::text || (j.idx / ${JOBS_PER_SCHEDULER} + 1), $5, t, t, t + interval '4 ms', t + interval '15 ms',
                case when failed then 'failed' else 'succeeded' end,
                case when failed then null else 1 end, case when failed then null else 1 end,
                case when failed then 'P0001' end,
                case when failed then 'bench: the work failed, run ' || k end,
                case when failed then 'detail of the failure of run ' || k || ' in partition ' || $6 end,
                case when failed then 'a hint for run ' || k end,
                case when failed then 'PL/pgSQL function hist.work() line 3 at RAISE' end,
                'bench-history', 'schedule'
           from generate_series(0, $7::bigint - 1) k,
                lateral (select ($2::bigint + k) % $3 as idx) j,
                lateral (select ${dayStart} as start) s,
                lateral (select s.start + (least(interval '1 day', now() - s.start) * k / $7::bigint) as t, k % 20 = 7 as failed) r
          order by k`,
        [first, done, JOBS, db.role('sched_'), db.role('hist'), day, count],
      );
      await c.query('commit');
      done += count;
    }
    await c.query(
      `update data.run_partitions set settled_at = opened_at + interval '${PARTITION_DAYS} days 1 minute'
        where first_id < (select p.first_id from data.run_partitions p where p.opened_at is not null order by p.first_id desc offset 1 limit 1)`,
    );
  });
}

/** VACUUM ANALYZE (no autovacuum is relied on) and a CHECKPOINT, so that no measurement meets the build's writes. */
async function prepare(db: Db): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
    await c.query('vacuum analyze');
    await c.query('checkpoint');
  });
}

/** Rows, partitions and total size (tables, indexes, TOAST) of data.job_runs. */
async function history(db: Db): Promise<{ runs: number; partitions: number; size_mb: number }> {
  return withClient(db.adminUrl, async (c) => {
    const { rows } = await c.query<{ runs: string; partitions: number; bytes: string }>(
      `select (select count(*) from data.job_runs) as runs, count(*)::int as partitions,
              coalesce(sum(pg_total_relation_size(t.relid)), 0) as bytes
         from pg_partition_tree('data.job_runs'::regclass) t where t.isleaf`,
    );
    const row = rows[0]!;
    return { runs: Number(row.runs), partitions: row.partitions, size_mb: round(Number(row.bytes) / 2 ** 20, 1) };
  });
}

function executor(db: Db): Executor {
  return new Executor({
    connectionString: db.executorUrl,
    concurrency: CONCURRENCY,
    // One owner: let it have every connection.
    maxRunsPerOwner: CONCURRENCY,
    // One upkeep pass, at start; the retention measurement runs its own.
    historySeconds: EXECUTOR_SETTINGS.historySeconds.max,
    logger: pino({ level: 'warn' }, pino.destination(2)),
  });
}

async function lastRunId(c: pg.Client): Promise<number> {
  return Number((await c.query<{ id: string }>('select coalesce(max(id), 0) as id from data.job_runs')).rows[0]?.id);
}

/** Runs after `mark` by status. */
async function runsSince(c: pg.Client, mark: number): Promise<Record<string, number>> {
  const { rows } = await c.query<{ status: string; n: number }>(
    'select status, count(*)::int as n from data.job_runs where id > $1 group by status order by status',
    [mark],
  );
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}

/**
 * Polls every 20 ms until `count` runs after `mark` have ended. It reads the partitions claims
 * insert into (the newest, and any opened since) themselves: a poll over data.job_runs would be
 * planned over every partition each time, a cost the full database's drain would pay and the
 * empty one's not.
 */
async function waitForRuns(c: pg.Client, mark: number, count: number): Promise<void> {
  const newest = 'select max(first_id) as first from data.run_partitions where opened_at is not null';
  const from = Number((await c.query<{ first: string }>(newest)).rows[0]?.first);
  for (;;) {
    const { rows: partitions } = await c.query<{ name: string }>(
      'select name from data.run_partitions where first_id >= $1 and opened_at is not null',
      [from],
    );
    const counts = partitions.map(
      ({ name }) => `(select count(*) from data.${c.escapeIdentifier(name)} where id > $1 and status <> 'running')`,
    );
    const { rows } = await c.query<{ n: number }>(`select (${counts.join(' + ')})::int as n`, [mark]);
    if ((rows[0]?.n ?? 0) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Drain {
  runs_per_s: number;
  ms: number;
  server_cpu_ms_per_run: number | null;
  runs: Record<string, number>;
}

/** The round with the median rate, and every round's rate. */
function medianDrain(drains: Drain[]): Drain & { rounds_runs_per_s: number[] } {
  const sorted = [...drains].sort((a, b) => a.runs_per_s - b.runs_per_s);
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, rounds_runs_per_s: drains.map((d) => d.runs_per_s) };
}

/**
 * An executor started with the clock runs the due jobs; done when each has its ended run. After
 * the first round the due jobs (one-off, run) are made due again, as a changed run_at would.
 */
async function measureDrain(db: Db, pass: number): Promise<Drain> {
  return withClient(db.adminUrl, async (c) => {
    if (pass > 0) {
      await c.query(
        `update data.jobs set run_at = now(), next_run_at = now(), updated_at = now()
          where id < (select min(id) from data.jobs) + $1`,
        [DUE_JOBS],
      );
      await c.query('vacuum analyze data.jobs');
      await c.query('checkpoint');
    }
    const mark = await lastRunId(c);
    const started = performance.now();
    const ex = executor(db);
    await ex.start();
    await waitForRuns(c, mark, DUE_JOBS);
    const ms = performance.now() - started;
    const server = await executorServerCpu(db.adminUrl);
    await ex.stop();
    const runs = await runsSince(c, mark);
    if (runs.succeeded !== DUE_JOBS) throw new Error(`${db.kind}: the drain recorded ${JSON.stringify(runs)} for ${DUE_JOBS} due jobs`);
    return {
      runs_per_s: round((DUE_JOBS / ms) * 1000, 1),
      ms: round(ms, 0),
      server_cpu_ms_per_run: server.cpuMs === null ? null : round(server.cpuMs / DUE_JOBS, 3),
      runs,
    };
  });
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/**
 * Repeats `once` (after two untimed calls) REPS times, or fewer (at least 3) when the budget
 * runs out first; p50 and p95 of its times.
 */
async function repeat(once: () => Promise<number>): Promise<Timing> {
  await once();
  await once();
  const times: number[] = [];
  const deadline = performance.now() + BUDGET_SECONDS * 1000;
  while (times.length < REPS && (times.length < 3 || performance.now() < deadline)) times.push(await once());
  times.sort((a, b) => a - b);
  return { p50_ms: round(percentile(times, 0.5), 3), p95_ms: round(percentile(times, 0.95), 3), reps: times.length };
}

/** One statement as `user`, timed alone in `begin; set local role …; <sql>; commit`. */
async function measureRead(db: Db, user: string, sql: string, figure: string): Promise<Timing & Plan & { rows_returned: number }> {
  return withClient(db.adminUrl, async (c) => {
    const setRole = `begin; set local role ${c.escapeIdentifier(db.role(user))}`;
    let rowsReturned = 0;
    const timing = await repeat(async () => {
      await c.query(setRole);
      const t0 = performance.now();
      const result = await c.query(sql);
      const ms = performance.now() - t0;
      await c.query('commit');
      rowsReturned = result.rowCount ?? 0;
      return ms;
    });
    // After the timed runs, on the same (warm) connection, as they ran.
    const plan = await explain(c, setRole, sql, `${figure} (${db.kind})`);
    return { ...timing, ...plan, rows_returned: rowsReturned };
  });
}

interface ExplainNode {
  'Actual Rows'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
}

/** EXPLAIN (ANALYZE, BUFFERS) of the statement as the user: buffers its execution touched, rows, times. */
async function explain(c: pg.Client, setRole: string, sql: string, label: string): Promise<Plan> {
  await c.query(setRole);
  try {
    const { rows } = await c.query<{ 'QUERY PLAN': Array<{ Plan: ExplainNode; 'Execution Time': number; 'Planning Time': number }> }>(
      `explain (analyze, buffers, format json) ${sql}`,
    );
    const top = rows[0]!['QUERY PLAN'][0]!;
    const blocks = (node: ExplainNode | undefined): number => (node?.['Shared Hit Blocks'] ?? 0) + (node?.['Shared Read Blocks'] ?? 0);
    if (EXPLAIN) {
      const text = await c.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers) ${sql}`);
      process.stderr.write(`-- ${label}\n${text.rows.map((row) => row['QUERY PLAN']).join('\n')}\n\n`);
    }
    return {
      buffers: blocks(top.Plan),
      rows: top.Plan['Actual Rows'] ?? 0,
      planning_ms: round(top['Planning Time'], 3),
      execution_ms: round(top['Execution Time'], 3),
    };
  } finally {
    await c.query('commit');
  }
}

interface GraphQLJob {
  id: string | number;
  runs: { nodes: Array<{ id: string | number }> };
}

/** The GraphQL server on the database's $authenticator, viewer's token, one request at a time. */
async function measureGraphQL(db: Db): Promise<Timing & { node_cpu_ms_per_request: number }> {
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ role: 'viewer', exp: now + 3600, iat: now })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .sign(new TextEncoder().encode(SECRET));
  const server = await startGraphQLServer({
    connectionString: db.authenticatorUrl,
    auth: { secret: SECRET },
    logger: pino({ level: 'warn' }, pino.destination(2)),
    port: 0,
    poolSize: 2,
    connectionsPerUser: 2,
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const body = JSON.stringify({ query: QUERY });
    const once = async (): Promise<GraphQLJob[]> => {
      const { status, text } = await post(server, agent, token, body);
      const result = JSON.parse(text) as { data?: { jobs: { nodes: GraphQLJob[] } }; errors?: unknown };
      if (status !== 200 || result.errors || !result.data) throw new Error(`GraphQL request failed (HTTP ${status}): ${text.slice(0, 500)}`);
      return result.data.jobs.nodes;
    };
    // The same jobs and runs as the SQL read: both read the views as they are now.
    const viaGraphQL = await once();
    const viaSql = await withClient(db.adminUrl, async (c) => {
      await c.query(`begin; set local role ${c.escapeIdentifier(db.role('viewer'))}`);
      const { rows } = await c.query<{ jobs: string }>(MY_JOBS_SQL);
      await c.query('commit');
      return JSON.parse(rows[0]!.jobs) as Array<{ id: number; runs: Array<{ id: number }> }>;
    });
    const ids = (jobs: Array<{ id: string | number; runs: Array<{ id: string | number }> }>): string =>
      JSON.stringify(jobs.map((job) => [String(job.id), job.runs.map((run) => String(run.id))]));
    const graphqlIds = ids(viaGraphQL.map((job) => ({ id: job.id, runs: job.runs.nodes })));
    if (graphqlIds !== ids(viaSql) || viaSql.length !== 20) {
      throw new Error(`${db.kind}: GraphQL and SQL disagree on viewer's jobs:\n  graphql ${graphqlIds.slice(0, 400)}\n  sql     ${ids(viaSql).slice(0, 400)}`);
    }
    let requests = 0;
    const cpu = process.cpuUsage();
    const timing = await repeat(async () => {
      const t0 = performance.now();
      await once();
      requests++;
      return performance.now() - t0;
    });
    const used = process.cpuUsage(cpu);
    return { ...timing, node_cpu_ms_per_request: round((used.user + used.system) / 1000 / requests, 3) };
  } finally {
    agent.destroy();
    await server.stop().catch((error: unknown) => process.stderr.write(`server stop failed: ${String(error)}\n`));
  }
}

function post(server: RunningGraphQLServer, agent: Agent, token: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}/graphql`,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          authorization: `Bearer ${token}`,
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface Action {
  action: string;
  partition_name: string;
  rows_before: string | null;
  rows_kept: string | null;
}

/**
 * One pass of code.maintain_run_history(now()), timed, in a transaction that holds the settings
 * row first: the running executor's own pass (it does one at start) then returns at once
 * instead of doing the work, and ours never meets it. `before` runs first, in the same
 * transaction, untimed.
 */
async function maintainPass(c: pg.Client, before: string): Promise<{ ms: number; actions: Array<Record<string, unknown>> }> {
  if (EXPLAIN) {
    // The plans of the statements inside the pass (dynamic SQL included), as notices.
    await c.query(`load 'auto_explain'; set auto_explain.log_min_duration = 50; set auto_explain.log_analyze = on;
                   set auto_explain.log_buffers = on; set auto_explain.log_nested_statements = on; set auto_explain.log_level = notice`);
  }
  await c.query('begin');
  try {
    await c.query('select from data.history_settings for update');
    await c.query(before);
    const t0 = performance.now();
    const { rows } = await c.query<Action>('select * from code.maintain_run_history(now())');
    const ms = performance.now() - t0;
    await c.query('commit');
    if (EXPLAIN) await c.query('set auto_explain.log_min_duration = -1');
    return {
      ms: round(ms, 1),
      actions: rows.map((row) => ({
        action: row.action,
        partition: row.partition_name,
        rows_before: row.rows_before === null ? null : Number(row.rows_before),
        rows_kept: row.rows_kept === null ? null : Number(row.rows_kept),
      })),
    };
  } catch (error) {
    await c.query('rollback');
    throw error;
  }
}

/**
 * Retention on the full database while an executor runs jobs due every second: the oldest day
 * past retention, one pass timed (it truncates that day's partition), then a second pass with
 * that partition eligible again (it drops it, empty now, if it gets the lock on data.job_runs
 * within the 20 ms data.drop_run_partition waits).
 */
async function measureRetention(db: Db): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
    c.on('notice', (notice) => process.stderr.write(`-- retention pass: ${notice.message ?? ''}\n\n`));
    const sizeBefore = await history(db);
    const mark = await lastRunId(c);
    const ex = executor(db);
    await ex.start();
    await c.query(`begin; set local role ${c.escapeIdentifier(db.role('ticker'))};
      select api.schedule_job('hist.work()', schedule => '* * * * * *', name => 'tick ' || i) from generate_series(1, ${TICKING_JOBS}) i;
      commit`);
    // A few seconds of ticking before and after the passes.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // Partition 0 (the oldest PARTITION_DAYS days) closed DAYS - PARTITION_DAYS days ago at
    // midnight, partition 1 PARTITION_DAYS later: only partition 0 closed more than keep days ago,
    // and all its runs are older than that.
    const keep = DAYS - PARTITION_DAYS - 1;
    const truncate = await maintainPass(
      c,
      `update data.history_settings set keep_days = ${keep}, keep_failed_days = ${keep}, keep_last_runs = 0`,
    );
    const pruned = truncate.actions.filter((a) => a.action === 'truncated' || a.action === 'compacted').map((a) => String(a.partition));
    const drop = await maintainPass(c, `update data.run_partitions set pruned_at = null where name = any ('{${pruned.join(',')}}'::text[])`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await ex.stop();
    const runs = await runsSince(c, mark);
    const lateness = (
      await c.query<{ p50: number | null; p99: number | null; max: number | null }>(
        `select percentile_cont(0.5) within group (order by extract(epoch from started_at - scheduled_for) * 1000) as p50,
                percentile_cont(0.99) within group (order by extract(epoch from started_at - scheduled_for) * 1000) as p99,
                max(extract(epoch from started_at - scheduled_for) * 1000) as max
           from data.job_runs where id > $1 and status = 'succeeded'`,
        [mark],
      )
    ).rows[0];
    const sizeAfter = await history(db);
    const failed = FAILED_STATUSES.reduce((sum, status) => sum + (runs[status] ?? 0), 0);
    report('retention', {
      truncate_pass_ms: truncate.ms,
      truncate_actions: truncate.actions,
      drop_pass_ms: drop.ms,
      drop_actions: drop.actions,
      before: sizeBefore,
      after: sizeAfter,
      ticking_jobs: TICKING_JOBS,
      runs_meanwhile: runs,
      lateness_ms: { p50: round(lateness?.p50 ?? NaN, 1), p99: round(lateness?.p99 ?? NaN, 1), max: round(lateness?.max ?? NaN, 1) },
      keep_days: keep,
    });
    if (failed > 0) throw new Error(`retention: ${failed} runs failed, timed out, were rejected or lost meanwhile: ${JSON.stringify(runs)}`);
    if (pruned.length === 0) throw new Error(`retention: the pass pruned nothing: ${JSON.stringify(truncate.actions)}`);
  });
}

await main();
