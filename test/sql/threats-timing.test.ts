import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createNoteOwner, failureOf, scheduleJob, setLocalRole, transaction, type Failure } from '../support/jobs.ts';

/**
 * Another owner's job or run id must not be told from a missing one, by timing either: every
 * api function and view takes the same path for both — the same statements, the same calls of
 * hardcron's functions, as many times. Measuring time would be noisy and slow; the path is
 * compared instead, by counting function calls (`track_functions = all` for the attacking role)
 * for each case over alice's real login. Each id is tried while it is bob's, then again, the
 * very same id, once the admin has deleted the row, and once more as an id never used.
 * PostgreSQL counts a call when the function returns, so the functions an error leaves (the
 * HC211 raise and its callers) are not counted: that the error is raised at the same place is
 * shown by its context, compared field by field.
 */

/** Calls per function (`schema.name(argument types)`), as pg_stat_user_functions counts them. */
type Calls = Record<string, number>;

describe('a foreign id and a missing id take the same path through every api function and view', () => {
  const db = useTestDatabase();
  let alice: pg.Client; // the attacker, her calls counted
  let bob: pg.Client;
  let carol: pg.Client; // a member of bob_fns: sees bob's jobs, may not change them

  beforeAll(async () => {
    for (const owner of ['alice_fns', 'bob_fns']) {
      await createNoteOwner(db(), owner);
    }
    await db().addUser('alice', { scheduler: true, memberOf: ['alice_fns'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['bob_fns'] });
    await db().addUser('carol', { memberOf: ['bob_fns'] });
    // Before she logs in: the setting applies to her sessions only (it needs a superuser to set).
    await db().admin.query(`alter role ${db().admin.escapeIdentifier(db().role('alice'))} set track_functions = 'all'`);
    alice = await db().login('alice');
    bob = await db().login('bob');
    carol = await db().login('carol');
    expect((await alice.query('show track_functions')).rows).toEqual([{ track_functions: 'all' }]);
    // alice has a job and a run of her own: she sees rows, so the views read on for her (one who
    // sees none reads nothing, whatever the id, and would prove little).
    const own = await scheduleJob(alice, 'alice_fns.note(text)', ['alice-own'], { name: 'alice own job' });
    await db().admin.query(
      `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status)
       values ($1::bigint, $2::text, $3::text, pg_catalog.now(), pg_catalog.now(), pg_catalog.now(), 'succeeded'::text)`,
      [own.id, db().role('alice'), db().role('alice_fns')],
    );
  });

  /**
   * Flushes alice's pending statistics. A session sends them when it goes idle, at most once a
   * second unless forced (PostgreSQL 15 and later); forced, it sends them at the end of this
   * statement, before it answers, so the admin reads them as soon as this returns.
   */
  const flushAlice = async (): Promise<void> => {
    await alice.query('select pg_catalog.pg_stat_force_next_flush()');
  };

  const functionCalls = async (): Promise<Calls> => {
    const { admin } = db();
    await admin.query('select pg_catalog.pg_stat_clear_snapshot()');
    const { rows } = await admin.query<{ fn: string; calls: string }>(
      'select s.funcid::pg_catalog.regprocedure::pg_catalog.text as fn, s.calls from pg_catalog.pg_stat_user_functions s',
    );
    return Object.fromEntries(rows.map((row) => [row.fn, Number(row.calls)]));
  };

  /** The calls alice's session made during `attempt`, by function (functions not called are left out). */
  const callsOf = async (attempt: () => Promise<unknown>): Promise<Calls> => {
    await flushAlice();
    const before = await functionCalls();
    await attempt();
    await flushAlice();
    const after = await functionCalls();
    const made: Calls = {};
    for (const [fn, calls] of Object.entries(after)) {
      const more = calls - (before[fn] ?? 0);
      if (more !== 0) made[fn] = more;
    }
    return made;
  };

  /** A job of bob's with one logged run (written by the admin, as the executor would), failed unless told. */
  const bobsJobWithRun = async (status: 'failed' | 'running' = 'failed'): Promise<{ jobId: string; runId: string }> => {
    const job = await scheduleJob(bob, 'bob_fns.note(text)', ['bob-secret-argument'], { name: 'bob secret job' });
    const { rows } = await db().admin.query<{ id: string }>(
      status === 'failed'
        ? `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status, error_message)
           values ($1::bigint, $2::text, $3::text, pg_catalog.now(), pg_catalog.now(), pg_catalog.now(), 'failed'::text,
                   'bob-secret-error'::text) returning id`
        : `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, status)
           values ($1::bigint, $2::text, $3::text, pg_catalog.now(), 'running'::text) returning id`,
      [job.id, db().role('bob'), db().role('bob_fns')],
    );
    return { jobId: job.id, runId: (rows[0] as { id: string }).id };
  };

  /** What the admin sees of a job and its runs: must not change when alice tries bob's ids. */
  const rowsOf = async (jobId: string): Promise<unknown> => ({
    job: (await db().admin.query('select * from data.jobs where id = $1::bigint', [jobId])).rows,
    runs: (await db().admin.query('select * from data.job_runs where job_id = $1::bigint order by id', [jobId])).rows,
  });

  const deleteJobAndRuns = async (jobId: string): Promise<void> => {
    await db().admin.query('delete from data.job_runs where job_id = $1::bigint', [jobId]);
    await db().admin.query('delete from data.jobs where id = $1::bigint', [jobId]);
  };

  const neverUsedId = async (): Promise<string> => {
    const { rows } = await db().admin.query<{ id: string }>(
      `select (greatest((select pg_catalog.max(id) from data.jobs), (select pg_catalog.max(id) from data.job_runs), 0)
               + 1000000)::text as id`,
    );
    return (rows[0] as { id: string }).id;
  };

  const functions: Array<[string, string, 'jobId' | 'runId']> = [
    ['pause_job', 'select * from api.pause_job($1::bigint)', 'jobId'],
    ['resume_job', 'select * from api.resume_job($1::bigint)', 'jobId'],
    ['run_job_now', 'select * from api.run_job_now($1::bigint)', 'jobId'],
    ['update_job', `select * from api.update_job($1::bigint, name => 'taken'::text)`, 'jobId'],
    ['unschedule_job', 'select api.unschedule_job($1::bigint)', 'jobId'],
    ['cancel_run', 'select * from api.cancel_run($1::bigint)', 'runId'],
  ];

  test.each(functions)('api.%s: the same calls and the same error, to the byte, for bob\'s id and for that id once it is missing', async (_name, sql, which) => {
    // bob's run is running when it is the run that is tried: a run one may cancel is.
    const ids = await bobsJobWithRun(which === 'runId' ? 'running' : 'failed');
    const id = ids[which];
    const { jobId } = ids;
    const before = await rowsOf(jobId);

    let foreignError: Failure | undefined;
    const foreign = await callsOf(async () => {
      foreignError = await failureOf(alice, sql, [id]);
    });
    expect(foreignError).toMatchObject({ code: 'HC211', message: `${which === 'jobId' ? 'job' : 'run'} ${id} not found` });
    expect(await rowsOf(jobId)).toEqual(before); // nothing of bob's changed
    expect(await countRows(db(), 'select from data.cancel_requests')).toBe(0); // nor asked of his run

    await deleteJobAndRuns(jobId);
    let missingError: Failure | undefined;
    const missing = await callsOf(async () => {
      missingError = await failureOf(alice, sql, [id]);
    });
    const otherId = await neverUsedId();
    const neverUsed = await callsOf(() => failureOf(alice, sql, [otherId]));

    // Every field of the error (code, message, hint, context with its line numbers…) is the same.
    expect(missingError).toEqual(foreignError);
    // The counting works: a foreign id does call hardcron's functions.
    expect(Object.keys(foreign).length).toBeGreaterThan(0);
    expect({ foreign, missing, neverUsed }).toEqual({ foreign, missing: foreign, neverUsed: foreign });
  });

  const views: Array<[string, string, 'jobId' | 'runId']> = [
    ['api.jobs by job id', 'select * from api.jobs where id = $1::bigint', 'jobId'],
    ['api.job_runs by job id', 'select * from api.job_runs where job_id = $1::bigint', 'jobId'],
    ['api.job_runs by run id', 'select * from api.job_runs where id = $1::bigint', 'runId'],
  ];

  test.each(views)('%s: the same calls, and no row, for bob\'s id and for that id once it is missing', async (_name, sql, which) => {
    const ids = await bobsJobWithRun();
    const id = ids[which];
    // Control: bob does see his row through the same query.
    expect((await bob.query(sql, [id])).rows).toHaveLength(1);

    let foreignRows: unknown[] = [];
    const foreign = await callsOf(async () => {
      foreignRows = (await alice.query(sql, [id])).rows;
    });
    await deleteJobAndRuns(ids.jobId);
    let missingRows: unknown[] = [];
    const missing = await callsOf(async () => {
      missingRows = (await alice.query(sql, [id])).rows;
    });
    const otherId = await neverUsedId();
    const neverUsed = await callsOf(() => alice.query(sql, [otherId]));

    expect({ foreignRows, missingRows }).toEqual({ foreignRows: [], missingRows: [] });
    expect(Object.keys(foreign).length).toBeGreaterThan(0);
    expect({ foreign, missing, neverUsed }).toEqual({ foreign, missing: foreign, neverUsed: foreign });
  });

  test('api.schedulable_functions: the same calls whatever another owner has, and for another owner\'s function as for a missing one', async () => {
    const list = 'select * from api.schedulable_functions';
    const one = 'select * from api.schedulable_functions where function_signature = $1::text';
    // Six times first, so that the session's plans have settled: PostgreSQL plans a cached
    // statement of a function afresh for its first five executions, and the planner calls some
    // functions itself (it folds the immutable mgr.frame_body(), for one), then keeps a generic
    // plan. How often depends on the session's past calls, not on anyone's functions.
    for (let i = 0; i < 6; i++) await alice.query(list);
    const before = await callsOf(() => alice.query(list));
    const bobsBefore = await callsOf(() => alice.query(one, ['bob_fns.note(text)']));
    // bob's owner role gets many more functions that he could schedule, and one of them is
    // asked for by name; alice's listing must not look at them.
    await transaction(db(), `${setLocalRole(db(), 'bob_fns')};
      ${Array.from({ length: 20 }, (_, i) => `create function bob_fns.more_${i}(x integer) returns void
        security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$;`).join('\n')}`);
    expect((await bob.query(`select count(*)::int as n from api.schedulable_functions where function_signature like 'bob_fns.more_%'`)).rows)
      .toEqual([{ n: 20 }]);
    let rows: unknown[] = [];
    const after = await callsOf(async () => {
      rows = (await alice.query(list)).rows;
    });
    const bobsAfter = await callsOf(() => alice.query(one, ['bob_fns.more_7(integer)']));
    const missing = await callsOf(() => alice.query(one, ['nobody.nothing()']));

    expect(rows.map((row) => (row as { function_signature: string }).function_signature)).toContain('alice_fns.note(text)');
    expect(JSON.stringify(rows)).not.toContain('bob_fns');
    expect(Object.keys(before).length).toBeGreaterThan(0);
    expect({ after, bobsBefore, bobsAfter, missing }).toEqual({ after: before, bobsBefore: before, bobsAfter: before, missing: before });
  });

  test('a job or run that is visible but not the caller\'s keeps its own answer (HC212): that case is visible anyway', async () => {
    const { jobId, runId } = await bobsJobWithRun('running');
    const before = await rowsOf(jobId);
    expect((await carol.query('select id from api.jobs where id = $1::bigint', [jobId])).rows).toEqual([{ id: jobId }]);
    for (const [name, sql, which] of functions) {
      expect([name, (await failureOf(carol, sql, [which === 'jobId' ? jobId : runId])).code]).toEqual([name, 'HC212']);
    }
    expect(await rowsOf(jobId)).toEqual(before);
  });
});
