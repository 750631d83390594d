import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MigrationError } from '../errors.ts';
import { connectClient } from './connect.ts';
import { checkWholeNumber, MIGRATE_LOCK_TIMEOUT_MS } from '../settings.ts';

/** The numbered migrations shipped with hardcron: tables, types, roles, grants; frozen once released. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../sql/migrations/', import.meta.url));

/** hardcron's routines: the one definition of every function, procedure and view, one concept a file. */
export const ROUTINES_DIR = fileURLToPath(new URL('../../sql/routines/', import.meta.url));

/**
 * The schemas whose routines live in `sql/routines/<schema>/`, in the order they are applied:
 * a file may use what files of earlier schemas, or earlier names in its own, define. Bodies of
 * functions are not checked at creation (check_function_bodies is off while routines apply), so
 * the order matters only for views and for comments and grants naming another file's objects.
 */
export const ROUTINE_SCHEMAS = ['mgr', 'code', 'data', 'executor', 'server', 'api'] as const;

/** See MIGRATE_LOCK_TIMEOUT_MS (settings.ts): its bounds and default, shared with the configuration. */
export const DEFAULT_MIGRATE_LOCK_TIMEOUT_MS = MIGRATE_LOCK_TIMEOUT_MS.default;

/** SQLSTATE lock_not_available: what PostgreSQL raises when lock_timeout expires. */
const LOCK_NOT_AVAILABLE = '55P03';

const MIGRATION_FILE = /^(\d{4})_[a-z0-9_]+\.sql$/;
const ROUTINE_FILE = /^[a-z][a-z0-9_]*\.sql$/;

export interface Migration {
  /** File name, e.g. `0001_roles.sql`; files apply in name order. */
  readonly name: string;
  readonly sql: string;
  /** sha256 of the file's bytes, recorded when applied. */
  readonly checksum: string;
}

export interface Routine {
  /** Path under the routines directory, e.g. `code/cron.sql`. */
  readonly path: string;
  /** The schema the file defines routines in; they are created as its owner. */
  readonly schema: string;
  readonly sql: string;
  /** sha256 of the file's bytes, recorded when applied. */
  readonly checksum: string;
}

export interface MigrateOptions {
  /** Superuser URL of the target database. */
  connectionString: string;
  /** Directory of numbered `.sql` files. Default: hardcron's own `sql/migrations/`. */
  migrationsDir?: string;
  /** Directory of routine files, `<schema>/<concept>.sql`; null for none. Default: hardcron's own `sql/routines/`. */
  routinesDir?: string | null;
  /** Called after the run commits, once for each migration (`0001_roles.sql`) and routine file (`code/cron.sql`) applied. */
  onApplied?: (name: string) => void;
  /** Longest wait for one lock, in milliseconds (default 60,000); then HC_MIGRATION_LOCK_TIMEOUT. */
  lockTimeoutMs?: number;
}

export interface MigrateResult {
  /** Migrations applied by this call, in order; empty when the database was up to date. */
  readonly applied: readonly string[];
  /** Routine files (re-)applied by this call, in order. */
  readonly routines: readonly string[];
  /** How many migrations were already applied before this call. */
  readonly alreadyApplied: number;
}

/**
 * Brings the database to what this hardcron defines, in one transaction, while a second
 * connection holds a lock on the ledger table that only a superuser can take (see
 * `holdLedgerLock`): first the pending migrations, in order, then the routine files whose
 * checksum changed. After any migration, every routine file is applied again: a migration may
 * have dropped what a view or function depended on, and the files are what must hold. All of it
 * commits, or none of it does.
 *
 * Rules: applied migrations are immutable (checksum), a database that knows a migration this
 * hardcron does not have is refused, a new migration may not sort before an applied one, and a
 * database installed from another baseline (before 0.1.0) is refused with what to do instead.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const migrations = await readMigrations(options.migrationsDir ?? MIGRATIONS_DIR);
  const routinesDir = options.routinesDir === undefined ? ROUTINES_DIR : options.routinesDir;
  const routines = routinesDir === null ? [] : await readRoutines(routinesDir);
  const lockTimeoutMs = checkWholeNumber('lockTimeoutMs', options.lockTimeoutMs ?? DEFAULT_MIGRATE_LOCK_TIMEOUT_MS, MIGRATE_LOCK_TIMEOUT_MS);
  const client = await connectClient(options.connectionString, 'hardcron migrate');
  try {
    await requireSuperuser(client);
    await ensureLedger(client, lockTimeoutMs);
    const ledgerLock = await holdLedgerLock(options.connectionString, lockTimeoutMs, client);
    try {
      const applied = await ledger(client, 'applied');
      requireSameBaseline(migrations, applied);
      const pending = pendingMigrations(migrations, applied);
      const routinesApplied = await ledger(client, 'routines');
      const changed = pending.length > 0 ? routines : routines.filter((r) => routinesApplied.get(r.path) !== r.checksum);
      const gone = [...routinesApplied.keys()].filter((path) => !routines.some((r) => r.path === path));
      if (pending.length > 0 || changed.length > 0 || gone.length > 0) {
        await applyAll(client, pending, changed, gone, lockTimeoutMs, ledgerLock.pid);
      }
      for (const migration of pending) options.onApplied?.(migration.name);
      for (const routine of changed) options.onApplied?.(routine.path);
      return { applied: pending.map((m) => m.name), routines: changed.map((r) => r.path), alreadyApplied: applied.size };
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

/**
 * Reads the routine files, `<schema>/<concept>.sql` for the schemas of ROUTINE_SCHEMAS, in the
 * order they are applied. Anything else in the directory is refused: a file that is never
 * applied would be a definition that only looks live.
 */
export async function readRoutines(dir: string): Promise<Routine[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const stray = entries.find((entry) => !entry.isDirectory() || !(ROUTINE_SCHEMAS as readonly string[]).includes(entry.name));
  if (stray) {
    throw new MigrationError('HC_MIGRATION_NAME', `${stray.name} in the routines directory is not a folder named after one of the schemas ${ROUTINE_SCHEMAS.join(', ')}`);
  }
  const routines: Routine[] = [];
  for (const schema of ROUTINE_SCHEMAS) {
    const names = entries.some((entry) => entry.name === schema) ? (await readdir(join(dir, schema))).sort() : [];
    for (const name of names) {
      if (!ROUTINE_FILE.test(name)) {
        throw new MigrationError('HC_MIGRATION_NAME', `routine file ${schema}/${name} must be named lower_case_words.sql`);
      }
      const bytes = await readFile(join(dir, schema, name));
      routines.push({ path: `${schema}/${name}`, schema, sql: bytes.toString('utf8'), checksum: createHash('sha256').update(bytes).digest('hex') });
    }
  }
  return routines;
}

/**
 * The history before 0.1.0 was squashed into a new baseline, so the first migration's name
 * tells which history a database has. One installed from another cannot be upgraded: its
 * objects are not those the new migrations expect.
 */
export function requireSameBaseline(migrations: readonly Migration[], applied: ReadonlyMap<string, string>): void {
  const first = migrations[0]?.name;
  if (first === undefined || applied.size === 0 || applied.has(first)) return;
  const theirs = [...applied.keys()].sort();
  throw new MigrationError(
    'HC_MIGRATION_BASELINE',
    `this database was installed by a hardcron from before 0.1.0 (migrations ${theirs[0]} to ${theirs.at(-1)}), ` +
      `whose history this release replaced with a new baseline starting at ${first}; it cannot be upgraded in place. ` +
      'Note your jobs (hardcron jobs), remove the old installation (hardcron uninstall), run hardcron migrate, ' +
      'add your users again and schedule the jobs again; see CHANGELOG.md, 0.1.0',
  );
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
    if (rows[0]?.ours && (await ledgerTablesExist(client))) return;
    try {
      await inTransaction(client, lockTimeoutMs, () =>
        client.query(`
          create schema if not exists migrations;
          create table if not exists migrations.applied (
            name       text primary key,
            checksum   text not null check (checksum ~ '^[0-9a-f]{64}$'),
            applied_at timestamptz not null default pg_catalog.now(),
            applied_by name not null default session_user
          );
          create table if not exists migrations.routines (
            path       text primary key,
            checksum   text not null check (checksum ~ '^[0-9a-f]{64}$'),
            applied_at timestamptz not null default pg_catalog.now()
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

async function ledgerTablesExist(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ found: boolean }>(
    `select pg_catalog.to_regclass('migrations.applied') is not null and pg_catalog.to_regclass('migrations.routines') is not null as found`,
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

/** What the ledger table `migrations.<table>` records: name or path, and checksum. */
async function ledger(client: pg.Client, table: 'applied' | 'routines'): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; checksum: string }>(
    table === 'applied' ? 'select name, checksum from migrations.applied' : 'select path as name, checksum from migrations.routines',
  );
  return new Map(rows.map((row) => [row.name, row.checksum]));
}

async function applyAll(
  client: pg.Client,
  migrations: readonly Migration[],
  routines: readonly Routine[],
  gone: readonly string[],
  lockTimeoutMs: number,
  ledgerLockPid: number,
): Promise<void> {
  let current = 'the ledger';
  let currentSql = '';
  try {
    await inTransaction(client, lockTimeoutMs, async () => {
      // Objects are named with their schema in migrations and routines; nothing resolves through
      // a path that someone else could have planted objects in.
      await client.query(`set local search_path = pg_catalog, pg_temp; set local client_min_messages = warning`);
      for (const migration of migrations) {
        [current, currentSql] = [`migration ${migration.name}`, migration.sql];
        await client.query(migration.sql);
        await client.query('reset role');
        await client.query('insert into migrations.applied (name, checksum) values ($1, $2)', [migration.name, migration.checksum]);
      }
      // Function bodies may use functions of files applied later; views and BEGIN ATOMIC bodies
      // are still checked, so ROUTINE_SCHEMAS orders the files.
      await client.query('set local check_function_bodies = off');
      for (const routine of routines) {
        [current, currentSql] = [`routine file ${routine.path}`, routine.sql];
        // Created by the owner of its schema, as everything in that schema is.
        await client.query(
          `select pg_catalog.set_config('role', (select r.rolname from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner
                                                   where n.nspname = $1)::text, true)`,
          [routine.schema],
        );
        await client.query(routine.sql);
        await client.query('reset role');
        await client.query(
          `insert into migrations.routines (path, checksum) values ($1, $2)
           on conflict (path) do update set checksum = excluded.checksum, applied_at = excluded.applied_at`,
          [routine.path, routine.checksum],
        );
      }
      [current, currentSql] = ['the ledger', ''];
      // A routine file that is gone was dropped by a migration (or is an orphan to drop in one).
      await client.query('delete from migrations.routines where path = any($1::text[])', [gone]);
    });
  } catch (error) {
    if (sqlState(error) === LOCK_NOT_AVAILABLE) {
      throw await lockTimeout(client, lockTimeoutMs, `for a lock that ${current} needs`, 'nothing was applied', [ledgerLockPid], error);
    }
    throw new MigrationError('HC_MIGRATION_FAILED', `${current} failed${describePgError(error, currentSql)}; nothing was applied`, {
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
