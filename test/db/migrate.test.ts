import { cp, mkdtemp, readdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { MIGRATIONS_DIR, migrate } from '../../server/db/migrate.ts';
import { MigrationError } from '../../server/errors.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';

const databases: TestDatabase[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(databases.map((db) => db.drop()));
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function freshDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ install: false });
  databases.push(db);
  return db;
}

/** A private copy of hardcron's migrations that a test may edit. */
async function copyOfMigrations(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hardcron-migrations-'));
  dirs.push(dir);
  await cp(MIGRATIONS_DIR, dir, { recursive: true });
  return dir;
}

async function failureOf(promise: Promise<unknown>): Promise<MigrationError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MigrationError);
  return error as MigrationError;
}

const countRows = async (db: TestDatabase, sql: string): Promise<number> => (await db.admin.query(sql)).rows[0].n;

describe('the migrator', () => {
  test('refuses an applied migration that was edited, naming the file, and applies nothing', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await migrate({ connectionString: db.adminUrl, migrationsDir: dir });
    await appendFile(join(dir, '0002_shell_schemas.sql'), '\n-- a harmless-looking edit\n');
    await writeFile(join(dir, '9999_later.sql'), 'create schema later;');

    const error = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir }));
    expect(error.code).toBe('HC_MIGRATION_EDITED');
    expect(error.message).toContain('0002_shell_schemas.sql');
    expect(await countRows(db, `select count(*)::int as n from pg_namespace where nspname = 'later'`)).toBe(0);
  });

  test('refuses a database with a migration it does not know, and a new file numbered below an applied one', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await writeFile(join(dir, '0500_extra.sql'), 'create schema extra;');
    await migrate({ connectionString: db.adminUrl, migrationsDir: dir });

    const unknown = await failureOf(migrate({ connectionString: db.adminUrl }));
    expect(unknown.code).toBe('HC_MIGRATION_UNKNOWN');
    expect(unknown.message).toContain('0500_extra.sql');

    await writeFile(join(dir, '0400_early.sql'), 'create schema early;');
    const order = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir }));
    expect(order.code).toBe('HC_MIGRATION_ORDER');
    expect(order.message).toContain('0400_early.sql');
  });

  test('a failing migration is rolled back whole and reported with its file and line', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await writeFile(join(dir, '0900_broken.sql'), 'create schema half;\ncreate table half.t (x int);\nselect 1/0;\n');

    const error = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir }));
    expect(error.code).toBe('HC_MIGRATION_FAILED');
    expect(error.message).toMatch(/0900_broken\.sql.*division by zero.*22012/);
    expect(await countRows(db, `select count(*)::int as n from pg_namespace where nspname = 'half'`)).toBe(0);
    const applied = (await db.admin.query('select name from migrations.applied order by name')).rows.map((r) => r.name);
    expect(applied).toEqual((await readdir(MIGRATIONS_DIR)).sort());
  });

  test('concurrent runs apply each migration exactly once', async () => {
    const db = await freshDatabase();
    const runs = await Promise.all(Array.from({ length: 4 }, () => migrate({ connectionString: db.adminUrl })));
    const files = (await readdir(MIGRATIONS_DIR)).sort();
    expect(runs.flatMap((run) => run.applied).sort()).toEqual(files);
    expect(runs.filter((run) => run.applied.length > 0)).toHaveLength(1);
    expect(await countRows(db, 'select count(*)::int as n from migrations.applied')).toBe(files.length);
  });

  test('refuses an admin URL without superuser rights, with a clear error', async () => {
    const db = await freshDatabase();
    await db.admin.query(`create role "${db.name}$not_admin" login password 'pw' createrole createdb`);
    await db.admin.query(`grant all on database "${db.name}" to "${db.name}$not_admin"`);
    const error = await failureOf(migrate({ connectionString: db.urlFor(`${db.name}$not_admin`, 'pw') }));
    expect(error.code).toBe('HC_ADMIN_RIGHTS');
    expect(error.message).toMatch(/needs a superuser connection.*is not one/);
    expect(await countRows(db, `select count(*)::int as n from pg_namespace where nspname = 'migrations'`)).toBe(0);
  });

  test('install-time hijack: a pre-created hardcron role or ledger aborts the install, nothing is adopted', async () => {
    const db = await freshDatabase();
    await db.admin.query(`create role "${db.name}$code" login password 'planted'`);
    const error = await failureOf(migrate({ connectionString: db.adminUrl }));
    expect(error.code).toBe('HC_MIGRATION_FAILED');
    expect(error.message).toContain('0001_database.sql');
    expect(error.message).toContain('already exists');
    expect(await countRows(db, 'select count(*)::int as n from migrations.applied')).toBe(0);
    expect(await countRows(db, `select count(*)::int as n from pg_namespace where nspname = 'public'`)).toBe(1);
    expect(await countRows(db, `select count(*)::int as n from pg_roles where starts_with(rolname, current_database() || '$')`)).toBe(1);

    const other = await freshDatabase();
    await other.admin.query(`create role "${other.name}$squatter"; create schema migrations authorization "${other.name}$squatter"`);
    const ledger = await failureOf(migrate({ connectionString: other.adminUrl }));
    expect(ledger.code).toBe('HC_MIGRATION_LEDGER');
    expect(await countRows(other, `select count(*)::int as n from pg_roles where starts_with(rolname, current_database() || '$')`)).toBe(1);
  });
});
