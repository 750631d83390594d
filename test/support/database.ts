import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, inject } from 'vitest';
import { migrate, type MigrateOptions } from '../../server/db/migrate.ts';
import { withDatabase } from '../../server/db/targets.ts';

/**
 * Per-file isolation on one shared cluster. Roles are cluster-wide, so the hard-shell naming is
 * the isolation: a database d_<created>_<random> and its roles d_<created>_<random>$<nickname>.
 * <created> (seconds since the epoch, base 36) lets a later run sweep what a killed run left.
 */
const TEST_DATABASE = /^d_([0-9a-z]+)_[0-9a-z]+$/;
const LEFTOVER_AGE_SECONDS = 3600;

export interface TestDatabase {
  readonly name: string;
  /** Superuser client connected to this database. */
  readonly admin: pg.Client;
  /** Superuser URL of this database. */
  readonly adminUrl: string;
  /** The local role name for a nickname: `<database>$<nickname>`. */
  role(nickname: string): string;
  /** A URL that logs in as `user` (a full role name) with `password`. */
  urlFor(user: string, password: string): string;
  /**
   * A real login session as the local role `nickname`. The harness gives the role a fresh
   * password first (the role must be LOGIN); the connection closes when the database is dropped.
   */
  login(nickname: string): Promise<pg.Client>;
  /** Provisions an end user who may log in, through mgr.add_user as $mgr. */
  addUser(nickname: string, options?: { scheduler?: boolean; memberOf?: string[] }): Promise<void>;
  drop(): Promise<void>;
}

export function newTestDatabaseName(): string {
  const created = Math.floor(Date.now() / 1000).toString(36);
  return `d_${created}_${randomBytes(5).toString('hex')}`;
}

/** Creates a fresh database (installed with hardcron's migrations unless `install` is false). */
export async function createTestDatabase(
  options: { install?: boolean; migrate?: Omit<MigrateOptions, 'connectionString'> } = {},
): Promise<TestDatabase> {
  const clusterUrl = inject('adminUrl');
  const name = newTestDatabaseName();
  await withClient(clusterUrl, (client) => client.query(`create database ${client.escapeIdentifier(name)}`));
  const adminUrl = withDatabase(clusterUrl, name);
  if (options.install !== false) await migrate({ connectionString: adminUrl, ...options.migrate });

  const admin = await connect(adminUrl);
  const handle = databaseHandle(name, adminUrl, () => admin);

  return {
    ...handle,
    admin,
    async drop() {
      await Promise.allSettled(handle.sessions.map((client) => client.end()));
      await admin.end().catch(() => {});
      await dropDatabaseAndRoles(clusterUrl, name);
    },
  };
}

/**
 * What a test does with a hardcron database besides its admin connection: role names, login
 * URLs, logins as users (with a fresh password each) and provisioned users. `admin` returns the
 * admin connection as it is now (a failover test replaces it).
 */
export function databaseHandle(name: string, adminUrl: string, admin: () => pg.Client) {
  const sessions: pg.Client[] = [];
  const role = (nickname: string): string => `${name}$${nickname}`;
  const urlFor = (user: string, password: string): string => loginUrl(adminUrl, user, password);
  return {
    name,
    adminUrl,
    role,
    urlFor,
    /** The sessions login() opened, for drop() to close. */
    sessions,
    async login(nickname: string): Promise<pg.Client> {
      const password = randomBytes(12).toString('hex');
      await admin().query(`alter role ${admin().escapeIdentifier(role(nickname))} password ${admin().escapeLiteral(password)}`);
      const client = await connect(urlFor(role(nickname), password));
      sessions.push(client);
      return client;
    },
    async addUser(nickname: string, { scheduler = false, memberOf = [] as string[] } = {}): Promise<void> {
      const c = admin();
      await c.query('begin');
      try {
        await c.query(`set local role ${c.escapeIdentifier(role('mgr'))}`);
        // A LOGIN user (it has a password); login() sets a password of its own before connecting.
        await c.query('call mgr.add_user($1, $2, $3, $4)', [nickname, randomBytes(12).toString('hex'), scheduler, memberOf]);
        await c.query('commit');
      } catch (error) {
        await c.query('rollback');
        throw error;
      }
    },
  };
}

/** A test file's own database: created before its tests, dropped after them even when they fail. */
export function useTestDatabase(options: Parameters<typeof createTestDatabase>[0] = {}): () => TestDatabase {
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase(options);
  });
  afterAll(async () => {
    await db?.drop();
  });
  return () => {
    if (!db) throw new Error('the test database is created in beforeAll');
    return db;
  };
}

/** Drops test databases and roles older than an hour: what killed test runs left behind. */
export async function sweepLeftovers(clusterUrl: string): Promise<number> {
  const cutoff = Math.floor(Date.now() / 1000) - LEFTOVER_AGE_SECONDS;
  const isOld = (database: string): boolean => {
    const match = TEST_DATABASE.exec(database);
    return match !== null && Number.parseInt(match[1] as string, 36) < cutoff;
  };
  return withClient(clusterUrl, async (client) => {
    const { rows } = await client.query<{ name: string }>(
      `select datname as name from pg_catalog.pg_database where datname like 'd\\_%'
       union
       select split_part(rolname, '$', 1) from pg_catalog.pg_roles where rolname like 'd\\_%$%'`,
    );
    const old = rows.map((row) => row.name).filter(isOld);
    for (const database of old) await dropDatabaseAndRoles(clusterUrl, database);
    return old.length;
  });
}

async function dropDatabaseAndRoles(clusterUrl: string, database: string): Promise<void> {
  await withClient(clusterUrl, async (client) => {
    await client.query(`drop database if exists ${client.escapeIdentifier(database)} with (force)`);
    const { rows } = await client.query<{ rolname: string }>(
      `select rolname from pg_catalog.pg_roles where starts_with(rolname, $1)`,
      [`${database}$`],
    );
    for (const { rolname } of rows) await client.query(`drop role if exists ${client.escapeIdentifier(rolname)}`);
  });
}

/** The same server and database, logging in as `user` with `password`. */
export function loginUrl(url: string, user: string, password: string): string {
  const copy = new URL(url);
  copy.username = encodeURIComponent(user);
  copy.password = encodeURIComponent(password);
  return copy.toString();
}

export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  // Sessions of a database being dropped are terminated; that must not crash the test process.
  client.on('error', () => {});
  await client.connect();
  return client;
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url);
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
