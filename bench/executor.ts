/**
 * npm run bench:executor — executor throughput and lateness, beside the machine's limit.
 *
 * Prints one JSON line per figure. Target: DATABASE_URL (a superuser URL; a fresh database is
 * created next to it and dropped afterwards) or, without it, an embedded PostgreSQL in a
 * temporary directory. Durable settings (fsync on): every run record is really committed.
 *
 * Figures:
 *  - limit_runs_per_s: raw `pg` at the same concurrency doing the minimal per-run transaction
 *    (claim a row with SKIP LOCKED, SET LOCAL ROLE, call the no-op, write a log row, commit);
 *  - drain_runs_per_s / drain_ms: the executor draining 10,000 jobs due at the same instant,
 *    with every check and a durable run record per run; plus p50/p99 lateness of that drain;
 *  - steady_p50/p99_lateness_ms: jobs due at a steady 500 per second;
 *  - wakeup_lateness_ms: an idle executor and one job due in one second.
 */
import { availableParallelism } from 'node:os';
import pg from 'pg';
import { withBenchDatabase, withClient } from './database.ts';
import { pino } from 'pino';
import { Executor } from '../server/executor/executor.ts';
import { EXECUTOR_SETTINGS } from '../server/executor/options.ts';

const JOBS = Number(process.env.BENCH_JOBS ?? 10_000);
// One connection per core did best on the 2-core machines (more only adds contention).
// At most the executor's own bound on concurrency (EXECUTOR_SETTINGS), whatever the machine.
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? Math.min(availableParallelism(), EXECUTOR_SETTINGS.concurrency.max));
const BATCH = Number(process.env.BENCH_BATCH ?? 500);
const STEADY_RATE = 500;
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 10);

function report(figure: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ bench: 'executor', figure, value: Math.round(value * 100) / 100, unit, ...extra })}\n`);
}

async function main(): Promise<void> {
  await withBenchDatabase(async ({ adminUrl, name: database, version }) => {
    const executorUrl = await setUp(adminUrl, database);
    report('setup', 0, 'info', { postgres: version, jobs: JOBS, concurrency: CONCURRENCY, batch: BATCH });

    await measureLimit(adminUrl, database);
    await measureDrain(adminUrl, executorUrl);
    await measureSteady(adminUrl, executorUrl);
    await measureWakeup(adminUrl, executorUrl);
  });
}

/** Owner role $bench with a security definer no-op; user alice; a password for $executor. */
async function setUp(adminUrl: string, database: string): Promise<string> {
  return withClient(adminUrl, async (c) => {
    const role = (nick: string): string => c.escapeIdentifier(`${database}$${nick}`);
    await c.query(`begin;
      set local role ${role('mgr')};
      call mgr.re_create_role('bench', null, true);
      call mgr.add_user('alice', null, true, '{bench}');
      set local role ${role('bench')};
      create schema bench;
      create function bench.noop() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;
      commit`);
    await c.query(`alter role ${role('executor')} password 'bench'`);
    const url = new URL(adminUrl);
    url.username = encodeURIComponent(`${database}$executor`);
    url.password = 'bench';
    return url.toString();
  });
}

/** `count` jobs (one-off, calling bench.noop()) due at `dueSql`, as alice would schedule them. */
async function insertJobs(adminUrl: string, database: string | null, count: number, dueSql: string): Promise<void> {
  await withClient(adminUrl, async (c) => {
    const db = database ?? (await c.query('select current_database() as d')).rows[0].d;
    await c.query(
      `insert into data.jobs (owner, function_signature, function_owner, arguments, run_at, time_zone, options, next_run_at)
       select $1, 'bench.noop()', $2, '[]', due, 'UTC', code.job_options('{}'), due
         from (select ${dueSql} as due from generate_series(0, $3 - 1) i) d`,
      [`${db}$alice`, `${db}$bench`, count],
    );
  });
}

async function runStats(adminUrl: string): Promise<{ n: number; p50: number; p99: number; first: Date; last: Date }> {
  return withClient(adminUrl, async (c) => {
    const { rows } = await c.query(`
      select count(*)::int as n,
             percentile_cont(0.5) within group (order by extract(epoch from started_at - scheduled_for) * 1000) as p50,
             percentile_cont(0.99) within group (order by extract(epoch from started_at - scheduled_for) * 1000) as p99,
             min(started_at) as first, max(finished_at) as last
        from data.job_runs where status = 'succeeded'`);
    return rows[0];
  });
}

async function waitForRuns(adminUrl: string, count: number): Promise<void> {
  await withClient(adminUrl, async (c) => {
    for (;;) {
      const { rows } = await c.query(`select count(*)::int as n from data.job_runs where status <> 'running'`);
      if (rows[0].n >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
}

function executor(executorUrl: string): Executor {
  return new Executor({
    connectionString: executorUrl,
    concurrency: CONCURRENCY,
    batchSize: BATCH,
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
  });
}

/** The physical limit: the minimal per-run transaction, one commit per run, raw pg. */
async function measureLimit(adminUrl: string, database: string): Promise<void> {
  await withClient(adminUrl, (c) =>
    c.query(`create table bench.queue (id bigint primary key); create table bench.log (id bigint, at timestamptz default now());
             insert into bench.queue select generate_series(1, ${JOBS})`),
  );
  const role = `"${database}$alice"`;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, () =>
      withClient(adminUrl, async (c) => {
        for (;;) {
          await c.query('begin');
          const { rows } = await c.query('delete from bench.queue where id = (select id from bench.queue limit 1 for update skip locked) returning id');
          if (rows.length === 0) {
            await c.query('commit');
            return;
          }
          await c.query(`set local role ${role}`);
          await c.query('select bench.noop()');
          await c.query('reset role');
          await c.query('insert into bench.log (id) values ($1)', [rows[0].id]);
          await c.query('commit');
        }
      }),
    ),
  );
  const ms = performance.now() - started;
  report('limit_runs_per_s', (JOBS / ms) * 1000, 'runs/s', { note: 'raw pg, one commit per run, same concurrency' });
  await withClient(adminUrl, (c) => c.query('drop table bench.queue, bench.log'));
}

async function measureDrain(adminUrl: string, executorUrl: string): Promise<void> {
  await insertJobs(adminUrl, null, JOBS, `now()`);
  const started = performance.now();
  const ex = executor(executorUrl);
  await ex.start();
  await waitForRuns(adminUrl, JOBS);
  const ms = performance.now() - started;
  await ex.stop();
  const stats = await runStats(adminUrl);
  report('drain_ms', ms, 'ms', { runs: stats.n });
  report('drain_runs_per_s', (stats.n / ms) * 1000, 'runs/s');
  report('drain_p50_lateness_ms', stats.p50, 'ms');
  report('drain_p99_lateness_ms', stats.p99, 'ms');
  await withClient(adminUrl, (c) => c.query('truncate data.job_runs; delete from data.jobs'));
}

async function measureSteady(adminUrl: string, executorUrl: string): Promise<void> {
  const ex = executor(executorUrl);
  await ex.start();
  const count = STEADY_RATE * STEADY_SECONDS;
  await insertJobs(adminUrl, null, count, `now() + interval '1 second' + i * interval '${1000 / STEADY_RATE} milliseconds'`);
  await waitForRuns(adminUrl, count);
  await ex.stop();
  const stats = await runStats(adminUrl);
  report('steady_p50_lateness_ms', stats.p50, 'ms', { rate: STEADY_RATE, seconds: STEADY_SECONDS });
  report('steady_p99_lateness_ms', stats.p99, 'ms', { rate: STEADY_RATE, seconds: STEADY_SECONDS });
  await withClient(adminUrl, (c) => c.query('truncate data.job_runs; delete from data.jobs'));
}

async function measureWakeup(adminUrl: string, executorUrl: string): Promise<void> {
  const ex = executor(executorUrl);
  await ex.start();
  await new Promise((resolve) => setTimeout(resolve, 500));
  // Through the api, as a user would, so that the NOTIFY wakes the idle executor.
  await withClient(adminUrl, async (c) => {
    await c.query(`set role "${(await c.query('select current_database() as d')).rows[0].d}$alice"`);
    await c.query(`select api.schedule_job('bench.noop()', run_at => now() + interval '1 second')`);
  });
  await waitForRuns(adminUrl, 1);
  await ex.stop();
  const stats = await runStats(adminUrl);
  report('wakeup_lateness_ms', stats.p50, 'ms', { note: 'idle executor, one job due in 1 s' });
}

await main();
