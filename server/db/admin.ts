import type pg from 'pg';
import { HardcronError } from '../errors.ts';
import { connectClient } from './connect.ts';

/** An error hardcron's SQL raised on purpose (SQLSTATE HCnnn), or a permission refusal. */
export class DatabaseError extends HardcronError {}

/**
 * Runs `work` in one transaction on an admin connection, as the local role `<db>$<asRole>`
 * when given (e.g. `mgr` for provisioning). hardcron's own SQL errors become DatabaseErrors
 * with their SQLSTATE as code; the transaction is rolled back on any error.
 */
export async function withAdminTransaction<T>(
  adminUrl: string,
  asRole: string | null,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = await connectClient(adminUrl, 'hardcron admin');
  try {
    await client.query('begin');
    if (asRole !== null) await setLocalRole(client, asRole);
    const result = await work(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && /^HC[0-9A-Z]{3}$/.test(code)) throw new DatabaseError(code, (error as Error).message, { cause: error });
    throw error;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The database's local role `<db>$<nickname>`. Named here rather than with `||` in SQL: an admin
 * session calls no operator, so nothing in the database can stand in for one.
 */
export async function localRoleName(client: pg.ClientBase, nickname: string): Promise<string> {
  const { rows } = await client.query<{ database: string }>('select pg_catalog.current_database() as database');
  return `${rows[0]?.database as string}$${nickname}`;
}

/** SET LOCAL ROLE to `<db>$<nickname>`, without building SQL from names. */
export async function setLocalRole(client: pg.ClientBase, nickname: string): Promise<void> {
  await client.query(`select pg_catalog.set_config('role', $1::text, true)`, [await localRoleName(client, nickname)]);
}
