import type pg from 'pg';
import type { TestDatabase } from './database.ts';

/** A row of api.jobs as node-postgres returns it. */
export interface JobRow {
  id: string;
  name: string | null;
  owner: string;
  function_signature: string;
  arguments: unknown[];
  schedule: string | null;
  run_at: Date | null;
  time_zone: string;
  options: Record<string, unknown>;
  enabled: boolean;
  next_run_at: Date | null;
  last_run_at: Date | null;
  last_status: string | null;
  created_at: Date;
  updated_at: Date;
}

/** What a failed statement said: its SQLSTATE and message. */
export interface Failure {
  code: string;
  message: string;
}

/** Runs a statement expected to fail; returns its SQLSTATE and message (or throws if it worked). */
export async function failureOf(client: pg.Client, sql: string, params: unknown[] = []): Promise<Failure> {
  try {
    await client.query(sql, params);
  } catch (error) {
    const { code = '', message } = error as { code?: string; message: string };
    return { code, message };
  }
  throw new Error(`expected to fail: ${sql}`);
}

/**
 * Sets up the owner role $billing with schema billing, a table billing.closed and the security
 * definer function billing.close_day(date) (pinned search_path) that records the day it closed.
 */
export async function createBilling(db: TestDatabase): Promise<void> {
  await createOwner(db, 'billing', `
    create table billing.closed (day date, closed_by text default current_user);
    create function billing.close_day(day date) returns integer
      security definer set search_path = pg_catalog, pg_temp
      language sql as $$ insert into billing.closed (day) values (day) returning 1 $$`);
}

/** Runs `sql` (several statements allowed) as the admin in one transaction, rolled back on error. */
export async function transaction(db: TestDatabase, sql: string): Promise<void> {
  await db.admin.query('begin');
  try {
    await db.admin.query(sql);
    await db.admin.query('commit');
  } catch (error) {
    await db.admin.query('rollback');
    throw error;
  }
}

/** `set local role` to a local role, as SQL text. */
export function setLocalRole(db: TestDatabase, nickname: string): string {
  return `set local role ${db.admin.escapeIdentifier(db.role(nickname))}`;
}

/** Creates (or re-creates) the owner role $<nickname> through mgr.re_create_role as $mgr, then runs `setup` as it. */
export async function createOwnerRole(db: TestDatabase, nickname: string, setup = ''): Promise<void> {
  await transaction(
    db,
    `${setLocalRole(db, 'mgr')};
     call mgr.re_create_role(${db.admin.escapeLiteral(nickname)}, null, true);
     ${setLocalRole(db, nickname)};
     ${setup}`,
  );
}

/**
 * Creates the owner role $<nickname> (as $mgr, through mgr.re_create_role) with a schema of the
 * same name, then runs `body` as that role: the way job functions come to exist.
 */
export async function createOwner(db: TestDatabase, nickname: string, body: string): Promise<void> {
  await createOwnerRole(db, nickname, `create schema ${nickname}; ${body}`);
}

/**
 * An owner role `$<owner>` with schema `<owner>`, a table `<owner>.calls (arg, by_role)` and the
 * job function `<owner>.note(text)` that records its argument there, plus `extra` run as the owner.
 */
export async function createNoteOwner(db: TestDatabase, owner: string, extra = ''): Promise<void> {
  await createOwnerRole(db, owner, `
    create schema ${owner};
    create table ${owner}.calls (arg text, by_role text default current_user);
    grant usage on schema ${owner} to public;
    create function ${owner}.note(x text) returns void security definer set search_path = pg_catalog, pg_temp
      language sql as $$ insert into ${owner}.calls (arg) values (x) $$;
    ${extra}`);
}

export async function countRows(db: TestDatabase, table: string): Promise<number> {
  return (await db.admin.query<{ n: number }>(`select count(*)::int as n from ${table}`)).rows[0]?.n ?? -1;
}
