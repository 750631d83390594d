import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { ConfigError } from '../errors.ts';
import { localRoleName, setLocalRole, withAdminTransaction } from './admin.ts';

/** Secrets `hardcron start` generates once and keeps under the data directory (mode 0600). */
export interface LocalSecrets {
  readonly jwtSecret: string;
  readonly authenticatorPassword: string;
  readonly executorPassword: string;
}

export const SECRETS_FILE = 'secrets.json';

/**
 * The data directory's secrets, created on first use. JWT_SECRET from the environment wins over
 * the kept one (and is not written down).
 */
export async function loadLocalSecrets(dataDir: string, jwtSecretFromEnv: string | undefined): Promise<LocalSecrets> {
  // 0711: embedded PostgreSQL, run as another OS user when we are root, must reach its directory.
  await mkdir(dataDir, { recursive: true, mode: 0o711 });
  const file = join(dataDir, SECRETS_FILE);
  let kept: LocalSecrets;
  try {
    kept = JSON.parse(await readFile(file, 'utf8')) as LocalSecrets;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError('HC_CONFIG_INVALID', `${file} is unreadable; remove it to have new secrets generated`, { cause: error });
    }
    kept = { jwtSecret: secret(), authenticatorPassword: secret(), executorPassword: secret() };
    await writeFile(file, `${JSON.stringify(kept, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  }
  for (const key of ['jwtSecret', 'authenticatorPassword', 'executorPassword'] as const) {
    if (typeof kept[key] !== 'string' || kept[key].length < 32) {
      throw new ConfigError('HC_CONFIG_INVALID', `${file} lacks a valid ${key}; remove it to have new secrets generated`);
    }
  }
  return jwtSecretFromEnv ? { ...kept, jwtSecret: jwtSecretFromEnv } : kept;
}

function secret(): string {
  return randomBytes(32).toString('base64url');
}

/** Login passwords for the runtime roles `<db>$authenticator` and `<db>$executor` (those given). */
export async function setRuntimePasswords(client: pg.Client, passwords: { authenticator?: string | undefined; executor?: string | undefined }): Promise<void> {
  for (const [nickname, password] of Object.entries(passwords)) {
    if (!password) continue;
    await client.query(`alter role ${client.escapeIdentifier(await localRoleName(client, nickname))} password ${client.escapeLiteral(password)}`);
  }
}

/** The demo of `hardcron start`: names and the function a newcomer schedules. */
export const DEMO = {
  user: 'demo',
  ownerRole: 'demo_owner',
  functionSignature: 'demo.heartbeat()',
} as const;

/**
 * Gives the runtime roles their passwords and provisions the demo (once): the owner role
 * `demo_owner` with schema `demo`, table `demo.heartbeats` and the security definer functions
 * `demo.heartbeat()` and `demo.divide(integer)` (which fails for 0), and the user `demo` (scheduler, member of `demo_owner`). Everything is
 * made the way an operator would: roles through mgr as $mgr, the function as its owner.
 */
export async function provisionLocal(adminUrl: string, secrets: LocalSecrets): Promise<void> {
  await withAdminTransaction(adminUrl, null, async (client) => {
    await setRuntimePasswords(client, { authenticator: secrets.authenticatorPassword, executor: secrets.executorPassword });
    const exists = async (nickname: string): Promise<boolean> =>
      (await client.query<{ found: boolean }>(`select pg_catalog.to_regrole(pg_catalog.quote_ident($1::text)) is not null as found`, [await localRoleName(client, nickname)])).rows[0]?.found === true;
    if (!(await exists(DEMO.ownerRole))) {
      await setLocalRole(client, 'mgr');
      await client.query('call mgr.re_create_role($1, null, true)', [DEMO.ownerRole]);
      await setLocalRole(client, DEMO.ownerRole);
      await client.query(`
        create schema demo;
        create table demo.heartbeats (id bigint generated always as identity primary key, at timestamptz not null default clock_timestamp(), by_role text not null default current_user);
        create function demo.heartbeat() returns bigint
          security definer set search_path = pg_catalog, pg_temp
          language sql as $$ insert into demo.heartbeats default values returning id $$;
        comment on function demo.heartbeat() is 'Records a heartbeat: schedule it to see hardcron at work.';
        create function demo.divide(n integer) returns integer
          security definer set search_path = pg_catalog, pg_temp
          language sql as $$ select 100 / n $$;
        comment on function demo.divide(integer) is 'Fails for 0 (division by zero): schedule it to see how a failed run looks.';`);
      await client.query('reset role');
    }
    if (!(await exists(DEMO.user))) {
      await setLocalRole(client, 'mgr');
      await client.query('call mgr.add_user($1, null, true, $2)', [DEMO.user, [DEMO.ownerRole]]);
      await client.query('reset role');
    }
  });
}
