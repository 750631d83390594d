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

/** Every field of a PostgreSQL error that a client receives (node-postgres' DatabaseError). */
export interface Failure {
  /** The SQLSTATE ('' if the error had none). */
  code: string;
  severity: string | undefined;
  message: string;
  detail: string | undefined;
  hint: string | undefined;
  where: string | undefined;
  schema: string | undefined;
  table: string | undefined;
  column: string | undefined;
  dataType: string | undefined;
  constraint: string | undefined;
  internalQuery: string | undefined;
  routine: string | undefined;
}

/** Runs a statement expected to fail; returns every field of its error (or throws if it worked). */
export async function failureOf(client: pg.Client, sql: string, params: unknown[] = []): Promise<Failure> {
  try {
    await client.query(sql, params);
  } catch (caught) {
    const e = caught as Partial<Failure> & { message: string };
    return {
      code: e.code ?? '',
      severity: e.severity,
      message: e.message,
      detail: e.detail,
      hint: e.hint,
      where: e.where,
      schema: e.schema,
      table: e.table,
      column: e.column,
      dataType: e.dataType,
      constraint: e.constraint,
      internalQuery: e.internalQuery,
      routine: e.routine,
    };
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

/** How many rows `query` returns (run as the admin), e.g. `countRows(db, 'select from data.jobs')`. */
export async function countRows(db: TestDatabase, query: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.admin.query<{ n: number }>(`select count(*)::int as n from (${query}) x`, params);
  return rows[0]?.n ?? -1;
}

/** A row of data.job_runs as node-postgres returns it (the one run record type of the tests). */
export interface RunRow {
  id: string;
  job_id: string;
  owner: string;
  function_owner: string;
  scheduled_for: Date;
  started_at: Date | null;
  finished_at: Date | null;
  status: string;
  attempt: number;
  rows_returned: string | null;
  rows_affected: string | null;
  error_sqlstate: string | null;
  error_message: string | null;
  error_detail: string | null;
  error_hint: string | null;
  error_context: string | null;
  reject_reason: string | null;
  executor_id: string | null;
  /** For a `missed` row: the occurrence after the last one missed. */
  missed_before: Date | null;
  /** What made the run: schedule, run_now, retry, lost_retry or catch_up (none for missed rows). */
  trigger: string | null;
}

/** How a test job is scheduled; anything left out takes api.schedule_job's default. */
export interface JobSpec {
  /** A cron schedule; without one (and without `runAt`) the job is a one-off `runIn` from now. */
  schedule?: string;
  /** A one-off at this time. */
  runAt?: string;
  /** A one-off this far from now (an interval; '1 day' unless `schedule` or `runAt` is given). */
  runIn?: string;
  name?: string | null;
  timeZone?: string;
  options?: object;
}

/**
 * Schedules a job as `client` through api.schedule_job: by default a one-off a day away, so that
 * nothing runs unless the test makes it due (or asks for a run now). Returns the api.jobs row.
 */
export async function scheduleJob(client: pg.Client, signature: string, args: unknown[] = [], spec: JobSpec = {}): Promise<JobRow> {
  const runIn = spec.schedule !== undefined || spec.runAt !== undefined ? null : (spec.runIn ?? '1 day');
  const { rows } = await client.query<JobRow>(
    `select * from api.schedule_job($1::text, $2::jsonb, schedule => $3::text,
       run_at => coalesce($4::timestamptz, pg_catalog.now() + $5::interval), name => $6::text,
       time_zone => coalesce($7::text, 'UTC'), options => coalesce($8::jsonb, '{}'))`,
    [signature, JSON.stringify(args), spec.schedule ?? null, spec.runAt ?? null, runIn, spec.name ?? null, spec.timeZone ?? null,
      spec.options === undefined ? null : JSON.stringify(spec.options)],
  );
  const job = rows[0];
  if (!job) throw new Error(`schedule_job returned no row for ${signature}`);
  return job;
}
