/**
 * npm run bench:graphql — the GraphQL server beside raw `pg` doing the same read.
 *
 * Prints one JSON line per figure. Target: BENCH_DATABASE_URL or DATABASE_URL (a superuser URL;
 * a fresh database is created next to it and dropped afterwards, with its roles) or, without
 * either, an embedded PostgreSQL in a temporary directory.
 *
 * Data: user alice (a scheduler, member of owner role $bench) with 20 jobs, and user bob (member
 * of $noise) with 200 newer jobs that alice must not see; every job has RUNS_PER_JOB finished
 * runs. The read is "my 20 jobs, newest first, with their last 5 runs", as alice:
 *  - graphql: POST /graphql with alice's token over keep-alive HTTP, the JSON body parsed;
 *  - raw_pg: a pg.Pool logged in as $authenticator, per request `begin; set local role alice`,
 *    the claims as `request.jwt.claims`, one prepared query over api.jobs / api.job_runs
 *    returning the same data as JSON text (JSON.parse'd), `commit`.
 * Both run BENCH_CONCURRENCY requests at a time (default 8) for BENCH_SECONDS each (default 10),
 * after a warm-up of BENCH_WARMUP_SECONDS (default 2) each; before that, both must return the
 * same job and run ids. The GraphQL server and the load generator share this Node process
 * (node_cpu_ms_per_request is that process's CPU time per request); PostgreSQL runs beside it.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import pg from 'pg';
import { withBenchDatabase, withClient } from './database.ts';
import { pino } from 'pino';
import { startGraphQLServer, type RunningGraphQLServer } from '../server/api/server.ts';
import { sessionConfig } from '../server/db/session.ts';

function setting(name: string, fallback: number, integer = false): number {
  const value = Number(process.env[name] ?? fallback);
  if (!(value > 0) || (integer && !Number.isInteger(value))) throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}`);
  return value;
}

const SECONDS = setting('BENCH_SECONDS', 10);
const WARMUP_SECONDS = setting('BENCH_WARMUP_SECONDS', 2);
const CONCURRENCY = setting('BENCH_CONCURRENCY', 8, true);
const ALICE_JOBS = 20;
const BOB_JOBS = 200;
const RUNS_PER_JOB = 8;
const SECRET = randomBytes(32).toString('hex');

// Eight job fields and six run fields: GraphQL Armor's default cost limit (5,000) refuses this
// read from about seven run fields on (20 × 5 nested nodes).
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

// The same read in SQL, through the same views, as one JSON document.
const RAW_SQL = `
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

interface Job {
  id: string | number;
  runs: Array<{ id: string | number }>;
}

function report(figure: string, values: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ bench: 'graphql', figure, ...values })}\n`);
}

async function main(): Promise<void> {
  await withBenchDatabase(async ({ adminUrl, name: database, target, version }) => {
    const authenticatorUrl = await setUp(adminUrl, database);
    report('machine', {
      postgres: version,
      target,
      node: process.version,
      cpus: availableParallelism(),
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_gb: Math.round(totalmem() / 2 ** 30),
      jobs: { alice: ALICE_JOBS, bob: BOB_JOBS, runs_per_job: RUNS_PER_JOB },
      seconds: SECONDS,
      warmup_seconds: WARMUP_SECONDS,
      concurrency: CONCURRENCY,
      note: 'GraphQL server and load generator in one Node process',
    });
    await measure(adminUrl, authenticatorUrl, database);
  });
}

/**
 * Owner roles $bench (alice's) and $noise (bob's), each with a security definer no-op; alice's
 * jobs, then bob's (newer, so alice's newest-first read must skip past them); finished runs for
 * every job; a password for $authenticator, whose URL is returned.
 */
async function setUp(adminUrl: string, database: string): Promise<string> {
  return withClient(adminUrl, async (c) => {
    const role = (nick: string): string => c.escapeIdentifier(`${database}$${nick}`);
    const noop = (schema: string): string => `
      set local role ${role(schema)};
      create schema ${schema};
      create function ${schema}.noop() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select $$;`;
    await c.query(`begin;
      set local role ${role('mgr')};
      call mgr.re_create_role('bench', null, true);
      call mgr.re_create_role('noise', null, true);
      call mgr.add_user('alice', null, true, '{bench}');
      call mgr.add_user('bob', null, true, '{noise}');
      ${noop('bench')}
      ${noop('noise')}
      commit`);
    for (const [user, schema, count] of [['alice', 'bench', ALICE_JOBS], ['bob', 'noise', BOB_JOBS]] as const) {
      await c.query(`begin;
        set local role ${role(user)};
        select api.schedule_job('${schema}.noop()', schedule => '0 3 * * *', name => '${user} ' || i)
          from generate_series(1, ${count}) i;
        commit`);
    }
    await c.query(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status, rows_returned)
       select j.id, j.owner, j.function_owner, t, t + interval '3 ms', t + interval '9 ms', 'succeeded', 1
         from data.jobs j, generate_series(1, ${RUNS_PER_JOB}) k, lateral (select now() - k * interval '1 day' as t) s
        order by j.id, k desc`,
    );
    await c.query('analyze data.jobs, data.job_runs');
    const password = randomBytes(16).toString('hex');
    await c.query(`alter role ${role('authenticator')} password ${c.escapeLiteral(password)}`);
    const url = new URL(adminUrl);
    url.username = encodeURIComponent(`${database}$authenticator`);
    url.password = password;
    return url.toString();
  });
}

async function measure(adminUrl: string, authenticatorUrl: string, database: string): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const claims = { role: 'alice', exp: now + 3600, iat: now };
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(SECRET));

  const server = await startGraphQLServer({
    connectionString: authenticatorUrl,
    auth: { secret: SECRET },
    logger: pino({ level: 'warn' }, pino.destination(2)),
    port: 0,
    poolSize: CONCURRENCY,
    // One user makes every request here: give it the whole pool, as the raw path has.
    connectionsPerUser: CONCURRENCY,
  });
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const pool = new pg.Pool({ ...sessionConfig(authenticatorUrl, 'hardcron bench raw'), max: CONCURRENCY });
  try {
    const body = JSON.stringify({ query: QUERY });
    const viaGraphQL = async (): Promise<Job[]> => {
      const { status, text } = await post(server, agent, token, body);
      const result = JSON.parse(text) as { data?: { jobs: { nodes: Array<Job & { runs: { nodes: Job['runs'] } }> } }; errors?: unknown };
      if (status !== 200 || result.errors || !result.data) throw new Error(`GraphQL request failed (HTTP ${status}): ${text.slice(0, 500)}`);
      return result.data.jobs.nodes.map((job) => ({ ...job, runs: job.runs.nodes }));
    };
    const setRole = `begin; set local role ${pg.escapeIdentifier(`${database}$alice`)}`;
    const claimsText = JSON.stringify(claims);
    const viaPg = async (): Promise<Job[]> => {
      const client = await pool.connect();
      try {
        await client.query(setRole);
        await client.query(`select set_config('request.jwt.claims', $1, true)`, [claimsText]);
        const { rows } = await client.query<{ jobs: string }>({ name: 'bench_my_jobs', text: RAW_SQL });
        await client.query('commit');
        client.release();
        return JSON.parse(rows[0]!.jobs) as Job[];
      } catch (error) {
        client.release(error as Error);
        throw error;
      }
    };

    await verify(adminUrl, database, await viaGraphQL(), await viaPg());

    await run(viaGraphQL, WARMUP_SECONDS);
    await run(viaPg, WARMUP_SECONDS);
    const graphql = await run(viaGraphQL, SECONDS);
    report('graphql', graphql);
    const raw = await run(viaPg, SECONDS);
    report('raw_pg', raw);
    report('ratio', { graphql_over_raw: round(graphql.requests_per_s / raw.requests_per_s, 3) });
  } finally {
    agent.destroy();
    await server.stop().catch((error: unknown) => process.stderr.write(`server stop failed: ${String(error)}\n`));
    await pool.end();
  }
}

/** Both paths must return alice's 20 newest jobs and, for each, its 5 newest runs. */
async function verify(adminUrl: string, database: string, viaGraphQL: Job[], viaPg: Job[]): Promise<void> {
  const expected = await withClient(adminUrl, async (c) => {
    const { rows } = await c.query<{ id: string; runs: string[] }>(
      `select j.id::text, array(select r.id::text from data.job_runs r where r.job_id = j.id order by r.id desc limit 5) as runs
         from data.jobs j where j.owner = $1 order by j.id desc limit 20`,
      [`${database}$alice`],
    );
    return rows.map((row) => ({ id: row.id, runs: row.runs }));
  });
  const ids = (jobs: Job[]): string => JSON.stringify(jobs.map((job) => ({ id: String(job.id), runs: job.runs.map((run) => String(run.id)) })));
  const want = JSON.stringify(expected);
  if (expected.length !== ALICE_JOBS || expected.some((job) => job.runs.length !== 5)) throw new Error(`set-up is wrong: ${want}`);
  if (ids(viaGraphQL) !== want) throw new Error(`the GraphQL path returned other jobs or runs:\n  got      ${ids(viaGraphQL)}\n  expected ${want}`);
  if (ids(viaPg) !== want) throw new Error(`the raw pg path returned other jobs or runs:\n  got      ${ids(viaPg)}\n  expected ${want}`);
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

type Figures = {
  requests_per_s: number;
  p50_ms: number;
  p99_ms: number;
  requests: number;
  concurrency: number;
  seconds: number;
  /** CPU time of this Node process (server and load generator) per request, and per second of wall time. */
  node_cpu_ms_per_request: number;
  node_cpu_share: number;
};

/** CONCURRENCY loops, each issuing the next request when its last one answered, for `seconds`. */
async function run(work: () => Promise<unknown>, seconds: number): Promise<Figures> {
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await work();
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const { user, system } = process.cpuUsage(cpu);
  const cpuMs = (user + system) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    requests_per_s: round(latencies.length / elapsed, 1),
    p50_ms: round(at(0.5), 2),
    p99_ms: round(at(0.99), 2),
    requests: latencies.length,
    concurrency: CONCURRENCY,
    seconds: round(elapsed, 2),
    node_cpu_ms_per_request: round(cpuMs / latencies.length, 3),
    node_cpu_share: round(cpuMs / 1000 / elapsed, 2),
  };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

await main();
