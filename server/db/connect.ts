import pg from 'pg';
import { DatabaseTargetError } from '../errors.ts';
import { PINNED_SEARCH_PATH, sessionConfig } from './session.ts';
import { redactUrl } from './targets.ts';

/**
 * Pins the search_path with SET where the startup packet did not (a connection pooler that drops
 * startup options, say). The check itself is fully qualified and calls no operator.
 */
export async function pinSearchPath(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ path: string }>(`select pg_catalog.current_setting('search_path') as path`);
  if (rows[0]?.path !== PINNED_SEARCH_PATH) await client.query(`set search_path = ${PINNED_SEARCH_PATH}`);
}

/**
 * A connected client with the pinned search_path, or a DatabaseTargetError (HC_CONNECT) that
 * names the server without its password. Errors of the connection after this (it broke) surface
 * through the failing query, not as an 'error' event that would crash the process.
 */
export async function connectClient(connectionString: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client(sessionConfig(connectionString, applicationName));
  // Listened to from the start: a connection that breaks while the search_path is being checked
  // emits 'error' too (the failing query reports it).
  client.on('error', () => {});
  try {
    await client.connect();
    await pinSearchPath(client);
  } catch (error) {
    await client.end().catch(() => {});
    throw new DatabaseTargetError(
      'HC_CONNECT',
      `cannot connect to ${redactUrl(connectionString)}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return client;
}
