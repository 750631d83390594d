import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ConfigError, MigrationError } from '../errors.ts';
import { connectClient } from './connect.ts';

/** The numbered SQL files shipped with hardcron. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

/**
 * How long `migrate` waits for any one lock (another migrate's hold on the ledger, or a lock a
 * migration needs) before it gives up with HC_MIGRATION_LOCK_TIMEOUT, by default.
 */
export const DEFAULT_MIGRATE_LOCK_TIMEOUT_MS = 60_000;

/** SQLSTATE lock_not_available: what PostgreSQL raises when lock_timeout expires. */
const LOCK_NOT_AVAILABLE = '55P03';

const MIGRATION_FILE = /^(\d{4})_[a-z0-9_]+\.sql$/;

export interface Migration {
  /** File name, e.g. `0001_database.sql`; files apply in name order. */
  readonly name: string;
  readonly sql: string;
  /** sha256 of the file's bytes, recorded when applied. */
  readonly checksum: string;
}

export interface MigrateOptions {
  /** Superuser URL of the target database. */
  connectionString: string;
  /** Directory of numbered `.sql` files. Default: hardcron's own `sql/`. */
  migrationsDir?: string;
  /** Called after each migration commits. */
  onApplied?: (name: string) => void;
  /** Longest wait for one lock, in milliseconds (default 60,000); then HC_MIGRATION_LOCK_TIMEOUT. */
  lockTimeoutMs?: number;
}

export interface MigrateResult {
  /** Names applied by this call, in order; empty when the database was up to date. */
  readonly applied: readonly string[];
  /** How many migrations were already applied before this call. */
  readonly alreadyApplied: number;
}

/**
 * Applies the pending migrations, each in its own transaction, while a second connection holds
 * a lock on the ledger table that only a superuser can take (see `holdLedgerLock`).
 *
 * Rules: applied files are immutable (checksum), a database that knows a migration this
 * hardcron does not have is refused, and a new file may not sort before an applied one.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const migrations = await readMigrations(options.migrationsDir ?? MIGRATIONS_DIR);
  const lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_MIGRATE_LOCK_TIMEOUT_MS;
  // 0 would switch PostgreSQL's lock_timeout off: a blocked migrate would hang again.
  if (!Number.isInteger(lockTimeoutMs) || lockTimeoutMs < 1) {
    throw new ConfigError('HC_CONFIG_INVALID', `the migrator's lock timeout must be a whole number of milliseconds from 1, not ${lockTimeoutMs}`);
  }
  const client = await connectClient(options.connectionString, 'hardcron migrate');
  try {
    await requireSuperuser(client);
    await ensureLedger(client, lockTimeoutMs);
    const ledgerLock = await holdLedgerLock(options.connectionString, lockTimeoutMs, client);
    try {
      const applied = await appliedChecksums(client);
      const pending = pendingMigrations(migrations, applied);
      for (const migration of pending) {
        await applyMigration(client, migration, lockTimeoutMs, ledgerLock.pid);
        options.onApplied?.(migration.name);
      }
      return { applied: pending.map((m) => m.name), alreadyApplied: applied.size };
    } finally {
      await ledgerLock.release();
    }
  } finally {
    await client.end();
  }
}

/** Reads and orders the migration files of a directory, refusing names that break the scheme. */
export async function readMigrations(dir: string): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const seenNumbers = new Set<string>();
  const migrations: Migration[] = [];
  for (const name of names) {
    const match = MIGRATION_FILE.exec(name);
    if (!match) {
      throw new MigrationError('HC_MIGRATION_NAME', `migration file ${name} must be named NNNN_lower_case_words.sql`);
    }
    const number = match[1] as string;
    if (seenNumbers.has(number)) {
      throw new MigrationError('HC_MIGRATION_NAME', `two migration files are numbered ${number}`);
    }
    seenNumbers.add(number);
    const bytes = await readFile(join(dir, name));
    migrations.push({ name, sql: bytes.toString('utf8'), checksum: createHash('sha256').update(bytes).digest('hex') });
  }
  return migrations;
}

/** Compares the files with the ledger and returns what is left to apply, in order. */
export function pendingMigrations(migrations: readonly Migration[], applied: ReadonlyMap<string, string>): Migration[] {
  const byName = new Map(migrations.map((m) => [m.name, m]));
  for (const [name, checksum] of applied) {
    const file = byName.get(name);
    if (!file) {
      throw new MigrationError(
        'HC_MIGRATION_UNKNOWN',
        `the database has migration ${name} applied, but this hardcron has no such file: it is older than the database`,
      );
    }
    if (file.checksum !== checksum) {
      throw new MigrationError(
        'HC_MIGRATION_EDITED',
        `migration ${name} was edited after it was applied; applied migrations are never changed: ` +
          'restore the file and put the change in a new migration',
      );
    }
  }
  const lastApplied = [...applied.keys()].sort().at(-1);
  const pending = migrations.filter((m) => !applied.has(m.name));
  const early = pending.find((m) => lastApplied !== undefined && m.name < lastApplied);
  if (early) {
    throw new MigrationError(
      'HC_MIGRATION_ORDER',
      `migration ${early.name} sorts before ${lastApplied}, which is already applied: give it a higher number`,
    );
  }
  return pending;
}

async function requireSuperuser(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ role: string; superuser: boolean }>(
    'select current_user as role, rolsuper as superuser from pg_catalog.pg_roles where rolname = current_user',
  );
  const row = rows[0];
  if (!row?.superuser) {
    throw new MigrationError(
      'HC_ADMIN_RIGHTS',
      `hardcron migrate needs a superuser connection, and role ${JSON.stringify(row?.role ?? '?')} is not one: ` +
        'installing creates roles, drops schema public and owns the mgr provisioning procedures',
    );
  }
}

/**
 * The ledger lives in schema `migrations`, owned by the installing role. A schema of that name
 * owned by anyone else was not made by hardcron: refuse it rather than adopt it.
 *
 * On a first install there is no ledger to lock yet. Concurrent first installs are serialised by
 * PostgreSQL itself: the second CREATE SCHEMA waits on the catalog's unique index for the first
 * one's transaction and, once that commits, fails with a duplicate error; the ledger exists then,
 * so it is checked and created again (IF NOT EXISTS: nothing to do). Schema and table are created
 * in one transaction, so nobody sees the one without the other.
 */
async function ensureLedger(client: pg.Client, lockTimeoutMs: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await client.query<{ ours: boolean }>(
      `select n.nspowner = (select oid from pg_catalog.pg_roles where rolname = current_user) as ours
         from pg_catalog.pg_namespace n where n.nspname = 'migrations'`,
    );
    if (rows[0] && !rows[0].ours) {
      throw new MigrationError(
        'HC_MIGRATION_LEDGER',
        'schema "migrations" exists and is owned by another role: hardcron will not adopt objects it did not create',
      );
    }
    if (rows[0]?.ours && (await ledgerTableExists(client))) return;
    try {
      await inTransaction(client, lockTimeoutMs, () =>
        client.query(`
          create schema if not exists migrations;
          create table if not exists migrations.applied (
            name       text primary key,
            checksum   text not null check (checksum ~ '^[0-9a-f]{64}$'),
            applied_at timestamptz not null default pg_catalog.now(),
            applied_by name not null default session_user
          );`),
      );
      return;
    } catch (error) {
      if (sqlState(error) === LOCK_NOT_AVAILABLE) throw await lockTimeout(client, lockTimeoutMs, 'to create the migrations ledger', 'nothing was applied', [], error);
      // 23505 unique_violation, 42P06 duplicate_schema, 42P07 duplicate_table: a concurrent
      // first install created the ledger meanwhile. Once is expected; a third time is not.
      if (attempt < 3 && ['23505', '42P06', '42P07'].includes(sqlState(error) ?? '')) continue;
      throw error;
    }
  }
}

async function ledgerTableExists(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ found: boolean }>(
    `select pg_catalog.to_regclass('migrations.applied') is not null as found`,
  );
  return rows[0]?.found === true;
}

/** Runs `work` in a transaction with the migrator's lock_timeout; rolls back on error. */
async function inTransaction<T>(client: pg.Client, lockTimeoutMs: number, work: () => Promise<T>): Promise<T> {
  await client.query('begin');
  try {
    await client.query(`select pg_catalog.set_config('lock_timeout', $1::text, true)`, [`${lockTimeoutMs}ms`]);
    const result = await work();
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  }
}

interface LedgerLock {
  /** Backend pid of the connection that holds the lock (not a blocker of ours). */
  readonly pid: number;
  release(): Promise<void>;
}

/**
 * Serialises whole `migrate` runs: a second connection holds SHARE UPDATE EXCLUSIVE on the ledger
 * table until the run ends, and a concurrent run waits for it, then finds everything applied.
 *
 * Why this lock: taking it needs a privilege on the table (LOCK TABLE, or ANALYZE as its owner;
 * from PostgreSQL 17 also MAINTAIN, which members of pg_maintain have: an administrator's grant),
 * and the ledger and its schema belong to the installing superuser, so no other role can take
 * it; an advisory key, which any session may take, let anyone block upgrades. The mode
 * conflicts with itself but not with the ROW EXCLUSIVE and ACCESS SHARE locks that the run's own
 * connection takes to read and extend the ledger, nor with the brief ACCESS SHARE that functions
 * such as pg_relation_size() take, without any privilege, on a table named by its oid.
 */
async function holdLedgerLock(connectionString: string, lockTimeoutMs: number, main: pg.Client): Promise<LedgerLock> {
  const holder = await connectClient(connectionString, 'hardcron migrate (ledger lock)');
  try {
    const pid = await backendPid(holder);
    await holder.query('begin');
    // Held for the whole run: a server-wide idle-in-transaction timeout must not end it early.
    await holder.query(
      `select pg_catalog.set_config('lock_timeout', $1::text, true), pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true)`,
      [`${lockTimeoutMs}ms`],
    );
    try {
      await holder.query('lock table migrations.applied in share update exclusive mode');
    } catch (error) {
      await holder.query('rollback').catch(() => {});
      if (sqlState(error) !== LOCK_NOT_AVAILABLE) throw error;
      throw await lockTimeout(main, lockTimeoutMs, 'for the migrations ledger (another hardcron migrate is running?)', 'nothing was applied', [pid], error, 'migrations.applied');
    }
    return {
      pid,
      async release() {
        await holder.query('rollback').catch(() => {}); // nothing was written on it
        await holder.end().catch(() => {});
      },
    };
  } catch (error) {
    await holder.end().catch(() => {});
    throw error;
  }
}

async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('select pg_catalog.pg_backend_pid() as pid');
  return rows[0]?.pid ?? 0;
}

/**
 * HC_MIGRATION_LOCK_TIMEOUT, naming what most likely holds the lock: the sessions of this
 * database with an open transaction that hold locks (on `relation` when it is known), oldest
 * transaction first. PostgreSQL does not say which lock timed out, and by now nothing waits.
 */
async function lockTimeout(
  client: pg.Client,
  lockTimeoutMs: number,
  waitedFor: string,
  consequence: string,
  ourPids: readonly number[],
  cause: unknown,
  relation: string | null = null,
): Promise<MigrationError> {
  let holders = '';
  try {
    const { rows } = await client.query<{ pid: number; role: string | null; application: string | null; state: string | null; since: string | null }>(
      `select a.pid, a.usename::text as role, a.application_name as application, a.state,
              pg_catalog.to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ') as since
         from pg_catalog.pg_stat_activity a
        where a.datname = pg_catalog.current_database() and a.backend_type = 'client backend'
          and a.pid <> pg_catalog.pg_backend_pid() and a.pid <> all($1::int4[]) and a.xact_start is not null
          and exists (select from pg_catalog.pg_locks l
                       where l.pid = a.pid and l.granted and l.locktype = 'relation'
                         and ($2::text is null or l.relation = pg_catalog.to_regclass($2::text)))
        order by a.xact_start
        limit 5`,
      [ourPids, relation],
    );
    holders = rows
      .map((row) => `pid ${row.pid} (role ${JSON.stringify(row.role)}, application ${JSON.stringify(row.application)}, ${row.state ?? 'unknown state'} since ${row.since})`)
      .join('; ');
  } catch {
    // Naming the holder is a courtesy; the timeout is the error.
  }
  return new MigrationError(
    'HC_MIGRATION_LOCK_TIMEOUT',
    `hardcron migrate waited ${lockTimeoutMs} ms ${waitedFor} and gave up (lock_timeout): ${consequence}. ` +
      (holders ? `Sessions with open transactions holding locks here: ${holders}. ` : '') +
      'Let them finish (or end them), then run migrate again.',
    { cause },
  );
}

async function appliedChecksums(client: pg.Client): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; checksum: string }>(
    'select name, checksum from migrations.applied order by name',
  );
  return new Map(rows.map((row) => [row.name, row.checksum]));
}

async function applyMigration(client: pg.Client, migration: Migration, lockTimeoutMs: number, ledgerLockPid: number): Promise<void> {
  try {
    await inTransaction(client, lockTimeoutMs, async () => {
      // Objects are named with their schema in migrations; nothing resolves through a path
      // that someone else could have planted objects in.
      await client.query(`set local search_path = pg_catalog, pg_temp; set local client_min_messages = warning`);
      await client.query(migration.sql);
      await client.query('reset role');
      await client.query('insert into migrations.applied (name, checksum) values ($1, $2)', [migration.name, migration.checksum]);
    });
  } catch (error) {
    if (sqlState(error) === LOCK_NOT_AVAILABLE) {
      const consequence = `migration ${migration.name} was rolled back; those before it stay applied`;
      throw await lockTimeout(client, lockTimeoutMs, `for a lock that migration ${migration.name} needs`, consequence, [ledgerLockPid], error);
    }
    throw new MigrationError('HC_MIGRATION_FAILED', `migration ${migration.name} failed${describePgError(error, migration.sql)}`, {
      cause: error,
    });
  }
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function describePgError(error: unknown, sql: string): string {
  if (!(error instanceof Error)) return `: ${String(error)}`;
  const pgError = error as Partial<pg.DatabaseError>;
  const line = pgError.position ? ` (line ${sql.slice(0, Number(pgError.position)).split('\n').length})` : '';
  const code = pgError.code ? ` [SQLSTATE ${pgError.code}]` : '';
  const where = pgError.where ? `; ${pgError.where.split('\n')[0]}` : '';
  return `${line}: ${error.message}${code}${where}`;
}
