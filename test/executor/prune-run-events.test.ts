import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Executor } from '../../server/executor/executor.ts';
import { useTestDatabase } from '../support/database.ts';
import { startExecutor, waitFor } from '../support/executor.ts';
import { failureOf } from '../support/jobs.ts';
import { executorSession } from '../support/threats.ts';

/**
 * The run event log does not grow for ever: events logged more than an hour ago are deleted,
 * oldest first and in bounded chunks, by the executor beside its lease renewal
 * (server/executor/sql/prune-run-events.ts, code.prune_run_events in sql/routines/code/run_events.sql).
 */
describe('pruning run events', () => {
  const db = useTestDatabase();
  let executor: Executor | undefined;
  let alice: pg.Client;

  beforeAll(async () => {
    await db().addUser('alice', { scheduler: true });
    alice = await db().login('alice');
  });
  afterAll(async () => {
    await executor?.stop();
  });

  /** Logs `count` events of run `runId` at `age` before now (as the admin: the executor writes them in real life). */
  async function logEvents(runId: number, count: number, age: string): Promise<void> {
    await db().admin.query(
      `insert into data.job_run_events (run_id, job_id, status, at)
       select $1::bigint, 1, 'succeeded', now() - $3::interval from generate_series(1, $2::int)`,
      [runId, count, age],
    );
  }

  const events = async (): Promise<Array<{ run_id: string; n: number }>> =>
    (await db().admin.query<{ run_id: string; n: number }>('select run_id::text, count(*)::int as n from data.job_run_events group by run_id order by run_id'))
      .rows;

  test('one call deletes at most max_rows of the oldest events, and only those older than an hour', async () => {
    await logEvents(1, 250, '2 hours');
    await logEvents(2, 10, '59 minutes'); // ids and times grow together, as the executor writes them
    const session = await executorSession(db());
    const deleted = async (maxRows: number): Promise<number> =>
      (await session.query<{ n: number }>('select executor.prune_run_events($1) as n', [maxRows])).rows[0]?.n ?? -1;

    expect(await deleted(100)).toBe(100);
    expect(await events()).toEqual([
      { run_id: '1', n: 150 },
      { run_id: '2', n: 10 },
    ]);
    // The oldest went first: what is left of run 1 are its newest ids.
    const { rows } = await db().admin.query<{ oldest: string }>('select min(id)::text as oldest from data.job_run_events');
    expect(rows[0]?.oldest).toBe('101');
    expect(await deleted(1000)).toBe(150);
    expect(await deleted(1000)).toBe(0); // nothing is an hour old any more
    expect(await events()).toEqual([{ run_id: '2', n: 10 }]);
  });

  test('bad chunk sizes are refused with HC301, and no user may prune', async () => {
    const session = await executorSession(db());
    for (const maxRows of [0, -1, 100001, null]) {
      expect(await failureOf(session, 'select executor.prune_run_events($1)', [maxRows])).toMatchObject({ code: 'HC301' });
    }
    expect(await failureOf(alice, 'select executor.prune_run_events(100)')).toMatchObject({ code: '42501' });
    expect(await failureOf(alice, 'delete from data.job_run_events')).toMatchObject({ code: '42501' });
    expect(await events()).toEqual([{ run_id: '2', n: 10 }]);
  });

  test('a running executor prunes old events beside its lease renewal, in chunks, until none is left', { timeout: 60_000 }, async () => {
    // More than two chunks of 10,000, so that one renewal deletes in several statements; then
    // newer ones, which stay.
    await db().admin.query('delete from data.job_run_events');
    await logEvents(4, 25_000, '90 minutes');
    await logEvents(5, 3, '1 minute');
    // A lease of 3 s is renewed (and the log pruned) every second.
    executor = await startExecutor(db(), { leaseSeconds: 3 });
    await waitFor(db(), `select not exists (select from data.job_run_events where at < now() - interval '1 hour') as done`, [], 30_000);
    expect(await events()).toEqual([{ run_id: '5', n: 3 }]);
  });
});
