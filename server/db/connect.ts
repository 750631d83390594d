import pg from 'pg';
import { DatabaseTargetError } from '../errors.ts';
import { redactUrl } from './targets.ts';

/**
 * A connected client, or a DatabaseTargetError (HC_CONNECT) that names the server without its
 * password. Errors of the connection after this (it broke) surface through the failing query,
 * not as an 'error' event that would crash the process.
 */
export async function connectClient(connectionString: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString, application_name: applicationName });
  try {
    await client.connect();
  } catch (error) {
    throw new DatabaseTargetError(
      'HC_CONNECT',
      `cannot connect to ${redactUrl(connectionString)}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  client.on('error', () => {});
  return client;
}
