import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { createBilling, failureOf, type JobRow } from '../support/jobs.ts';
import { backendPid, failIfAnyoneWaits, heldAdvisoryLocks, holdOldAdvisoryKeys, waitForLockWaiters } from '../support/locks.ts';

const MOST_JOBS = 10_000;

/**
 * Scheduling is serialised per owner by a row of data.owner_locks, which only $data
 * and $code can lock. The attacks run as users over real logins: advisory keys that anyone can
 * take no longer stall anyone's scheduling, and the per-owner bound still holds when the same
 * owner schedules from several sessions at once.
 */
describe('the per-owner scheduling lock', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let aliceAgain: pg.Client;
  let bob: pg.Client;
  let mallory: pg.Client;

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('mallory'); // an ordinary user: may use api, schedules nothing
    alice = await db().login('alice');
    aliceAgain = await db().login('alice');
    bob = await db().login('bob');
    mallory = await db().login('mallory');
  });

  afterEach(async () => {
    await mallory.query('select pg_advisory_unlock_all()');
    for (const client of [alice, aliceAgain]) await client.query('rollback'); // a test that failed midway
    await db().admin.query('delete from data.jobs');
  });

  const SCHEDULE = `select * from api.schedule_job('billing.close_day(date)', '["2026-01-01"]', run_at => now() + interval '1 day')`;

  /** Fills the owner's jobs up to `count`, as the admin (scheduling 9,999 jobs one by one would only be slow). */
  async function fillJobsOf(nickname: string, count: number): Promise<void> {
    await db().admin.query(
      `insert into data.jobs (owner, function_signature, function_owner, run_at, next_run_at, options)
       select $1, 'billing.close_day(date)', $2, now() + interval '1 day', now() + interval '1 day', code.job_options('{}')
         from generate_series(1, $3::int - (select count(*)::int from data.jobs where owner = $1))`,
      [db().role(nickname), db().role('billing'), count],
    );
  }

  const jobsOf = async (nickname: string): Promise<number> =>
    (await db().admin.query<{ n: number }>('select count(*)::int as n from data.jobs where owner = $1', [db().role(nickname)])).rows[0]?.n ?? -1;

  test('an ordinary user holding every advisory key hardcron used does not stall anyone: bob schedules while she holds them', async () => {
    const keys = await holdOldAdvisoryKeys(mallory, [db().role('bob'), db().role('alice'), db().role('mallory')]);
    expect(await heldAdvisoryLocks(db(), mallory)).toBe(keys);

    // Bob's call may not wait for any lock: if his session is ever seen waiting, the test fails
    // there (with the old advisory lock it waited for mallory for as long as she liked).
    const bobPid = await backendPid(bob);
    const watch = failIfAnyoneWaits(db(), 'a.pid = $1', [bobPid]);
    try {
      const job = await Promise.race([bob.query<JobRow>(SCHEDULE).then((result) => result.rows[0]), watch.failed]);
      expect(job?.owner).toBe(db().role('bob'));
    } finally {
      watch.stop();
    }
    // …and she still holds every key.
    expect(await heldAdvisoryLocks(db(), mallory)).toBe(keys);
  });

  test('the lock is out of every user\'s reach: data.owner_locks cannot be read, locked or written', async () => {
    await bob.query(SCHEDULE); // bob's row exists now
    for (const client of [mallory, bob]) {
      for (const sql of [
        'select * from data.owner_locks for update',
        'lock table data.owner_locks in exclusive mode',
        `insert into data.owner_locks (owner) values ('x')`,
      ]) {
        await client.query('begin'); // LOCK TABLE needs a transaction
        expect(await failureOf(client, sql)).toMatchObject({ code: '42501' });
        await client.query('rollback');
      }
    }
  });

  test('the bound holds under concurrent scheduling: the second session waits for the first, then is refused (HC215)', async () => {
    await fillJobsOf('alice', MOST_JOBS - 1);
    await alice.query('begin');
    await alice.query(SCHEDULE); // the 10,000th, not committed yet
    const secondPid = await backendPid(aliceAgain);
    const second = failureOf(aliceAgain, SCHEDULE);
    await waitForLockWaiters(db(), 'a.pid = $1', [secondPid]);
    await alice.query('commit');
    expect(await second).toMatchObject({ code: 'HC215' });
    expect(await jobsOf('alice')).toBe(MOST_JOBS);
  });

  test('the bound holds for a REPEATABLE READ transaction whose snapshot predates the other\'s commit: it fails to serialise (40001)', async () => {
    await fillJobsOf('alice', MOST_JOBS - 1);
    await aliceAgain.query('begin isolation level repeatable read');
    expect((await aliceAgain.query('select count(*)::int as n from api.jobs')).rows[0].n).toBe(MOST_JOBS - 1); // its snapshot
    await alice.query('begin');
    await alice.query(SCHEDULE);
    const secondPid = await backendPid(aliceAgain);
    const second = failureOf(aliceAgain, SCHEDULE);
    await waitForLockWaiters(db(), 'a.pid = $1', [secondPid]);
    await alice.query('commit');
    // Counting from its snapshot, it would have seen room for one more (and did, with the old lock).
    expect(await second).toMatchObject({ code: '40001' });
    await aliceAgain.query('rollback');
    expect(await jobsOf('alice')).toBe(MOST_JOBS);
  });

  test('one owner\'s lock does not hold up another owner', async () => {
    await alice.query('begin');
    await alice.query(SCHEDULE); // alice's row stays locked until she commits
    const watch = failIfAnyoneWaits(db(), 'a.pid = $1', [await backendPid(bob)]);
    try {
      await Promise.race([bob.query(SCHEDULE), watch.failed]);
    } finally {
      watch.stop();
      await alice.query('rollback');
    }
    expect(await jobsOf('bob')).toBe(1);
    expect(await jobsOf('alice')).toBe(0);
  });
});
