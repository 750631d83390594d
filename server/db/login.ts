import type pg from 'pg';
import { ConfigError, DatabaseTargetError } from '../errors.ts';
import { redactUrl } from './targets.ts';

/**
 * No runtime process connects as a superuser, or as any role but its own: checks that the
 * connection logs in as `<db>$<nickname>` and returns the database name. `who` names the
 * process in the messages (e.g. "the server").
 */
export async function checkRuntimeLogin(db: Pick<pg.Pool, 'query'> | Pick<pg.Client, 'query'>, nickname: 'authenticator' | 'executor', who: string, connectionString: string): Promise<string> {
  let row: { database: string; rolsuper: boolean; rolname: string } | undefined;
  try {
    const { rows } = await (db as Pick<pg.Pool, 'query'>).query<{ database: string; rolsuper: boolean; rolname: string }>(
      'select pg_catalog.current_database() as database, r.rolsuper, r.rolname from pg_catalog.pg_roles r where r.rolname = current_user',
    );
    row = rows[0];
  } catch (error) {
    throw new DatabaseTargetError('HC_CONNECT', `cannot connect to ${redactUrl(connectionString)}: ${(error as Error).message}`, { cause: error });
  }
  if (!row) throw new DatabaseTargetError('HC_CONNECT', 'the login role is not visible in pg_roles');
  if (row.rolsuper) {
    throw new ConfigError('HC_SUPERUSER_REFUSED', `${who} logs in as superuser ${row.rolname}: use the database's $${nickname} role`);
  }
  if (row.rolname !== `${row.database}$${nickname}`) {
    throw new ConfigError('HC_CONFIG_INVALID', `${who} must log in as ${row.database}$${nickname}, not ${row.rolname}`);
  }
  return row.database;
}
