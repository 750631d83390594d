import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import pg from 'pg';
import { createOwner, failureOf } from '../support/jobs.ts';
import { useTestDatabase } from '../support/database.ts';
import { runNow, waitFor } from '../support/executor.ts';

/**
 * The eligibility check locks what its verdict rests on until the transaction that reached it
 * ends, and runs in full before every call, however many calls share a transaction. These tests
 * drive the executor's SQL by hand, several runs in one transaction (as a caller of the SQL could),
 * to interleave other sessions.
 */
describe('verdicts and their locks within a transaction', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: pg.Client;
  let other: pg.Client;
  let n = 0;
  let fn = '';

  const calls = async (): Promise<number> =>
    (await db().admin.query<{ n: number }>(`select count(*)::int as n from held.calls where fn = $1`, [fn])).rows[0]?.n ?? -1;

  beforeAll(async () => {
    await createOwner(db(), 'held', `
      create table held.calls (fn text, at timestamptz default clock_timestamp());
      grant usage on schema held to public`);
    await db().addUser('alice', { scheduler: true, memberOf: ['held'] });
    alice = await db().login('alice');
    executor = await db().login('executor');
    await executor.query(`select executor.renew_lease('by-hand', 600)`);
    other = new pg.Client({ connectionString: db().adminUrl });
    await other.connect();
  });

  beforeEach(async () => {
    // A fresh function per test, as $held: held.f<n>(), which records its call and then runs `then`.
    n += 1;
    fn = `held.f${n}`;
  });

  afterEach(async () => {
    // A failed test must not leave its batch open for the next one.
    await executor.query('rollback');
  });

  afterAll(async () => {
    await other.end();
  });

  async function createFunction(then = ''): Promise<void> {
    await db().admin.query(`set role "${db().role('held')}";
      create function ${fn}() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$ begin insert into held.calls (fn) values ('${fn}'); ${then} end $$;
      reset role`);
  }

  /** `count` jobs of alice calling fn, due now, claimed by the executor: their run ids. */
  async function claimed(count: number): Promise<string[]> {
    for (let i = 0; i < count; i++) await runNow(alice, `${fn}()`);
    const { rows } = await executor.query<{ run_id: string; claim_token: string }>(
      `select run_id, claim_token from executor.claim_runs('by-hand', $1)`,
      [count],
    );
    expect(rows).toHaveLength(count);
    for (const row of rows) tokens.set(row.run_id, row.claim_token);
    return rows.map((row) => row.run_id);
  }

  /** Each claimed run's claim token, by run id. */
  const tokens = new Map<string, string>();

  async function run(runId: string): Promise<string> {
    const { rows } = await executor.query<{ status: string }>(`select status from executor.run($1, 'by-hand', $2)`, [runId, tokens.get(runId)]);
    return rows[0]?.status ?? '';
  }

  test('a REVOKE of the owner membership waits for the transaction that checked it; runs after it are rejected', async () => {
    await createFunction();
    const runs = await claimed(4);
    await executor.query('begin');
    expect(await run(runs[0] as string)).toBe('succeeded');
    const pid = (other as unknown as { processID: number }).processID;
    const revoked = other.query(`revoke "${db().role('held')}" from "${db().role('alice')}"`);
    await waitFor(db(), `select wait_event_type = 'Lock' as done from pg_stat_activity where pid = $1`, [pid]);
    // The membership the verdict rests on is still there: the batch goes on.
    expect(await run(runs[1] as string)).toBe('succeeded');
    await executor.query('commit');
    await revoked;
    // The next batch checks again, and sees the REVOKE.
    await executor.query('begin');
    expect(await run(runs[2] as string)).toBe('rejected');
    expect(await run(runs[3] as string)).toBe('rejected');
    await executor.query('commit');
    expect(await calls()).toBe(2);
    await db().admin.query(`grant "${db().role('held')}" to "${db().role('alice')}"`);
  });

  test('ALTER FUNCTION … SECURITY INVOKER by another session waits for the transaction; runs after it are rejected', async () => {
    await createFunction();
    const runs = await claimed(3);
    await executor.query('begin');
    expect(await run(runs[0] as string)).toBe('succeeded');
    const pid = (other as unknown as { processID: number }).processID;
    const altered = other.query(`alter function ${fn}() security invoker`);
    await waitFor(db(), `select wait_event_type = 'Lock' as done from pg_stat_activity where pid = $1`, [pid]);
    expect(await run(runs[1] as string)).toBe('succeeded');
    await executor.query('commit');
    await altered;
    await executor.query('begin');
    expect(await run(runs[2] as string)).toBe('rejected');
    await executor.query('commit');
    expect(await calls()).toBe(2);
  });

  test('a job that makes its own function SECURITY INVOKER: the next run of it in the same transaction is rejected', async () => {
    await createFunction(`execute format('alter function %s() security invoker', '${fn}');`);
    const runs = await claimed(2);
    await executor.query('begin');
    expect(await run(runs[0] as string)).toBe('succeeded');
    expect(await run(runs[1] as string)).toBe('rejected');
    await executor.query('commit');
    expect(await calls()).toBe(1);
  });

  test('a job that gives its function another search_path: the next run of it in the same transaction is rejected', async () => {
    await createFunction(`execute format('alter function %s() set search_path = held, pg_catalog', '${fn}');`);
    await db().admin.query(`grant create on schema held to public`);
    try {
      const runs = await claimed(2);
      await executor.query('begin');
      expect(await run(runs[0] as string)).toBe('succeeded');
      expect(await run(runs[1] as string)).toBe('rejected');
      await executor.query('commit');
      expect(await calls()).toBe(1);
    } finally {
      await db().admin.query(`revoke create on schema held from public`);
    }
  });

  test('in a user transaction, a function changed after a first scheduling is checked again', async () => {
    await createFunction();
    await alice.query('begin');
    try {
      await alice.query(`select api.schedule_job($1, '[]', run_at => now() + interval '1 day')`, [`${fn}()`]);
      await alice.query(`alter function ${fn}() security invoker`);
      const failure = await failureOf(alice, `select api.schedule_job($1, '[]', run_at => now() + interval '1 day')`, [`${fn}()`]);
      expect(failure.message).toMatch(/not SECURITY DEFINER/);
    } finally {
      await alice.query('rollback');
    }
  });
});
