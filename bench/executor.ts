/**
 * npm run bench:executor — hardcron's executor beside the machine's limit and beside
 * graphile-worker, in one run on one database server.
 *
 * Prints one JSON line per figure. Target: BENCH_DATABASE_URL or DATABASE_URL (a superuser URL;
 * a fresh database is created next to it and dropped afterwards) or, without either, an embedded
 * PostgreSQL in a temporary directory. Durable settings (fsync on): every commit is really
 * committed.
 *
 * The work of every run, in all three: a call of the SECURITY DEFINER function bench.work(),
 * owned by the owner role $bench, which inserts one row into bench.done. Each measurement checks
 * that bench.done holds exactly one row per job afterwards.
 *
 * Settings (environment):
 *  - BENCH_JOBS (default 10,000): jobs in each drain;
 *  - BENCH_CONCURRENCY (default 8): connections running runs, the same for all three: the
 *    executor's `concurrency` (and its `maxRunsPerOwner`, since the benchmark has one owner), the
 *    limit's connections, graphile-worker's `concurrentJobs`;
 *  - BENCH_GW_LOCAL_QUEUE (default 500): graphile-worker's `localQueue.size` (jobs fetched and
 *    locked at once);
 *  - BENCH_GW_COMPLETE_DELAY_MS (default 0): graphile-worker's `completeJobBatchDelay` (and
 *    `failJobBatchDelay`);
 *  - BENCH_STEADY_SECONDS (default 10): length of the steady measurement;
 *  - BENCH_STEADY_CONCURRENCY (default 16): the executor's connections in the steady
 *    measurements, at most half of them per owner.
 *
 * Figures:
 *  - limit_runs_per_s: raw `pg` at the same concurrency doing the minimal per-run transaction
 *    (claim a row with FOR UPDATE SKIP LOCKED, SET LOCAL ROLE, call bench.work(), write a log
 *    row, commit), one round trip per run like the executor's;
 *  - limit_notify_runs_per_s: the same with a NOTIFY in each transaction, as each of the
 *    executor's run transactions sends (run events): a transaction that notified holds one
 *    lock for the whole server from just before its commit until the commit is flushed, so
 *    such commits are flushed one at a time, never grouped;
 *  - graphile_worker_runs_per_s / graphile_worker_ms: graphile-worker, in its own schema of the
 *    same database, with its local queue and batched completion, draining the same number of jobs
 *    whose task calls bench.work();
 *  - drain_runs_per_s / drain_ms: the executor draining the jobs, all due at the same instant,
 *    with every check and a durable run record per run; plus p50/p99 lateness of that drain and
 *    the mean number of runs per claim (drain_runs_per_claim), and the rate over the first and
 *    the second half of the runs (drain_first_half/second_half_runs_per_s);
 *  - ratio_hardcron_over_graphile_worker, ratio_hardcron_over_limit: drain rate over each;
 *  - drain_server_cpu_ms_per_run / drain_node_cpu_ms_per_run / drain_connections: CPU time of
 *    the executor's server processes (read from /proc, so only when PostgreSQL runs on this
 *    machine) and of this process per run, and the executor's connections, during the drain;
 *  - steady_p50/p99_lateness_ms: jobs due at a steady 500 per second; and the same beside an owner
 *    whose runs sleep 2 s each, four jobs due every second (steady_slow_owner_p50/p99_lateness_ms,
 *    the steady owner's runs only), both with BENCH_STEADY_CONCURRENCY connections, half of them
 *    at most per owner (the default share);
 *  - wakeup_lateness_ms: an idle executor and one job due in one second; wakeup_no_listen_lateness_ms
 *    the same without LISTEN, polling every 100 ms.
 */
import { pino } from 'pino';
import { Logger as WorkerLogger, makeWorkerUtils, run as runWorker } from 'graphile-worker';
import { executorServerCpu, withBenchDatabase, withClient } from './database.ts';
import { Executor } from '../server/executor/executor.ts';
import { EXECUTOR_SETTINGS } from '../server/executor/options.ts';

const JOBS = Number(process.env.BENCH_JOBS ?? 10_000);
// Eight connections, within the executor's bound (EXECUTOR_SETTINGS); each run holds one for its
// transaction, so the commits of several runs can share a disk flush (group commit).
const CONCURRENCY = Math.min(Number(process.env.BENCH_CONCURRENCY ?? 8), EXECUTOR_SETTINGS.concurrency.max);
// Far above its usual starting point (concurrency + 1): its guide advises much more for very fast
// jobs at high throughput, and 9 with a 250 ms completion delay did worse against the limit.
const GW_LOCAL_QUEUE = Number(process.env.BENCH_GW_LOCAL_QUEUE ?? 500);
const GW_COMPLETE_DELAY_MS = Number(process.env.BENCH_GW_COMPLETE_DELAY_MS ?? 0);
const GW_SCHEMA = 'bench_graphile_worker';
const STEADY_RATE = 500;
// The steady measurements: more connections than the drain, half of them at most per owner
// (the default share), so that the steady owner keeps the drain's eight whatever the slow one does.
const STEADY_CONCURRENCY = Math.min(Number(process.env.BENCH_STEADY_CONCURRENCY ?? 16), EXECUTOR_SETTINGS.concurrency.max);
const STEADY_SECONDS = Number(process.env.BENCH_STEADY_SECONDS ?? 10);

function report(figure: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ bench: 'executor', figure, value: Math.round(value * 100) / 100, unit, ...extra })}\n`);
}

async function main(): Promise<void> {
  await withBenchDatabase(async ({ adminUrl, name: database, version }) => {
    const executorUrl = await setUp(adminUrl, database);
    report('setup', 0, 'info', {
      postgres: version,
      jobs: JOBS,
      concurrency: CONCURRENCY,
      max_runs_per_owner: CONCURRENCY,
      steady_concurrency: STEADY_CONCURRENCY,
      graphile_worker: { local_queue: GW_LOCAL_QUEUE, complete_job_batch_delay_ms: GW_COMPLETE_DELAY_MS },
    });

    const limit = await measureLimit(adminUrl, database);
    await measureLimit(adminUrl, database, true);
    const graphileWorker = await measureGraphileWorker(adminUrl);
    const drain = await measureDrain(adminUrl, executorUrl);
    report('ratio_hardcron_over_graphile_worker', drain / graphileWorker, 'ratio');
    report('ratio_hardcron_over_limit', drain / limit, 'ratio');
    await measureSteady(adminUrl, executorUrl, false);
    await measureSteady(adminUrl, executorUrl, true);
    await measureWakeup(adminUrl, executorUrl, true);
    await measureWakeup(adminUrl, executorUrl, false);
  });
}

/**
 * Owner role $bench with the SECURITY DEFINER bench.work() (inserts one row into bench.done);
 * user alice; a password for $executor.
 */
async function setUp(adminUrl: string, database: string): Promise<string> {
  return withClient(adminUrl, async (c) => {
    const role = (nick: string): string => c.escapeIdentifier(`${database}$${nick}`);
    await c.query(`begin;
      set local role ${role('mgr')};
      call mgr.re_create_role('bench', null, true);
      call mgr.add_user('alice', null, true, '{bench}');
      set local role ${role('bench')};
      create schema bench;
      create table bench.done (id bigint generated always as identity primary key, at timestamptz not null default now());
      create function bench.work() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into bench.done default values $$;
      set local role ${role('mgr')};
      call mgr.re_create_role('slow', null, true);
      call mgr.add_user('sloth', null, true, '{slow}');
      set local role ${role('slow')};
      create schema slow;
      create function slow.nap() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_sleep(2) $$;
      commit`);
    await c.query(`alter role ${role('executor')} password 'bench'`);
    const url = new URL(adminUrl);
    url.username = encodeURIComponent(`${database}$executor`);
    url.password = 'bench';
    return url.toString();
  });
}

/** Fails unless bench.done holds exactly `count` rows (each job's work done once); empties it. */
async function checkDone(adminUrl: string, what: string, count: number): Promise<void> {
  await withClient(adminUrl, async (c) => {
    const { rows } = await c.query<{ n: number }>('select count(*)::int as n from bench.done');
    if (rows[0]?.n !== count) throw new Error(`${what}: ${rows[0]?.n} rows of work for ${count} jobs`);
    await c.query('truncate bench.done');
  });
}

/** `count` jobs (one-off, calling bench.work()) due at `dueSql`, as alice would schedule them. */
async function insertJobs(adminUrl: string, count: number, dueSql: string): Promise<void> {
  await withClient(adminUrl, async (c) => {
    const db = (await c.query('select current_database() as d')).rows[0].d;
    await c.query(
      `insert into data.jobs (owner, function_signature, function_owner, arguments, run_at, time_zone, options, next_run_at)
       select $1, 'bench.work()', $2, '[]', due, 'UTC', code.job_options('{}'), due
         from (select ${dueSql} as due from generate_series(0, $3 - 1) i) d`,
      [`${db}$alice`, `${db}$bench`, count],
    );
  });
}

async function runStats(adminUrl: string, functionOwner?: string): Promise<{ n: number; p50: number; p99: number; first: Date; middle: Date; last: Date }> {
  return withClient(adminUrl, async (c) => {
    const { rows } = await c.query(
      `
      select count(*)::int as n,
             percentile_cont(0.5) within group (order by extract(epoch from started_at - scheduled_for) * 1000) as p50,
             percentile_cont(0.99) within group (order by extract(epoch from started_at - scheduled_for) * 1000) as p99,
             min(started_at) as first, max(finished_at) as last,
             percentile_disc(0.5) within group (order by started_at) as middle
        from data.job_runs where status = 'succeeded' and ($1::text is null or function_owner = $1)`,
      [functionOwner ?? null],
    );
    return rows[0];
  });
}

/** Polls `sql` (one row, column n) every 20 ms until `done(n)`. */
async function waitFor(adminUrl: string, sql: string, done: (n: number) => boolean): Promise<void> {
  await withClient(adminUrl, async (c) => {
    for (;;) {
      const { rows } = await c.query<{ n: number }>(sql);
      if (done(rows[0]?.n ?? 0)) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
}

async function waitForRuns(adminUrl: string, count: number): Promise<void> {
  await waitFor(adminUrl, `select count(*)::int as n from data.job_runs where status <> 'running'`, (n) => n >= count);
}

function executor(executorUrl: string, concurrency = CONCURRENCY, maxRunsPerOwner = concurrency): Executor {
  return new Executor({
    connectionString: executorUrl,
    concurrency,
    // One owner in the drain: let it have every connection (the steady measurements pass half).
    maxRunsPerOwner,
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
  });
}

/**
 * The physical limit: the minimal per-run transaction, raw pg, one commit per run. The steps are
 * in one function called in one statement, so that a run costs one round trip, as the executor's
 * does (each of its runs is one implicit transaction).
 */
async function measureLimit(adminUrl: string, database: string, notify = false): Promise<number> {
  await withClient(adminUrl, (c) =>
    c.query(`create table bench.queue (id bigint primary key); create table bench.log (id bigint, at timestamptz default now());
             insert into bench.queue select generate_series(1, ${JOBS});
             create function bench.limit_run(caller text) returns bigint language plpgsql as $$
               declare claimed bigint;
               begin
                 delete from bench.queue where id = (select id from bench.queue limit 1 for update skip locked) returning id into claimed;
                 if claimed is null then return null; end if;
                 execute format('set local role %I', caller);
                 perform bench.work();
                 reset role;
                 insert into bench.log (id) values (claimed);
                 ${notify ? `perform pg_notify('bench', '');` : ''}
                 return claimed;
               end $$`),
  );
  const caller = `${database}$alice`;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, () =>
      withClient(adminUrl, async (c) => {
        for (;;) {
          const { rows } = await c.query({ name: 'limit_run', text: 'select bench.limit_run($1) as id', values: [caller] });
          if (rows[0]?.id === null) return;
        }
      }),
    ),
  );
  const ms = performance.now() - started;
  const rate = (JOBS / ms) * 1000;
  if (notify) report('limit_notify_runs_per_s', rate, 'runs/s', { note: 'the same with one NOTIFY per transaction' });
  else report('limit_runs_per_s', rate, 'runs/s', { note: 'raw pg, one round trip and one commit per run, same concurrency' });
  await withClient(adminUrl, (c) => c.query('drop function bench.limit_run; drop table bench.queue, bench.log'));
  await checkDone(adminUrl, notify ? 'limit with notify' : 'limit', JOBS);
  return rate;
}

/**
 * graphile-worker in its best configuration for many small jobs (its performance guide): a local
 * queue (jobs fetched and locked many at a time) and batched completion; prepared statements (its
 * default); a pool of max(10, concurrency + 2) as it recommends. Its own schema, migrated and
 * filled before the clock starts, as the executor's jobs are.
 */
async function measureGraphileWorker(adminUrl: string): Promise<number> {
  const logger = new WorkerLogger(() => () => {});
  const utils = await makeWorkerUtils({ connectionString: adminUrl, schema: GW_SCHEMA, logger });
  try {
    await utils.migrate();
    await utils.addJobs(Array.from({ length: JOBS }, () => ({ identifier: 'work', payload: {} })));
  } finally {
    await utils.release();
  }
  const started = performance.now();
  const runner = await runWorker({
    noHandleSignals: true,
    taskList: {
      work: async (_payload, helpers) => {
        await helpers.query('select bench.work()');
      },
    },
    preset: {
      worker: {
        connectionString: adminUrl,
        schema: GW_SCHEMA,
        concurrentJobs: CONCURRENCY,
        maxPoolSize: Math.max(10, CONCURRENCY + 2),
        logger,
        localQueue: { size: GW_LOCAL_QUEUE },
        completeJobBatchDelay: GW_COMPLETE_DELAY_MS,
        failJobBatchDelay: GW_COMPLETE_DELAY_MS,
      },
    },
  });
  // Done when every job's completion is committed (a completed job is deleted).
  await waitFor(adminUrl, `select count(*)::int as n from ${GW_SCHEMA}._private_jobs`, (n) => n === 0);
  const ms = performance.now() - started;
  await runner.stop();
  const rate = (JOBS / ms) * 1000;
  report('graphile_worker_ms', ms, 'ms', { jobs: JOBS });
  report('graphile_worker_runs_per_s', rate, 'runs/s', { note: 'local queue, batched completion, same concurrency' });
  await withClient(adminUrl, async (c) => {
    const { rows } = await c.query<{ n: number }>(`select count(*)::int as n from ${GW_SCHEMA}._private_jobs where attempts > 1 or last_error is not null`);
    if ((rows[0]?.n ?? 0) > 0) throw new Error(`graphile-worker: ${rows[0]?.n} jobs failed`);
  });
  await checkDone(adminUrl, 'graphile-worker', JOBS);
  return rate;
}

async function measureDrain(adminUrl: string, executorUrl: string): Promise<number> {
  await insertJobs(adminUrl, JOBS, `now()`);
  const started = performance.now();
  const nodeCpu = process.cpuUsage();
  const ex = executor(executorUrl);
  await ex.start();
  await waitForRuns(adminUrl, JOBS);
  const ms = performance.now() - started;
  const node = process.cpuUsage(nodeCpu);
  const server = await executorServerCpu(adminUrl);
  await ex.stop();
  const stats = await runStats(adminUrl);
  const rate = (stats.n / ms) * 1000;
  report('drain_ms', ms, 'ms', { runs: stats.n });
  report('drain_runs_per_s', rate, 'runs/s');
  // How many runs each claim that found any started: the dispatcher claims one at a time, for
  // the connections idle at that moment, so this shows whether the claim keeps them all busy.
  const claims = (await ex.metrics.claimBatchSize.get()).values;
  const value = (name: string, le?: number): number =>
    claims.find((v) => v.metricName === name && (le === undefined || v.labels.le === le))?.value ?? 0;
  const nonEmpty = value('hardcron_claim_batch_size_count') - value('hardcron_claim_batch_size_bucket', 0);
  report('drain_runs_per_claim', nonEmpty > 0 ? value('hardcron_claim_batch_size_sum') / nonEmpty : 0, 'runs', { claims: nonEmpty });
  // A rate that rises as the backlog shrinks means a cost that grows with the backlog.
  const halves = (a: Date, b: Date): number => (stats.n / 2 / (b.getTime() - a.getTime())) * 1000;
  report('drain_first_half_runs_per_s', halves(stats.first, stats.middle), 'runs/s');
  report('drain_second_half_runs_per_s', halves(stats.middle, stats.last), 'runs/s');
  report('drain_node_cpu_ms_per_run', (node.user + node.system) / 1000 / stats.n, 'ms', { note: 'this process: the executor and the benchmark' });
  if (server.cpuMs !== null) report('drain_server_cpu_ms_per_run', server.cpuMs / stats.n, 'ms', { note: "the executor's PostgreSQL processes" });
  report('drain_connections', server.connections, 'connections');
  report('drain_p50_lateness_ms', stats.p50, 'ms');
  report('drain_p99_lateness_ms', stats.p99, 'ms');
  await cleanUp(adminUrl);
  await checkDone(adminUrl, 'hardcron', JOBS);
  return rate;
}

async function measureSteady(adminUrl: string, executorUrl: string, slowOwner: boolean): Promise<void> {
  const ex = executor(executorUrl, STEADY_CONCURRENCY, Math.max(1, Math.floor(STEADY_CONCURRENCY / 2)));
  await ex.start();
  const database = await withClient(adminUrl, async (c) => (await c.query<{ d: string }>('select current_database() as d')).rows[0]?.d ?? '');
  if (slowOwner) {
    // Four jobs of another owner, each due every second, whose runs take 2 s (overlap allowed):
    // they would hold every connection if nothing held them back.
    await withClient(adminUrl, async (c) => {
      await c.query(`set role ${c.escapeIdentifier(`${database}$sloth`)}`);
      for (let i = 0; i < 4; i++) {
        await c.query(`select api.schedule_job('slow.nap()', schedule => '* * * * * *', options => '{"overlap": "allow"}')`);
      }
    });
  }
  const count = STEADY_RATE * STEADY_SECONDS;
  await insertJobs(adminUrl, count, `now() + interval '1 second' + i * interval '${1000 / STEADY_RATE} milliseconds'`);
  // Statistics for the jobs just added, before the first is due (the claim is planned afresh each
  // time, from them): as they would be on a database that has held its jobs for a while.
  await withClient(adminUrl, (c) => c.query('analyze data.jobs'));
  await waitFor(adminUrl, `select count(*)::int as n from data.job_runs where status <> 'running' and function_owner = '${database}$bench'`, (n) => n >= count);
  await ex.stop();
  const stats = await runStats(adminUrl, `${database}$bench`);
  const prefix = slowOwner ? 'steady_slow_owner' : 'steady';
  report(`${prefix}_p50_lateness_ms`, stats.p50, 'ms', { rate: STEADY_RATE, seconds: STEADY_SECONDS });
  report(`${prefix}_p99_lateness_ms`, stats.p99, 'ms', { rate: STEADY_RATE, seconds: STEADY_SECONDS });
  await cleanUp(adminUrl);
}

/**
 * Empties the runs and jobs for the next measurement, vacuums the jobs and checkpoints: each
 * measurement starts from tables without the dead rows of the one before, and without its
 * writes still to be flushed.
 */
async function cleanUp(adminUrl: string): Promise<void> {
  await withClient(adminUrl, async (c) => {
    await c.query('truncate data.job_runs cascade; delete from data.jobs');
    await c.query('vacuum analyze data.jobs');
    // And no checkpoint of the last measurement's writes falls into the next one.
    await c.query('checkpoint');
  });
}

/**
 * An idle executor and one job due in a second, scheduled through the api. With LISTEN its NOTIFY
 * wakes the executor; without (`listen` false, as on engines without LISTEN/NOTIFY) the executor
 * finds it by polling, every 100 ms here (`--poll-ms 100`).
 */
async function measureWakeup(adminUrl: string, executorUrl: string, listen: boolean): Promise<void> {
  const ex = new Executor({
    connectionString: executorUrl,
    concurrency: CONCURRENCY,
    listen,
    ...(listen ? {} : { pollIntervalMs: 100 }),
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
  });
  await ex.start();
  await new Promise((resolve) => setTimeout(resolve, 500));
  // Through the api, as a user would, so that the NOTIFY wakes the idle executor.
  await withClient(adminUrl, async (c) => {
    await c.query(`set role "${(await c.query('select current_database() as d')).rows[0].d}$alice"`);
    await c.query(`select api.schedule_job('bench.work()', run_at => now() + interval '1 second')`);
  });
  await waitForRuns(adminUrl, 1);
  await ex.stop();
  const stats = await runStats(adminUrl);
  if (listen) report('wakeup_lateness_ms', stats.p50, 'ms', { note: 'idle executor, one job due in 1 s' });
  else report('wakeup_no_listen_lateness_ms', stats.p50, 'ms', { note: 'the same without LISTEN, polling every 100 ms' });
  await cleanUp(adminUrl);
}

await main();
