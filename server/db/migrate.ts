import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MigrationError } from '../errors.ts';
import { connectClient } from './connect.ts';

/** The numbered SQL files shipped with hardcron. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

/** Serialises concurrent `migrate` runs on one database (advisory locks are per database). */
const MIGRATE_LOCK_KEY = 0x68617264_63726f6en; // "hardcron" as a bigint

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
}

export interface MigrateResult {
  /** Names applied by this call, in order; empty when the database was up to date. */
  readonly applied: readonly string[];
  /** How many migrations were already applied before this call. */
  readonly alreadyApplied: number;
}

/**
 * Applies the pending migrations, each in its own transaction, under an advisory lock.
 *
 * Rules: applied files are immutable (checksum), a database that knows a migration this
 * hardcron does not have is refused, and a new file may not sort before an applied one.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const migrations = await readMigrations(options.migrationsDir ?? MIGRATIONS_DIR);
  const client = await connectClient(options.connectionString, 'hardcron migrate');
  try {
    await requireSuperuser(client);
    await client.query('select pg_catalog.pg_advisory_lock($1)', [MIGRATE_LOCK_KEY.toString()]);
    try {
      await ensureLedger(client);
      const applied = await appliedChecksums(client);
      const pending = pendingMigrations(migrations, applied);
      for (const migration of pending) {
        await applyMigration(client, migration);
        options.onApplied?.(migration.name);
      }
      return { applied: pending.map((m) => m.name), alreadyApplied: applied.size };
    } finally {
      await client.query('select pg_catalog.pg_advisory_unlock($1)', [MIGRATE_LOCK_KEY.toString()]);
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
 */
async function ensureLedger(client: pg.Client): Promise<void> {
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
  await client.query(`
    create schema if not exists migrations;
    create table if not exists migrations.applied (
      name       text primary key,
      checksum   text not null check (checksum ~ '^[0-9a-f]{64}$'),
      applied_at timestamptz not null default pg_catalog.now(),
      applied_by name not null default session_user
    );`);
}

async function appliedChecksums(client: pg.Client): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; checksum: string }>(
    'select name, checksum from migrations.applied order by name',
  );
  return new Map(rows.map((row) => [row.name, row.checksum]));
}

async function applyMigration(client: pg.Client, migration: Migration): Promise<void> {
  await client.query('begin');
  try {
    // Objects are named with their schema in migrations; nothing resolves through a path
    // that someone else could have planted objects in.
    await client.query(`set local search_path = pg_catalog, pg_temp; set local client_min_messages = warning`);
    await client.query(migration.sql);
    await client.query('reset role');
    await client.query('insert into migrations.applied (name, checksum) values ($1, $2)', [migration.name, migration.checksum]);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw new MigrationError('HC_MIGRATION_FAILED', `migration ${migration.name} failed${describePgError(error, migration.sql)}`, {
      cause: error,
    });
  }
}

function describePgError(error: unknown, sql: string): string {
  if (!(error instanceof Error)) return `: ${String(error)}`;
  const pgError = error as Partial<pg.DatabaseError>;
  const line = pgError.position ? ` (line ${sql.slice(0, Number(pgError.position)).split('\n').length})` : '';
  const code = pgError.code ? ` [SQLSTATE ${pgError.code}]` : '';
  const where = pgError.where ? `; ${pgError.where.split('\n')[0]}` : '';
  return `${line}: ${error.message}${code}${where}`;
}
