import { cp, mkdtemp, readdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { MIGRATIONS_DIR, ROUTINES_DIR, migrate } from '../../server/db/migrate.ts';
import { MigrationError } from '../../server/errors.ts';
import { connect, createTestDatabase, type TestDatabase } from '../support/database.ts';
import { countRows, createBilling, failureOf as statementFailure, scheduleJob } from '../support/jobs.ts';
import { runCli } from '../support/cli.ts';
import { failIfAnyoneWaits, heldAdvisoryLocks, holdOldAdvisoryKeys, waitForLockWaiters } from '../support/locks.ts';

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

/** A private copy of hardcron's routine files that a test may edit. */
async function copyOfRoutines(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hardcron-routines-'));
  dirs.push(dir);
  await cp(ROUTINES_DIR, dir, { recursive: true });
  return dir;
}

async function routineFiles(): Promise<string[]> {
  const schemas = await readdir(ROUTINES_DIR);
  return (await Promise.all(schemas.map(async (schema) => (await readdir(join(ROUTINES_DIR, schema))).map((name) => `${schema}/${name}`)))).flat();
}

async function failureOf(promise: Promise<unknown>): Promise<MigrationError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MigrationError);
  return error as MigrationError;
}

describe('the migrator', () => {
  test('refuses an applied migration that was edited, naming the file, and applies nothing', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await migrate({ connectionString: db.adminUrl, migrationsDir: dir });
    await appendFile(join(dir, '0002_schemas.sql'), '\n-- a harmless-looking edit\n');
    await writeFile(join(dir, '9999_later.sql'), 'create schema later;');

    const error = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir }));
    expect(error.code).toBe('HC_MIGRATION_EDITED');
    expect(error.message).toContain('0002_schemas.sql');
    expect(await countRows(db, `select from pg_namespace where nspname = 'later'`)).toBe(0);
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

  test('a failing migration rolls the whole run back and is reported with its file', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await writeFile(join(dir, '0900_broken.sql'), 'create schema half;\ncreate table half.t (x int);\nselect 1/0;\n');

    const error = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir }));
    expect(error.code).toBe('HC_MIGRATION_FAILED');
    expect(error.message).toMatch(/migration 0900_broken\.sql failed: division by zero.*22012.*nothing was applied/);
    expect(await countRows(db, `select from pg_namespace where nspname in ('half', 'data', 'code', 'api')`)).toBe(0);
    expect(await countRows(db, 'select from migrations.applied')).toBe(0);
    expect(await countRows(db, 'select from migrations.routines')).toBe(0);
    expect(await countRows(db, `select from pg_roles where starts_with(rolname, current_database() || '$')`)).toBe(0);

    // Without the broken file, the same database installs.
    await rm(join(dir, '0900_broken.sql'));
    expect((await migrate({ connectionString: db.adminUrl, migrationsDir: dir })).applied).toEqual((await readdir(MIGRATIONS_DIR)).sort());
  });

  test('concurrent runs apply each migration exactly once', async () => {
    const db = await freshDatabase();
    const runs = await Promise.all(Array.from({ length: 4 }, () => migrate({ connectionString: db.adminUrl })));
    const files = (await readdir(MIGRATIONS_DIR)).sort();
    expect(runs.flatMap((run) => run.applied).sort()).toEqual(files);
    expect(runs.filter((run) => run.applied.length > 0)).toHaveLength(1);
    expect(await countRows(db, 'select from migrations.applied')).toBe(files.length);
  });

  test('concurrent first installs: a run that finds another creating the ledger waits for it, then carries on', async () => {
    const db = await freshDatabase();
    // Another installer (the same superuser), caught between creating the ledger's schema and committing.
    const other = await connect(db.adminUrl);
    try {
      await other.query('begin');
      await other.query('create schema migrations');
      const install = migrate({ connectionString: db.adminUrl });
      await waitForLockWaiters(db, `a.application_name = 'hardcron migrate'`);
      await other.query('commit');
      const files = (await readdir(MIGRATIONS_DIR)).sort();
      expect((await install).applied).toEqual(files);
      expect(await countRows(db, 'select distinct name from migrations.applied')).toBe(files.length);
    } finally {
      await other.end();
    }
  });

  test('a plain user cannot block migrate: holding every advisory key hardcron used and an ANALYZE of everything in an open transaction, it watches a new migration apply', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await migrate({ connectionString: db.adminUrl, migrationsDir: dir });
    await db.addUser('mallory', { scheduler: true });
    const mallory = await db.login('mallory');
    const inTransaction = await db.login('mallory');

    const keys = await holdOldAdvisoryKeys(mallory, [db.role('mallory')]); // the old migrator key too
    await inTransaction.query('begin');
    await inTransaction.query('analyze'); // skips what she does not own, and would keep its locks until she ends
    // The lock migrate takes is beyond her.
    await mallory.query('begin');
    expect(await statementFailure(mallory, 'lock table migrations.applied in share update exclusive mode')).toMatchObject({ code: '42501' });
    await mallory.query('rollback');

    await writeFile(join(dir, '9999_after_attack.sql'), 'create schema after_attack;');
    const watch = failIfAnyoneWaits(db, `a.application_name like 'hardcron migrate%'`);
    try {
      const result = await Promise.race([migrate({ connectionString: db.adminUrl, migrationsDir: dir }), watch.failed]);
      expect(result.applied).toEqual(['9999_after_attack.sql']);
    } finally {
      watch.stop();
    }
    expect(await countRows(db, `select from pg_namespace where nspname = 'after_attack'`)).toBe(1);
    expect(await heldAdvisoryLocks(db, mallory)).toBe(keys); // all the while she held them
    await inTransaction.query('rollback');
  });

  test('a migration blocked by a lock fails after the lock timeout (HC_MIGRATION_LOCK_TIMEOUT), naming the holder; concurrent runs wait for each other', async () => {
    const db = await freshDatabase();
    const dir = await copyOfMigrations();
    await migrate({ connectionString: db.adminUrl, migrationsDir: dir });
    await db.addUser('reader');
    const reader = await db.login('reader');
    await reader.query('begin');
    await reader.query('select count(*) from api.jobs'); // ACCESS SHARE on the view and data.jobs, until she ends it
    await writeFile(join(dir, '9999_needs_jobs.sql'), 'lock table data.jobs in access exclusive mode;');

    const blocked = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir, lockTimeoutMs: 50 }));
    expect(blocked.code).toBe('HC_MIGRATION_LOCK_TIMEOUT');
    expect(blocked.message).toContain('9999_needs_jobs.sql');
    expect(blocked.message).toContain(db.role('reader'));
    expect(await countRows(db, `select from migrations.applied where name = '9999_needs_jobs.sql'`)).toBe(0);

    // A run that waits (the default timeout) holds the ledger meanwhile: another run gives up
    // naming it, and a third waits for the first to finish, then finds nothing left to do.
    const first = migrate({ connectionString: db.adminUrl, migrationsDir: dir });
    await waitForLockWaiters(db, `a.application_name = 'hardcron migrate'`);
    const impatient = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: dir, lockTimeoutMs: 50 }));
    expect(impatient.code).toBe('HC_MIGRATION_LOCK_TIMEOUT');
    expect(impatient.message).toContain('hardcron migrate (ledger lock)');
    const third = migrate({ connectionString: db.adminUrl, migrationsDir: dir });
    await waitForLockWaiters(db, `a.application_name = 'hardcron migrate (ledger lock)'`);
    await reader.query('commit');
    expect((await first).applied).toEqual(['9999_needs_jobs.sql']);
    expect((await third).applied).toEqual([]);
  });

  test('refuses an admin URL without superuser rights, with a clear error', async () => {
    const db = await freshDatabase();
    await db.admin.query(`create role "${db.name}$not_admin" login password 'pw' createrole createdb`);
    await db.admin.query(`grant all on database "${db.name}" to "${db.name}$not_admin"`);
    const error = await failureOf(migrate({ connectionString: db.urlFor(`${db.name}$not_admin`, 'pw') }));
    expect(error.code).toBe('HC_ADMIN_RIGHTS');
    expect(error.message).toMatch(/needs a superuser connection.*is not one/);
    expect(await countRows(db, `select from pg_namespace where nspname = 'migrations'`)).toBe(0);
  });

  test('install-time hijack: a pre-created hardcron role or ledger aborts the install, nothing is adopted', async () => {
    const db = await freshDatabase();
    await db.admin.query(`create role "${db.name}$code" login password 'planted'`);
    const error = await failureOf(migrate({ connectionString: db.adminUrl }));
    expect(error.code).toBe('HC_MIGRATION_FAILED');
    expect(error.message).toContain('0001_roles.sql');
    expect(error.message).toContain('already exists');
    expect(await countRows(db, 'select from migrations.applied')).toBe(0);
    expect(await countRows(db, `select from pg_namespace where nspname = 'public'`)).toBe(1);
    expect(await countRows(db, `select from pg_roles where starts_with(rolname, current_database() || '$')`)).toBe(1);

    const other = await freshDatabase();
    await other.admin.query(`create role "${other.name}$squatter"; create schema migrations authorization "${other.name}$squatter"`);
    const ledger = await failureOf(migrate({ connectionString: other.adminUrl }));
    expect(ledger.code).toBe('HC_MIGRATION_LEDGER');
    expect(await countRows(other, `select from pg_roles where starts_with(rolname, current_database() || '$')`)).toBe(1);
  });

  test("install-time hijack: functions, types and casts planted under hardcron's names stop the install and are never used", async () => {
    // In public, where a careless install would resolve names: a cast and a function.
    const inPublic = await freshDatabase();
    await inPublic.admin.query(`create type public.verdict as (reason text);
      create function public.caller() returns text language sql as $$ select 'postgres' $$;
      create function public.to_verdict(text) returns public.verdict language sql as $$ select row($1)::public.verdict $$;
      create cast (text as public.verdict) with function public.to_verdict(text) as implicit`);
    const publicError = await failureOf(migrate({ connectionString: inPublic.adminUrl }));
    expect(publicError.code).toBe('HC_MIGRATION_FAILED');
    expect(publicError.message).toContain('0001_roles.sql');
    expect(await countRows(inPublic, 'select from migrations.applied')).toBe(0);
    expect(await countRows(inPublic, `select from pg_roles where starts_with(rolname, current_database() || '$')`)).toBe(0);

    // A schema with hardcron's name, squatted with a look-alike of code.caller() and a type.
    const squatted = await freshDatabase();
    const squatter = `${squatted.name}$squatter`;
    await squatted.admin.query(`create role "${squatter}";
      create schema code authorization "${squatter}";
      set role "${squatter}";
      create type code.verdict as (reason text);
      create function code.caller() returns text language sql as $$ select 'postgres' $$;
      reset role`);
    const schemaError = await failureOf(migrate({ connectionString: squatted.adminUrl }));
    expect(schemaError.code).toBe('HC_MIGRATION_FAILED');
    expect(schemaError.message).toContain('0002_schemas.sql');
    expect(schemaError.message).toContain('already exists');
    // The failed run left nothing: no hardcron role or schema, and the squatter's objects are
    // untouched, still only theirs, and granted to nobody.
    expect(await countRows(squatted, 'select from migrations.applied')).toBe(0);
    expect(await countRows(squatted, `select from pg_roles where starts_with(rolname, current_database() || '$') and rolname <> $$${squatter}$$`)).toBe(0);
    expect(await countRows(squatted, `select from pg_namespace where nspname in ('data', 'api', 'executor', 'mgr')`)).toBe(0);
    const { rows } = await squatted.admin.query(
      `select p.proname, pg_get_userbyid(p.proowner) as owner, p.proacl::text[] as acl from pg_proc p where p.pronamespace = 'code'::regnamespace`,
    );
    expect(rows).toEqual([{ proname: 'caller', owner: squatter, acl: null }]);
    expect(await countRows(squatted, `select from pg_namespace where nspname = 'code' and nspowner = '${squatter}'::regrole`)).toBe(1);
  });
});

describe('routine files', () => {
  test('a changed file is applied again, alone, by its schema\'s owner; after a migration every file is', async () => {
    const db = await freshDatabase();
    const [migrations, routines] = [await copyOfMigrations(), await copyOfRoutines()];
    const first = await migrate({ connectionString: db.adminUrl, migrationsDir: migrations, routinesDir: routines });
    expect(first.routines.slice().sort()).toEqual((await routineFiles()).sort());
    expect((await migrate({ connectionString: db.adminUrl, migrationsDir: migrations, routinesDir: routines })).routines).toEqual([]);

    await appendFile(join(routines, 'code/identity.sql'), `
      create or replace function code.made_by() returns text language sql as $$ select 'probe' $$;`);
    const changed = await migrate({ connectionString: db.adminUrl, migrationsDir: migrations, routinesDir: routines });
    expect(changed).toMatchObject({ applied: [], routines: ['code/identity.sql'] });
    const { rows } = await db.admin.query<{ owner: string; acl: string[] | null }>(
      `select pg_get_userbyid(proowner) as owner, proacl::text[] as acl from pg_proc where oid = 'code.made_by()'::regprocedure`,
    );
    // Owned by $code, and like everything $code creates, executable by nobody else.
    expect(rows).toEqual([{ owner: db.role('code'), acl: [`"${db.role('code')}"=X/"${db.role('code')}"`] }]);

    await writeFile(join(migrations, '9000_later.sql'), 'create schema later;');
    const afterMigration = await migrate({ connectionString: db.adminUrl, migrationsDir: migrations, routinesDir: routines });
    expect(afterMigration.applied).toEqual(['9000_later.sql']);
    expect(afterMigration.routines.length).toBe(first.routines.length);
  });

  test('a routine file that fails rolls back the migrations before it, and names the file and line', async () => {
    const db = await freshDatabase();
    const [migrations, routines] = [await copyOfMigrations(), await copyOfRoutines()];
    await migrate({ connectionString: db.adminUrl, migrationsDir: migrations, routinesDir: routines });
    await writeFile(join(migrations, '9000_later.sql'), 'create schema later;');
    await appendFile(join(routines, 'api/jobs.sql'), '\ncreate or replace view api.broken as select 1/0 from data.nowhere;\n');

    const error = await failureOf(migrate({ connectionString: db.adminUrl, migrationsDir: migrations, routinesDir: routines }));
    expect(error.code).toBe('HC_MIGRATION_FAILED');
    expect(error.message).toMatch(/routine file api\/jobs\.sql failed \(line \d+\).*data\.nowhere.*42P01.*nothing was applied/);
    expect(await countRows(db, `select from pg_namespace where nspname = 'later'`)).toBe(0);
    expect(await countRows(db, `select from migrations.applied where name = '9000_later.sql'`)).toBe(0);
  });

  test('refuses a routines folder that is not one of the schemas, before connecting', async () => {
    const routines = await copyOfRoutines();
    await mkdir(join(routines, 'public'));
    await writeFile(join(routines, 'public', 'helpers.sql'), 'create function public.f() returns int language sql as $$ select 1 $$;');
    const error = await failureOf(migrate({ connectionString: 'postgres://nobody@127.0.0.1:1/none', routinesDir: routines }));
    expect(error.code).toBe('HC_MIGRATION_NAME');
    expect(error.message).toContain('public');
  });
});

/** The last commit whose `sql/` held the numbered files of the history before 0.1.0. */
const BEFORE_BASELINE = '3dfed4e';

describe('a database installed before 0.1.0', () => {
  test('is refused, unchanged, with what to do; after uninstall, migrate installs 0.1.0', async () => {
    const db = await freshDatabase();
    // The old files, from git, installed as the old hardcron did.
    const old = await mkdtemp(join(tmpdir(), 'hardcron-before-baseline-'));
    dirs.push(old);
    const git = promisify(execFile);
    const { stdout } = await git('git', ['ls-tree', '--name-only', BEFORE_BASELINE, 'sql/'], { cwd: join(ROUTINES_DIR, '..', '..') });
    const files = stdout.split('\n').filter((path) => path.endsWith('.sql'));
    expect(files).toHaveLength(20);
    for (const path of files) {
      const { stdout: sql } = await git('git', ['show', `${BEFORE_BASELINE}:${path}`], { cwd: join(ROUTINES_DIR, '..', '..'), maxBuffer: 1 << 24 });
      await writeFile(join(old, path.slice('sql/'.length)), sql);
    }
    await migrate({ connectionString: db.adminUrl, migrationsDir: old, routinesDir: null });
    await createBilling(db);
    await db.addUser('alice', { scheduler: true, memberOf: ['billing'] });
    const alice = await db.login('alice');
    const job = await scheduleJob(alice, 'billing.close_day(date)', ['2026-01-01'], { schedule: '0 3 * * *' });
    await alice.end();

    const error = await failureOf(migrate({ connectionString: db.adminUrl }));
    expect(error.code).toBe('HC_MIGRATION_BASELINE');
    expect(error.message).toContain('0001_database.sql to 0020_run_once_now.sql');
    expect(error.message).toContain('hardcron uninstall');
    expect(await countRows(db, 'select from migrations.applied')).toBe(20);
    expect(await countRows(db, 'select from migrations.routines')).toBe(0);
    expect(await countRows(db, 'select from data.jobs where id = $1', [job.id])).toBe(1);

    expect((await runCli(['uninstall', '--yes'], { DATABASE_URL: db.adminUrl })).code).toBe(0);
    const install = await runCli(['migrate'], { DATABASE_URL: db.adminUrl });
    expect(install).toMatchObject({ code: 0, stderr: '' });
    expect(install.stdout).toContain('applied 0001_roles.sql');
    expect(await countRows(db, 'select from data.jobs')).toBe(0);
  });
});
