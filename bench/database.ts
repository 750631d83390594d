import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedCluster } from '../server/db/embedded.ts';
import { migrate } from '../server/db/migrate.ts';
import { sessionConfig } from '../server/db/session.ts';
import { parseDatabaseUrl, withDatabase } from '../server/db/targets.ts';

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  // Pinned like every hardcron session, the baselines included, so that they compare like with like.
  const client = new pg.Client(sessionConfig(url, 'hardcron bench'));
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface BenchDatabase {
  /** Superuser URL of the fresh, migrated database. */
  readonly adminUrl: string;
  /** Its name (bench_<random>); its roles are `<name>$<nickname>`. */
  readonly name: string;
  /** `url` (BENCH_DATABASE_URL or DATABASE_URL) or `embedded` (a temporary cluster). */
  readonly target: 'url' | 'embedded';
  /** The server's version string. */
  readonly version: string;
}

/**
 * A fresh hardcron database for one benchmark run, on BENCH_DATABASE_URL / DATABASE_URL (a
 * superuser URL) or on an embedded cluster in a temporary directory; dropped with its roles
 * afterwards, even when the benchmark fails.
 */
export async function withBenchDatabase(work: (database: BenchDatabase) => Promise<void>): Promise<void> {
  const variable = process.env.BENCH_DATABASE_URL ? 'BENCH_DATABASE_URL' : process.env.DATABASE_URL ? 'DATABASE_URL' : null;
  let clusterUrl: string;
  let stopCluster = async (): Promise<void> => {};
  if (variable) {
    clusterUrl = parseDatabaseUrl(variable, process.env[variable] as string);
  } else {
    const cluster = await startEmbeddedCluster({ dir: await mkdtemp(join(tmpdir(), 'hardcron-bench-')), ephemeral: true });
    clusterUrl = cluster.superuserUrl;
    stopCluster = () => cluster.stop();
  }
  const name = `bench_${randomBytes(4).toString('hex')}`;
  try {
    await withClient(clusterUrl, (c) => c.query(`create database ${name}`));
    const adminUrl = withDatabase(clusterUrl, name);
    await migrate({ connectionString: adminUrl });
    const version = await withClient(adminUrl, async (c) => (await c.query<{ v: string }>(`select current_setting('server_version') as v`)).rows[0]?.v ?? '?');
    await work({ adminUrl, name, target: variable ? 'url' : 'embedded', version });
  } finally {
    await withClient(clusterUrl, async (c) => {
      await c.query(`drop database if exists ${name} with (force)`);
      const { rows } = await c.query<{ r: string }>(`select rolname as r from pg_roles where starts_with(rolname, $1)`, [`${name}$`]);
      for (const { r } of rows) await c.query(`drop role ${c.escapeIdentifier(r)}`);
    }).catch((error: unknown) => process.stderr.write(`clean-up failed: ${String(error)}\n`));
    await stopCluster();
  }
}

/**
 * The CPU time so far (utime + stime from /proc, in ms) of the PostgreSQL processes of this
 * database's $executor sessions, and how many there are: null when PostgreSQL is not on this
 * machine (or a process ended meanwhile).
 */
export async function executorServerCpu(adminUrl: string): Promise<{ cpuMs: number | null; connections: number }> {
  const pids = await withClient(adminUrl, async (c) =>
    (await c.query<{ pid: number }>(`select pid from pg_stat_activity where datname = current_database() and usename = current_database() || '$executor'`)).rows.map((row) => row.pid),
  );
  const msPerTick = 1000 / 100; // USER_HZ is 100 on Linux
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      return { cpuMs: null, connections: pids.length };
    }
  }
  return { cpuMs: ticks * msPerTick, connections: pids.length };
}
