import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { migrate } from '../../server/db/migrate.ts';
import { withDatabase } from '../../server/db/targets.ts';
import { eventually, freePort } from './child.ts';
import { connect, databaseHandle, withClient, type TestDatabase } from './database.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

/**
 * A primary/standby pair of PostgreSQL clusters, made from the machine's server binaries in a
 * temporary directory on free ports, to test what hardcron does when its database fails over:
 *
 * - the primary: initdb, trust authentication on 127.0.0.1 only (no Unix socket), wal_level
 *   replica, hot_standby on;
 * - the standby: `pg_basebackup -R` of the primary, streaming asynchronously (as most HA setups
 *   do: a commit does not wait for the standby) through the **replication link**, a TCP proxy
 *   that can hold back what the primary sends (`replicationDelayMs`), so that a crash loses
 *   commits the primary had acknowledged;
 * - the **address**, a TCP proxy clients connect to, pointing at the primary and moved to the
 *   standby on failover, as a virtual IP, DNS name or pooler is in production.
 *
 * Durability is traded for speed: `fsync=off` and `initdb --no-sync`. No machine crashes here; a
 * "crash" is `pg_ctl stop -m immediate` (the postmaster and its backends die at once), after which
 * the old primary is never started again, so what fsync would protect is never read back.
 *
 * As root, the binaries run as the OS user `postgres` (initdb and postgres refuse root), through
 * `runuser`. Every cluster is stopped and its directory removed by `stop()` (and by `usePgPair`
 * after the file's tests, failed or not); if the test process dies first, its exit hook kills the
 * postmasters, and the next `PgPair.start()` sweeps directories whose test process is gone.
 */

/** The server binaries; TEST_PG_BIN points elsewhere (PostgreSQL 15 or newer). */
export const PG_BIN = process.env.TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const BINARIES = ['initdb', 'pg_ctl', 'pg_basebackup', 'pg_controldata', 'postgres'] as const;
const DIR_PREFIX = 'hardcron-pg-pair-';
const OWNER_FILE = 'owner.pid';
const SUPERUSER = 'postgres';
/** Ceiling for each wait on the clusters: they pass as soon as the state holds. */
const CEILING_MS = 60_000;

const run = promisify(execFile);
const asRoot = userInfo().uid === 0;

export type PgPairErrorCode = 'PAIR_UNAVAILABLE' | 'PAIR_COMMAND' | 'PAIR_STATE';

export class PgPairError extends Error {
  constructor(
    readonly code: PgPairErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${message} [${code}]`, options);
    this.name = 'PgPairError';
  }
}

/**
 * Why a pair cannot be made on this machine (missing binaries; as root, no `postgres` OS user or
 * no `runuser`), or undefined when it can. Synchronous, for `describe.skipIf` at collection.
 */
export function pgPairUnavailable(): string | undefined {
  for (const binary of BINARIES) {
    try {
      accessSync(join(PG_BIN, binary), constants.X_OK);
    } catch {
      return `${join(PG_BIN, binary)} is missing (set TEST_PG_BIN to a PostgreSQL 15+ bin directory)`;
    }
  }
  if (asRoot) {
    // initdb and postgres refuse to run as root: they run as `postgres`, which must reach the temp dir.
    if (((statSync(tmpdir()).mode & 0o001) === 0)) return `running as root, and the OS user "${SUPERUSER}" cannot enter ${tmpdir()}`;
    const probe = spawnSync('runuser', ['-u', SUPERUSER, '--', join(PG_BIN, 'postgres'), '--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) {
      return `running as root, and "runuser -u ${SUPERUSER} -- postgres --version" fails (${probe.error?.message ?? probe.stderr.trim()})`;
    }
  }
  const version = spawnSync(join(PG_BIN, 'postgres'), ['--version'], { encoding: 'utf8' });
  const major = Number(/\(PostgreSQL\) (\d+)/.exec(version.stdout ?? '')?.[1] ?? 0);
  if (major < 15) return `${join(PG_BIN, 'postgres')} is not PostgreSQL 15 or newer (${version.stdout?.trim() || version.stderr?.trim()})`;
  return undefined;
}

/** Runs a server binary (as `postgres` when we are root); rejects with its output. */
async function pgRun(binary: (typeof BINARIES)[number], args: readonly string[], timeoutMs = CEILING_MS): Promise<string> {
  const path = join(PG_BIN, binary);
  const [file, argv] = asRoot ? ['runuser', ['-u', SUPERUSER, '--', path, ...args]] : [path, [...args]];
  try {
    const { stdout } = await run(file, argv, { timeout: timeoutMs, encoding: 'utf8', env: { PATH: process.env.PATH, LC_ALL: 'C' } });
    return stdout;
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    throw new PgPairError('PAIR_COMMAND', `${binary} ${args.join(' ')} failed: ${(stderr || stdout || String(error)).trim()}`, { cause: error });
  }
}

/** One cluster of the pair. */
export interface PgNode {
  readonly name: 'primary' | 'standby';
  readonly port: number;
  readonly dataDir: string;
  /** Superuser URL straight to this cluster (not through the address). */
  url(database?: string): string;
}

export interface PgPairOptions {
  /** How long the replication link holds what the primary sends before the standby gets it. Default 0. */
  replicationDelayMs?: number;
}

/** LSNs that show what a switchover kept or a crash lost. */
export interface FailoverReport {
  /** The old primary: its shutdown checkpoint (switchover) or its insert position just before the crash. */
  readonly primaryLsn: string;
  /** What the standby had replayed when it was promoted. */
  readonly standbyReplayLsn: string;
  /** Bytes of WAL the primary had written and the standby never replayed (0 for a clean switchover). */
  readonly lostBytes: number;
  /** When the promoted standby began to accept writes (its clock, for comparison with run records). */
  readonly promotedAt: Date;
}

const livePairs = new Set<PgPair>();
let exitHookInstalled = false;

export class PgPair {
  private stopped = false;

  private constructor(
    readonly dir: string,
    readonly primary: PgNode,
    readonly standby: PgNode,
    /** The stable address clients use (`url()`); it points at the primary until a failover moves it. */
    readonly address: TcpProxy,
    /** What the standby streams through (its primary_conninfo points here). */
    readonly replicationLink: TcpProxy,
  ) {}

  /** Makes and starts the pair; on any failure, stops what it started and removes the directory. */
  static async start(options: PgPairOptions = {}): Promise<PgPair> {
    const unavailable = pgPairUnavailable();
    if (unavailable) throw new PgPairError('PAIR_UNAVAILABLE', unavailable);
    await sweepAbandonedPairs();
    installExitHook();
    const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
    await writeFile(join(dir, OWNER_FILE), String(process.pid));
    if (asRoot) {
      const { uid, gid } = postgresIds();
      await chown(dir, uid, gid);
    }
    const node = (name: 'primary' | 'standby', port: number): PgNode => ({
      name,
      port,
      dataDir: join(dir, name),
      url: (database = 'postgres') => `postgres://${SUPERUSER}@127.0.0.1:${port}/${database}`,
    });
    const primary = node('primary', await freePort());
    const standby = node('standby', await freePort());
    // Placeholders until the proxies exist, so that stop() can clean up a half-made pair.
    const started: { link?: TcpProxy; address?: TcpProxy } = {};
    const cleanup = async (): Promise<void> => {
      await Promise.all([started.link?.close(), started.address?.close()]);
      await stopNode(standby);
      await stopNode(primary);
      await rm(dir, { recursive: true, force: true });
    };
    try {
      await pgRun('initdb', ['-D', primary.dataDir, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions']);
      await appendFile(
        join(primary.dataDir, 'postgresql.conf'),
        [
          '',
          '# hardcron failover tests (test/support/cluster.ts)',
          "listen_addresses = '127.0.0.1'",
          "unix_socket_directories = ''",
          'wal_level = replica',
          'hot_standby = on',
          'max_wal_senders = 4',
          "wal_keep_size = '512MB'",
          // Speed over durability: no machine crash happens in these tests (see the top of the file).
          'fsync = off',
          'full_page_writes = off',
          'max_connections = 60',
          "shared_buffers = '32MB'",
          // Shorter than the default 5 s, so a standby whose link came back streams again soon.
          "wal_retrieve_retry_interval = '500ms'",
          "log_line_prefix = '%m [%p] %a '",
          '',
        ].join('\n'),
      );
      await startNode(primary, dir);
      started.link = await startTcpProxy({ host: '127.0.0.1', port: primary.port }, undefined, {
        delayFromServerMs: options.replicationDelayMs ?? 0,
      });
      // The copy is taken straight from the primary (through a delayed link it takes seconds);
      // the standby then streams through the link: -R's primary_conninfo is pointed at it.
      await pgRun('pg_basebackup', [
        '-D', standby.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync',
        '-d', `host=127.0.0.1 port=${primary.port} user=${SUPERUSER}`,
      ], CEILING_MS * 2);
      const autoConf = join(standby.dataDir, 'postgresql.auto.conf');
      const conf = await readFile(autoConf, 'utf8');
      if (!/^primary_conninfo = /m.test(conf)) throw new PgPairError('PAIR_STATE', `pg_basebackup -R wrote no primary_conninfo:\n${conf}`);
      await writeFile(autoConf, conf.replace(/^primary_conninfo = .*$/m,
        `primary_conninfo = 'host=127.0.0.1 port=${started.link.port} user=${SUPERUSER} application_name=standby'`));
      await startNode(standby, dir);
      await eventually('the standby to stream from the primary', async () => {
        const { rows } = await withClient(primary.url(), (client) =>
          client.query<{ n: number }>(`select count(*)::int as n from pg_catalog.pg_stat_replication where application_name = 'standby' and state = 'streaming'`),
        );
        return rows[0]?.n === 1 ? true : undefined;
      }, CEILING_MS);
      started.address = await startTcpProxy({ host: '127.0.0.1', port: primary.port });
    } catch (error) {
      await cleanup().catch(() => {});
      throw error;
    }
    const pair = new PgPair(dir, primary, standby, started.address, started.link);
    livePairs.add(pair);
    return pair;
  }

  /** A superuser URL through the address: what an operator's tools and hardcron are given. */
  url(database = 'postgres'): string {
    return `postgres://${SUPERUSER}@127.0.0.1:${this.address.port}/${database}`;
  }

  /**
   * Moves the address to `node`; connections made through it before are destroyed, as when an
   * address moves to another machine. If it points at `node` already, nothing changes: sessions
   * on a standby that is promoted carry on, now writable.
   */
  pointAddressAt(node: PgNode): void {
    if (this.address.target.port === node.port) return;
    this.address.retarget({ host: '127.0.0.1', port: node.port }, { dropConnections: true });
  }

  /** The node the address points at now. */
  get addressedNode(): PgNode {
    return this.address.target.port === this.standby.port ? this.standby : this.primary;
  }

  /** Waits until the standby has replayed everything the primary has written so far. */
  async waitForStandbyCaughtUp(): Promise<string> {
    const lsn = await currentLsn(this.primary);
    await waitForReplay(this.standby, lsn, false);
    return lsn;
  }

  /** `pg_ctl promote`, then waits until the standby takes writes (`pg_is_in_recovery()` false). */
  async promoteStandby(): Promise<Date> {
    await pgRun('pg_ctl', ['promote', '-w', '-t', String(CEILING_MS / 1000), '-D', this.standby.dataDir]);
    return eventually('the standby to leave recovery', async () => {
      const { rows } = await withClient(this.standby.url(), (client) =>
        client.query<{ recovering: boolean; now: Date }>('select pg_catalog.pg_is_in_recovery() as recovering, pg_catalog.clock_timestamp() as now'),
      );
      return rows[0]?.recovering === false ? rows[0].now : undefined;
    }, CEILING_MS);
  }

  /**
   * A planned switchover that loses nothing: waits until the standby has caught up, stops the
   * primary (`-m fast`: its sessions are ended, it writes a shutdown checkpoint and sends it to
   * the standby), checks that the standby replayed past that checkpoint, promotes the standby
   * and moves the address to it.
   */
  async switchover(): Promise<FailoverReport> {
    await this.waitForStandbyCaughtUp();
    await pgRun('pg_ctl', ['stop', '-m', 'fast', '-w', '-D', this.primary.dataDir]);
    const controldata = await pgRun('pg_controldata', ['-D', this.primary.dataDir]);
    const checkpoint = /^Latest checkpoint location:\s+(\S+)$/m.exec(controldata)?.[1];
    if (!checkpoint) throw new PgPairError('PAIR_STATE', `no checkpoint location in pg_controldata's output:\n${controldata}`);
    const standbyReplayLsn = await waitForReplay(this.standby, checkpoint, true);
    const promotedAt = await this.promoteStandby();
    this.pointAddressAt(this.standby);
    return { primaryLsn: checkpoint, standbyReplayLsn, lostBytes: 0, promotedAt };
  }

  /**
   * An unplanned failover: the replication link breaks (what it held back is lost), the primary
   * dies (`pg_ctl stop -m immediate`), the standby is promoted at once with whatever it had, and
   * the address moves to it. With a delayed link, commits the primary acknowledged are lost.
   */
  async crashFailover(): Promise<FailoverReport> {
    const primaryLsn = await currentLsn(this.primary);
    await this.replicationLink.down();
    await pgRun('pg_ctl', ['stop', '-m', 'immediate', '-w', '-D', this.primary.dataDir]);
    const standbyReplayLsn = await replayLsn(this.standby);
    const promotedAt = await this.promoteStandby();
    this.pointAddressAt(this.standby);
    const lostBytes = await withClient(this.standby.url(), async (client) =>
      Number((await client.query<{ n: string }>('select greatest(pg_catalog.pg_wal_lsn_diff($1, $2), 0)::text as n', [primaryLsn, standbyReplayLsn])).rows[0]?.n ?? 0),
    );
    return { primaryLsn, standbyReplayLsn, lostBytes, promotedAt };
  }

  /** What the cluster logs say (the last `lines` of each), for a failing test's evidence. */
  async logTail(lines = 40): Promise<string> {
    const tail = async (name: string): Promise<string> => {
      const text = await readFile(join(this.dir, `${name}.log`), 'utf8').catch(() => '');
      return `--- ${name}.log\n${text.split('\n').slice(-lines).join('\n')}`;
    };
    return `${await tail('primary')}\n${await tail('standby')}`;
  }

  /** Stops both clusters (immediately: nothing in them matters now), closes the proxies, removes the directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all([this.address.close(), this.replicationLink.close()]);
    await Promise.all([stopNode(this.standby), stopNode(this.primary)]);
    await rm(this.dir, { recursive: true, force: true });
    livePairs.delete(this);
  }
}

/**
 * A pair for the tests of a describe block: started in beforeAll, stopped (clusters, proxies,
 * directory) in afterAll whether the tests passed or not.
 */
export function usePgPair(options: PgPairOptions = {}): () => PgPair {
  let pair: PgPair | undefined;
  beforeAll(async () => {
    pair = await PgPair.start(options);
  });
  afterAll(async () => {
    await pair?.stop();
  });
  return () => {
    if (!pair) throw new PgPairError('PAIR_STATE', 'the pair is started in beforeAll');
    return pair;
  };
}

async function startNode(node: PgNode, dir: string): Promise<void> {
  await pgRun('pg_ctl', ['start', '-w', '-t', String(CEILING_MS / 1000), '-D', node.dataDir, '-l', join(dir, `${node.name}.log`), '-o', `-p ${node.port}`]);
}

/** Stops a cluster at once if it runs; a postmaster pg_ctl cannot stop is killed. */
async function stopNode(node: PgNode): Promise<void> {
  const pid = postmasterPid(node.dataDir);
  if (pid === undefined) return;
  try {
    await pgRun('pg_ctl', ['stop', '-m', 'immediate', '-w', '-t', '30', '-D', node.dataDir]);
  } catch {
    killPostmaster(pid, node.dataDir, 'SIGKILL');
  }
}

/** The running postmaster of `dataDir` (its pid file names a live process serving that directory). */
function postmasterPid(dataDir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const [pidLine, dirLine] = text.split('\n');
  const pid = Number(pidLine);
  if (!Number.isInteger(pid) || pid <= 0 || dirLine !== dataDir) return undefined;
  try {
    // Only a postgres process serving this directory: a pid file can outlive its process, and pids are reused.
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return command.includes('postgres') ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** SIGQUIT is PostgreSQL's immediate shutdown (the postmaster takes its backends with it); SIGKILL leaves them orphaned, so it is the last resort. */
function killPostmaster(pid: number, dataDir: string, signal: NodeJS.Signals): void {
  if (postmasterPid(dataDir) !== pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    // gone meanwhile
  }
}

async function currentLsn(node: PgNode): Promise<string> {
  return withClient(node.url(), async (client) =>
    (await client.query<{ lsn: string }>('select pg_catalog.pg_current_wal_lsn()::text as lsn')).rows[0]?.lsn ?? '0/0',
  );
}

async function replayLsn(node: PgNode): Promise<string> {
  return withClient(node.url(), async (client) =>
    (await client.query<{ lsn: string | null }>('select pg_catalog.pg_last_wal_replay_lsn()::text as lsn')).rows[0]?.lsn ?? '0/0',
  );
}

/** Waits until `standby` has replayed up to `lsn` (past it, when `beyond`: a record starting there); returns its replay LSN. */
async function waitForReplay(standby: PgNode, lsn: string, beyond: boolean): Promise<string> {
  try {
    return await eventually(`the standby to replay ${beyond ? 'past' : 'up to'} ${lsn}`, async () => {
      const { rows } = await withClient(standby.url(), (client) =>
        client.query<{ done: boolean; replayed: string }>(
          `select pg_catalog.pg_last_wal_replay_lsn()::text as replayed,
                  coalesce(case when $2 then pg_catalog.pg_last_wal_replay_lsn() > $1::pg_lsn
                                else pg_catalog.pg_last_wal_replay_lsn() >= $1::pg_lsn end, false) as done`,
          [lsn, beyond],
        ),
      );
      return rows[0]?.done ? rows[0].replayed : undefined;
    }, CEILING_MS);
  } catch (error) {
    throw new PgPairError('PAIR_STATE', `the standby did not replay ${lsn}: ${String(error)}`, { cause: error });
  }
}

function postgresIds(): { uid: number; gid: number } {
  const ids = (flag: string): number => Number(spawnSync('id', [flag, SUPERUSER], { encoding: 'utf8' }).stdout.trim());
  return { uid: ids('-u'), gid: ids('-g') };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Pairs whose test process is gone (killed before its afterAll and exit hook ran): their
 * postmasters are stopped and their directories removed. A pair of a live process is left alone.
 */
async function sweepAbandonedPairs(): Promise<void> {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    let owner = 0;
    try {
      owner = Number(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      // no owner recorded yet (its process died while making the directory) or none any more
    }
    if (owner > 0 && processAlive(owner)) continue;
    for (const name of ['standby', 'primary'] as const) {
      const dataDir = join(dir, name);
      if (existsSync(dataDir)) await stopNode({ name, port: 0, dataDir, url: () => '' }).catch(() => {});
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** If the test process exits with pairs running (a crash, a timeout), their postmasters shut down with it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pair of livePairs) {
      const pids = [pair.standby, pair.primary].flatMap((node) => {
        const pid = postmasterPid(node.dataDir);
        if (pid !== undefined) killPostmaster(pid, node.dataDir, 'SIGQUIT');
        return pid === undefined ? [] : [pid];
      });
      // Nothing can be awaited in an exit hook: wait synchronously (a few seconds at most) for
      // the postmasters to go, so that none still writes into the directory being removed.
      const deadline = Date.now() + 5_000;
      while (pids.some(processAlive) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      try {
        rmSync(pair.dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // The next sweep takes it: its owner is gone.
      }
    }
  });
}

/**
 * hardcron installed in a database of a pair, reached through the pair's address: a
 * TestDatabase (so the tests' helpers — createOwner, startExecutor, waitFor — work on it) whose
 * admin connection can be made again after a failover broke it.
 */
export interface PairDatabase extends TestDatabase {
  /** Ends the admin connection (broken by a failover) and opens a new one through the address. */
  reconnect(): Promise<void>;
}

/**
 * Creates database `name` through the pair's address, installs hardcron into it as `hardcron
 * migrate` does (migrate(), as a superuser), and returns it as a PairDatabase. Roles are
 * `<name>$<nickname>`; with trust authentication any password is accepted, but the helpers set
 * passwords anyway, as against a real server.
 */
export async function installHardcron(pair: PgPair, name = `hc_${randomBytes(3).toString('hex')}`): Promise<PairDatabase> {
  await withClient(pair.url(), (client) => client.query(`create database ${client.escapeIdentifier(name)}`));
  const adminUrl = withDatabase(pair.url(), name);
  await migrate({ connectionString: adminUrl });
  let admin = await connect(adminUrl);
  const handle = databaseHandle(name, adminUrl, () => admin);
  return {
    ...handle,
    get admin() {
      return admin;
    },
    async reconnect() {
      await admin.end().catch(() => {});
      admin = await eventually('an admin connection through the address', () => connect(adminUrl), CEILING_MS);
    },
    async drop() {
      // The cluster goes with the pair: only the connections need closing.
      await Promise.allSettled([...handle.sessions.map((client) => client.end()), admin.end()]);
    },
  };
}
