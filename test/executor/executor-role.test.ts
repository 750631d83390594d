import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { failureOf } from '../support/jobs.ts';

/**
 * Code that resets the role inside a job lands in the executor's own role. That
 * role must be able to do nothing harmful: no table privileges, no dangerous predefined roles,
 * nothing to execute but its own api, and that api refuses what is not the executor's.
 */
describe("the executor's own role is powerless", () => {
  const db = useTestDatabase();
  let executor: pg.Client;

  beforeAll(async () => {
    executor = await db().login('executor');
  });

  test('no privilege on any table or sequence outside the system catalogs', async () => {
    const { rows } = await executor.query(`
      select c.oid::regclass::text as relation
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname !~ '^(pg_|information_schema$)' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
         and (has_table_privilege(current_user, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
              or (c.relkind = 'S' and has_sequence_privilege(current_user, c.oid, 'USAGE, UPDATE')))
         and c.oid not in ('api.jobs'::regclass, 'api.job_runs'::regclass, 'api.job_run_events'::regclass)`);
    expect(rows).toEqual([]);
    expect((await failureOf(executor, 'select * from data.job_runs')).code).toBe('42501');
    expect((await failureOf(executor, 'delete from data.jobs')).code).toBe('42501');
  });

  test('no membership in predefined roles that signal backends or touch server files', async () => {
    const { rows } = await executor.query(`
      select r.rolname from pg_roles r
       where r.rolname in ('pg_signal_backend', 'pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program',
                           'pg_read_all_data', 'pg_write_all_data', 'pg_monitor', 'pg_read_all_settings')
         and pg_has_role(current_user, r.oid, 'MEMBER')`);
    expect(rows).toEqual([]);
    expect((await failureOf(executor, `select pg_read_file('postmaster.pid')`)).code).toBe('42501');
    const super_ = (await executor.query('select rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles where rolname = current_user')).rows;
    expect(super_).toEqual([{ rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false }]);
  });

  test('it can execute nothing outside its own schema, the api and the system', async () => {
    const { rows } = await executor.query(`
      select p.oid::regprocedure::text as fn, n.nspname
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname !~ '^(pg_|information_schema$|executor$|api$)'
         and has_schema_privilege(current_user, n.oid, 'USAGE') and has_function_privilege(current_user, p.oid, 'EXECUTE')`);
    expect(rows).toEqual([]);
  });

  test("its api refuses runs that are not this executor's and claims without a lease", async () => {
    expect(await failureOf(executor, `select * from executor.claim_runs('nobody', 10)`)).toMatchObject({ code: 'HC302' });
    expect(await failureOf(executor, `select * from executor.start_run(1, 'nobody', gen_random_uuid())`)).toMatchObject({ code: 'HC302' });
    expect(await failureOf(executor, `select executor.finish_run(1, 'succeeded', now())`)).toMatchObject({ code: 'HC303' });
    expect(await failureOf(executor, `select executor.renew_lease('x y; drop', 30)`)).toMatchObject({ code: 'HC301' });
  });
});
