import { parseArgs } from 'node:util';
import type pg from 'pg';
import { uninstallConfig } from '../config.ts';
import { withAdminTransaction } from '../db/admin.ts';
import { openAdminTarget, redactUrl } from '../db/targets.ts';
import { ConfigError, HardcronError } from '../errors.ts';
import type { Command } from './command.ts';

/** The database could not be cleared of hardcron; nothing was dropped (one transaction). */
export class UninstallError extends HardcronError {}

/** The schemas hardcron's migrations create (all owned by its roles but `migrations`, the installer's ledger). */
const HARDCRON_SCHEMAS = ['api', 'code', 'data', 'executor', 'frames', 'mgr', 'server', 'migrations'] as const;

/** How long uninstall waits for a lock: a running server or executor holds some for good. */
const LOCK_TIMEOUT_MS = 5000;

/** The most owned objects outside hardcron's schemas that are named one by one. */
const LISTED_OBJECTS = 20;

export interface UninstallPlan {
  readonly database: string;
  /** hardcron's schemas present in the database, dropped with everything in them. */
  readonly schemas: readonly string[];
  /** The database's roles `<db>$…` (hardcron's own and its users), dropped cluster-wide. */
  readonly roles: readonly string[];
  /** What those roles own elsewhere in the database (e.g. the demo's schema, job functions): dropped too. */
  readonly otherOwned: readonly string[];
}

export const uninstallCommand: Command = {
  help: `Usage: hardcron uninstall [--yes]

Removes hardcron from the database: its schemas (api, code, data, executor, frames, mgr, server
and the migrations ledger) with all jobs and run history, and the database's roles
<database>$… (hardcron's own and every user provisioned with it: roles are cluster-wide, so
they are gone from the whole server). Whatever else those roles own in this database (e.g. the
demo's schema "demo", or job functions in an owner role's schema) is dropped with them, and
their privileges are revoked. Schema "public", dropped at installation, is not re-created.

Without --yes it only prints what it would drop and exits with HC_UNINSTALL_CONFIRM. Everything
is dropped in one transaction: on any error nothing is. Stop hardcron's server and executors
first (a session holding a lock for more than ${LOCK_TIMEOUT_MS / 1000} s stops it with
HC_UNINSTALL_BUSY). A role that still owns objects or holds privileges in another database
stops it with HC_UNINSTALL_ROLE_IN_USE: run DROP OWNED BY for it in that database first.
Running it again when nothing is left changes nothing.

Target: DATABASE_URL (a superuser URL) when set; otherwise the embedded PostgreSQL kept under
HARDCRON_DATA_DIR (default .hardcron/), database d0.`,

  async run(args, env) {
    const { values, positionals } = parseArgs({ args: [...args], options: { yes: { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
    const config = uninstallConfig(env);
    if (positionals.length > 0) throw new ConfigError('HC_USAGE', `uninstall takes no arguments (got ${positionals.join(' ')})`);
    const target = await openAdminTarget(config.target);
    try {
      const where = target.kind === 'embedded' ? 'embedded PostgreSQL' : redactUrl(target.adminUrl);
      const plan = await withAdminTransaction(target.adminUrl, null, async (client) => {
        const found = await planUninstall(client);
        if (values.yes && !isEmpty(found)) await dropEverything(client, found);
        return found;
      });
      if (isEmpty(plan)) {
        process.stdout.write(`${where}: no hardcron schema and no ${plan.database}$ role: nothing to uninstall\n`);
        return;
      }
      process.stdout.write(describePlan(plan, values.yes ? 'dropped' : 'would drop'));
      if (!values.yes) {
        throw new ConfigError('HC_UNINSTALL_CONFIRM', `nothing was dropped: run \`hardcron uninstall --yes\` to drop the above from ${where}`);
      }
      process.stdout.write(`${where}: hardcron uninstalled\n`);
    } finally {
      await target.stop();
    }
  },
};

function isEmpty(plan: UninstallPlan): boolean {
  return plan.schemas.length === 0 && plan.roles.length === 0;
}

function describePlan(plan: UninstallPlan, verb: string): string {
  const lines = [
    `${verb} in database ${plan.database}:`,
    `  schemas: ${plan.schemas.join(', ') || '-'}`,
    `  roles:   ${plan.roles.join(', ') || '-'}`,
  ];
  if (plan.otherOwned.length > 0) {
    const listed = plan.otherOwned.slice(0, LISTED_OBJECTS);
    const more = plan.otherOwned.length - listed.length;
    lines.push(`  owned by those roles: ${listed.join(', ')}${more > 0 ? ` and ${more} more` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * What uninstall drops. Catalog rows are read as plain columns and filtered here, so the
 * admin's session resolves no operator through a path (the `=` on oids is named explicitly).
 * A role of another database whose name starts with `<db>$` (a database named `d0$x` has roles
 * `d0$x$…`) is not this database's.
 */
export async function planUninstall(client: pg.ClientBase): Promise<UninstallPlan> {
  const superuser = (await client.query<{ on: string }>(`select pg_catalog.current_setting('is_superuser'::text) as on`)).rows[0]?.on;
  if (superuser !== 'on') {
    throw new UninstallError('HC_UNINSTALL_NOT_SUPERUSER', 'uninstall needs a superuser URL: it drops roles, which are cluster-wide');
  }
  const database = (await client.query<{ name: string }>('select pg_catalog.current_database()::text as name')).rows[0]?.name as string;
  const prefix = `${database}$`;
  const databases = (await client.query<{ name: string }>('select d.datname::text as name from pg_catalog.pg_database d')).rows.map((row) => row.name);
  const others = databases.filter((name) => name !== database && name.startsWith(prefix)).map((name) => `${name}$`);
  const allRoles = (await client.query<{ oid: string; name: string }>('select r.oid::text as oid, r.rolname::text as name from pg_catalog.pg_roles r')).rows;
  const roles = allRoles.filter((role) => role.name.startsWith(prefix) && !others.some((other) => role.name.startsWith(other)));
  const roleOids = new Set(roles.map((role) => role.oid));

  const namespaces = (await client.query<{ name: string; owner: string }>('select n.nspname::text as name, n.nspowner::text as owner from pg_catalog.pg_namespace n')).rows;
  const ledger = (await client.query<{ found: boolean }>(`select pg_catalog.to_regclass('migrations.applied'::text) is not null as found`)).rows[0]?.found === true;
  // A schema of one of these names is hardcron's when the migrations ledger is there (the
  // migrations created them all: mgr and frames belong to the installing superuser) or when one
  // of its roles owns it; without a ledger, someone else's "server" schema is left alone.
  const schemas = namespaces
    .filter((n) => (HARDCRON_SCHEMAS as readonly string[]).includes(n.name) && (ledger || roleOids.has(n.owner)))
    .map((n) => n.name)
    .sort();

  const { rows: owned } = await client.query<{ type: string; schema: string | null; identity: string }>(
    `select o.type, o.schema, o.identity
       from pg_catalog.pg_shdepend s,
            pg_catalog.pg_identify_object(s.classid, s.objid, s.objsubid) o
      where s.dbid operator(pg_catalog.=) (select d.oid from pg_catalog.pg_database d where d.datname operator(pg_catalog.=) pg_catalog.current_database())
        and s.deptype operator(pg_catalog.=) 'o'::"char"
        and s.refobjid operator(pg_catalog.=) any ($1::oid[])`,
    [[...roleOids]],
  );
  const otherOwned = owned
    // Default privileges the roles set for themselves go with them and are not worth naming.
    .filter((o) => o.type !== 'default acl')
    .filter((o) => !(o.schema !== null && schemas.includes(o.schema)) && !(o.type === 'schema' && schemas.includes(o.identity)))
    .map((o) => `${o.type} ${o.identity}`)
    .sort();
  return { database, schemas, roles: roles.map((role) => role.name).sort(), otherOwned };
}

/** Drops the plan's schemas, whatever its roles own here, and the roles: all or nothing. */
async function dropEverything(client: pg.ClientBase, plan: UninstallPlan): Promise<void> {
  const names = (list: readonly string[]): string => list.map((name) => client.escapeIdentifier(name)).join(', ');
  await client.query(`select pg_catalog.set_config('lock_timeout'::text, $1::text, true)`, [`${LOCK_TIMEOUT_MS}ms`]);
  try {
    if (plan.schemas.length > 0) await client.query(`drop schema ${names(plan.schemas)} cascade`);
    if (plan.roles.length > 0) {
      // Objects the roles own in this database and their privileges here and on shared objects.
      await client.query(`drop owned by ${names(plan.roles)} cascade`);
      await client.query(`drop role ${names(plan.roles)}`);
    }
  } catch (error) {
    const { code, message, detail } = error as { code?: unknown; message?: unknown; detail?: unknown };
    const said = `${String(message)}${typeof detail === 'string' ? ` (${detail.replaceAll('\n', '; ')})` : ''}`;
    if (code === '55P03') {
      throw new UninstallError(
        'HC_UNINSTALL_BUSY',
        `another session holds a lock uninstall needs (is hardcron's server or an executor still running?): stop it and run uninstall again; nothing was dropped`,
        { cause: error },
      );
    }
    if (code === '2BP01') {
      throw new UninstallError(
        'HC_UNINSTALL_ROLE_IN_USE',
        `a role cannot be dropped: ${said}; run DROP OWNED BY for it in that database, then uninstall again; nothing was dropped`,
        { cause: error },
      );
    }
    throw error;
  }
}
