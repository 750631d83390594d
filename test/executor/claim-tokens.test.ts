import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { runNow } from '../support/executor.ts';
import { createOwner, failureOf } from '../support/jobs.ts';

/**
 * After an asynchronous failover the new primary gives out run ids again that the old one had
 * used, so an executor may hold an id that now names another run. Every step after the claim
 * names the run by its id and its claim's token; a run whose id matches but whose claim does not
 * is neither started, nor recorded, nor declared lost. Here the other claim of the same id is
 * made by giving the row another token, as the executor role cannot do.
 */
describe('runs are named by their claim, not by their id alone', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: pg.Client;

  beforeAll(async () => {
    await createOwner(db(), 'tok', `
      create table tok.effects (at timestamptz default clock_timestamp());
      create function tok.work() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into tok.effects default values $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['tok'] });
    alice = await db().login('alice');
    executor = await db().login('executor');
    await executor.query(`select executor.renew_lease('by-hand', 600)`);
  });

  afterAll(async () => {
    await executor?.end();
    await alice?.end();
  });

  /** Claims the one due run as 'by-hand', then gives its row another claim's token. */
  async function claimThenReused(): Promise<{ runId: string; oldToken: string }> {
    await runNow(alice, 'tok.work()');
    const { rows } = await executor.query<{ run_id: string; claim_token: string }>(`select run_id, claim_token from executor.claim_runs('by-hand', 10)`);
    expect(rows).toHaveLength(1);
    const [{ run_id: runId, claim_token: oldToken }] = rows as [{ run_id: string; claim_token: string }];
    await db().admin.query('update data.job_runs set claim_token = gen_random_uuid() where id = $1', [runId]);
    return { runId, oldToken };
  }

  const runRow = async (runId: string): Promise<{ status: string; started_at: Date | null }> =>
    (await db().admin.query('select status, started_at from data.job_runs where id = $1', [runId])).rows[0];
  const effects = async (): Promise<number> => (await db().admin.query<{ n: number }>('select count(*)::int as n from tok.effects')).rows[0]?.n ?? -1;

  test('a run is not started under an old claim of its id: HC302, no effect, still running', async () => {
    const { runId, oldToken } = await claimThenReused();
    const before = await effects();
    expect(await failureOf(executor, `select * from executor.run(${runId}, 'by-hand', '${oldToken}')`)).toMatchObject({ code: 'HC302' });
    expect(await effects()).toBe(before);
    expect(await runRow(runId)).toEqual({ status: 'running', started_at: null });
  });

  test('nothing is recorded about it after an interruption of the old claim', async () => {
    const { runId, oldToken } = await claimThenReused();
    expect(await failureOf(executor, `select executor.finish_interrupted(${runId}, '${oldToken}', now(), '08006', 'connection lost')`)).toMatchObject({
      code: 'HC302',
    });
    expect(await runRow(runId)).toEqual({ status: 'running', started_at: null });
  });

  test('the sweep of the old claim passes it over', async () => {
    const { runId, oldToken } = await claimThenReused();
    const { rows } = await executor.query<{ n: number }>(`select executor.sweep_runs(0, 'by-hand', $1, $2) as n`, [runId, oldToken]);
    expect(rows[0]?.n).toBe(0);
    expect((await runRow(runId)).status).toBe('running');
  });

  test('under its own claim the same run starts and is recorded', async () => {
    const { runId } = await claimThenReused();
    const { rows } = await db().admin.query<{ token: string }>('select claim_token::text as token from data.job_runs where id = $1', [runId]);
    const before = await effects();
    const result = await executor.query<{ status: string }>(`select status from executor.run($1, 'by-hand', $2)`, [runId, rows[0]?.token]);
    expect(result.rows[0]?.status).toBe('succeeded');
    expect(await effects()).toBe(before + 1);
  });
});
