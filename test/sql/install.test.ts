import { describe, expect, test } from 'vitest';
import { migrate } from '../../server/db/migrate.ts';
import { useTestDatabase } from '../support/database.ts';

const ROLES = {
  mgr: { login: false, inherit: true },
  data: { login: false, inherit: true },
  code: { login: false, inherit: true },
  api: { login: false, inherit: true },
  client: { login: false, inherit: true },
  job_scheduler: { login: false, inherit: true },
  anonymous: { login: false, inherit: true },
  executor: { login: true, inherit: false },
  authenticator: { login: true, inherit: false },
};

/** Everything the install decides, read from the catalogs, for comparing before and after. */
const CATALOG_SNAPSHOT = `
  select jsonb_build_object(
    'roles', (select jsonb_agg(jsonb_build_array(rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
                                                 rolcanlogin, rolreplication, rolbypassrls) order by rolname)
                from pg_roles where starts_with(rolname, current_database() || '$')),
    'memberships', (select jsonb_agg(jsonb_build_array(roleid::regrole, member::regrole) order by 1, 2)
                      from pg_auth_members m where starts_with(member::regrole::text, '"' || current_database())),
    'schemas', (select jsonb_agg(jsonb_build_array(nspname, nspowner::regrole, nspacl::text) order by nspname)
                  from pg_namespace where nspname !~ '^(pg_|information_schema)'),
    'functions', (select jsonb_agg(jsonb_build_array(p.oid::regprocedure, proowner::regrole, prosecdef, proconfig, proacl::text) order by 1)
                    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                   where nspname !~ '^(pg_|information_schema)'),
    'database', (select datacl::text from pg_database where datname = current_database()),
    'default_acl', (select jsonb_agg(jsonb_build_array(defaclrole::regrole, defaclobjtype, defaclacl::text) order by 1, 2)
                      from pg_default_acl)
  ) as snapshot`;

describe('hard-shell install on an empty database', () => {
  const db = useTestDatabase({ install: false });

  test('creates exactly the local roles, schemas and owners of the hard shell, and no public schema', async () => {
    const result = await migrate({ connectionString: db().adminUrl });
    expect(result.applied.length).toBeGreaterThan(0);

    const roles = await db().admin.query(
      `select rolname, rolcanlogin as login, rolinherit as inherit, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls
         from pg_roles where starts_with(rolname, current_database() || '$') order by rolname`,
    );
    expect(Object.fromEntries(roles.rows.map((r) => [r.rolname, { login: r.login, inherit: r.inherit }]))).toEqual(
      Object.fromEntries(Object.entries(ROLES).map(([nick, attrs]) => [db().role(nick), attrs])),
    );
    for (const role of roles.rows) {
      expect([role.rolsuper, role.rolcreaterole, role.rolcreatedb, role.rolbypassrls]).toEqual([false, false, false, false]);
    }

    const schemas = await db().admin.query<{ nspname: string; owner: string }>(
      `select nspname, nspowner::regrole::text as owner from pg_namespace
        where nspname !~ '^(pg_|information_schema)' order by nspname`,
    );
    const installer = (await db().admin.query('select quote_ident(current_user) as u')).rows[0].u;
    expect(schemas.rows).toEqual([
      { nspname: 'api', owner: `"${db().role('api')}"` },
      { nspname: 'code', owner: `"${db().role('code')}"` },
      { nspname: 'data', owner: `"${db().role('data')}"` },
      { nspname: 'executor', owner: `"${db().role('api')}"` },
      { nspname: 'frames', owner: installer },
      { nspname: 'mgr', owner: installer },
      { nspname: 'migrations', owner: installer },
      { nspname: 'server', owner: `"${db().role('api')}"` },
    ]);
  });

  test('PUBLIC may neither connect nor create temporary tables; only hardcron roles connect', async () => {
    const { rows } = await db().admin.query(
      `select has_database_privilege('public', current_database(), 'connect') as public_connect,
              has_database_privilege('public', current_database(), 'temporary') as public_temp,
              (select coalesce(jsonb_agg(grantee::regrole::text order by grantee::regrole::text), '[]')
                 from pg_database, aclexplode(datacl) where datname = current_database()
                  and privilege_type = 'CONNECT' and grantee <> datdba) as connect_grantees`,
    );
    expect(rows[0]).toEqual({
      public_connect: false,
      public_temp: false,
      connect_grantees: ['authenticator', 'client', 'executor'].map((n) => `"${db().role(n)}"`).sort(),
    });
  });

  test('the mgr procedures are security definer with a pinned search_path; only $mgr may call them', async () => {
    const { rows } = await db().admin.query(
      `select p.oid::regprocedure::text as proc, prosecdef as definer, proconfig as config,
              has_function_privilege($1, p.oid, 'execute') as mgr_can,
              has_function_privilege($2, p.oid, 'execute') as client_can,
              exists (select from aclexplode(p.proacl) a where a.grantee = 0) as public_can
         from pg_proc p where pronamespace = 'mgr'::regnamespace order by 1`,
      [db().role('mgr'), db().role('client')],
    );
    const byName = Object.fromEntries(rows.map((r) => [r.proc.replace(/\(.*/, ''), r]));
    for (const name of ['mgr.re_create_role', 'mgr.add_user', 'mgr.remove_user']) {
      expect(byName[name]).toMatchObject({ definer: true, config: ['search_path=pg_catalog, pg_temp'], mgr_can: true });
    }
    for (const row of rows) {
      expect(row.config).toEqual(['search_path=pg_catalog, pg_temp']);
      expect([row.proc, row.client_can, row.public_can]).toEqual([row.proc, false, false]);
    }
    // The helper that validates nicknames is for the definer procedures only.
    expect(byName['mgr.local_role_name']).toMatchObject({ mgr_can: false });
  });

  test('running the install again changes nothing', async () => {
    const before = (await db().admin.query(CATALOG_SNAPSHOT)).rows[0].snapshot;
    const ledgerBefore = (await db().admin.query('select name, checksum, applied_at from migrations.applied order by name')).rows;

    const again = await migrate({ connectionString: db().adminUrl });

    expect(again.applied).toEqual([]);
    expect(again.alreadyApplied).toBe(ledgerBefore.length);
    expect((await db().admin.query(CATALOG_SNAPSHOT)).rows[0].snapshot).toEqual(before);
    expect((await db().admin.query('select name, checksum, applied_at from migrations.applied order by name')).rows).toEqual(
      ledgerBefore,
    );
  });
});
