import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createNoteOwner, failureOf, scheduleJob, setLocalRole, transaction, type JobRow } from '../support/jobs.ts';
import { collectNotices } from '../support/threats.ts';

/**
 * api.jobs and api.job_runs show a row only to roles with the
 * job owner's (or function owner's) privileges: never to the NOINHERIT runtime roles in their own
 * sessions, never through a leaky function in the caller's WHERE clause, and a dropped owner
 * breaks them for nobody.
 */
describe('the api views under attack', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bob: pg.Client;
  let carol: pg.Client;
  const jobs: Record<string, JobRow> = {};

  const q = (nickname: string): string => db().admin.escapeIdentifier(db().role(nickname));

  beforeAll(async () => {
    for (const owner of ['alice_fns', 'bob_fns', 'dora_fns', 'gone_fns']) {
      await createNoteOwner(db(), owner);
    }
    await db().addUser('alice', { scheduler: true, memberOf: ['alice_fns', 'gone_fns'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['bob_fns'] });
    await db().addUser('dora', { scheduler: true, memberOf: ['dora_fns'] });
    await db().addUser('carol'); // a $client member with no jobs
    alice = await db().login('alice');
    bob = await db().login('bob');
    carol = await db().login('carol');
    const dora = await db().login('dora');

    jobs.alice = await scheduleJob(alice, 'alice_fns.note(text)', ['alice-argument'], { name: 'alice-name' });
    jobs.aliceGone = await scheduleJob(alice, 'gone_fns.note(text)', ['alice-gone-argument'], { name: 'alice-gone-name' });
    jobs.bob = await scheduleJob(bob, 'bob_fns.note(text)', ['bob-secret-argument'], { name: 'bob-secret-name' });
    jobs.dora = await scheduleJob(dora, 'dora_fns.note(text)', ['dora-secret-argument'], { name: 'dora-secret-name' });
    await dora.end();

    // Run history, written directly: one success and one failure per job, errors naming their owner.
    for (const [who, job] of Object.entries(jobs)) {
      await db().admin.query(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status,
                                    rows_returned, rows_affected, error_sqlstate, error_message)
         select j.id, j.owner, j.function_owner, now() - interval '1 hour' * s.n, now(), now(), s.status,
                case when s.status = 'succeeded' then 1 end, case when s.status = 'succeeded' then 1 end,
                case when s.status = 'failed' then 'P0001' end,
                case when s.status = 'failed' then 'secret-error-of-' || $2 end
           from data.jobs j, (values (1, 'succeeded'), (2, 'failed')) s(n, status)
          where j.id = $1`,
        [job.id, who],
      );
    }
  });

  test('the $executor\'s and $authenticator\'s own sessions (no SET ROLE) see no row, although they are NOINHERIT members of every user', async () => {
    const { admin } = db();
    const total = { jobs: await countRows(db(), 'select from data.jobs'), runs: await countRows(db(), 'select from data.job_runs') };
    expect(total.jobs).toBeGreaterThanOrEqual(4);
    expect(total.runs).toBeGreaterThanOrEqual(8);

    for (const runtime of ['executor', 'authenticator']) {
      // Precondition: MEMBER of the job owners (so pg_has_role(…, 'MEMBER') would show them everything).
      const { rows: membership } = await admin.query(
        `select bool_and(pg_has_role($1, u, 'MEMBER')) as member, bool_or(pg_has_role($1, u, 'USAGE')) as usage
           from unnest($2::text[]) u`,
        [db().role(runtime), [db().role('alice'), db().role('bob'), db().role('dora')]],
      );
      expect([runtime, membership]).toEqual([runtime, [{ member: true, usage: false }]]);

      const session = await db().login(runtime);
      expect((await session.query('select current_user as cu, current_setting($1) as r', ['role'])).rows).toEqual([
        { cu: db().role(runtime), r: 'none' },
      ]);
      expect([runtime, (await session.query('select * from api.jobs')).rows]).toEqual([runtime, []]);
      expect([runtime, (await session.query('select * from api.job_runs')).rows]).toEqual([runtime, []]);
      // Control: once it does SET ROLE to alice, it sees exactly what alice sees.
      await session.query(`set role ${q('alice')}`);
      const asAlice = (await session.query<{ id: string }>('select id from api.jobs order by id')).rows;
      expect(asAlice).toEqual((await alice.query<{ id: string }>('select id from api.jobs order by id')).rows);
      expect(asAlice.length).toBeGreaterThan(0);
      await session.query('reset role');
      expect([runtime, (await session.query('select count(*)::int as n from api.job_runs')).rows]).toEqual([runtime, [{ n: 0 }]]);
    }
  });

  // CVE-2023-2455, CVE-2024-10976: a pooled connection prepares a statement as one
  // user and runs it as another; past five executions PostgreSQL may switch to a generic plan.
  test('a statement prepared on a pooled connection under alice, executed under bob, shows bob his rows only', async () => {
    const session = await db().login('authenticator');
    try {
      const own = async (client: pg.Client, view: string): Promise<string[]> =>
        (await client.query<{ id: string }>(`select id from ${view} order by id`)).rows.map((row) => row.id);
      const expected = {
        alice: { jobs: await own(alice, 'api.jobs'), runs: await own(alice, 'api.job_runs') },
        bob: { jobs: await own(bob, 'api.jobs'), runs: await own(bob, 'api.job_runs') },
      };
      expect(expected.bob.jobs).toEqual([jobs.bob!.id]);
      expect(expected.alice.jobs).not.toContain(jobs.bob!.id);
      await session.query('prepare view_jobs as select id from api.jobs order by id');
      await session.query('prepare view_runs as select id from api.job_runs order by id');
      for (const mode of ['auto', 'force_generic_plan']) {
        await session.query(`set plan_cache_mode = ${mode}`);
        for (const who of ['alice', 'bob', 'alice', 'bob'] as const) {
          await session.query(`set role ${q(who)}`);
          for (let i = 0; i < 7; i += 1) {
            const seen = { jobs: (await session.query<{ id: string }>('execute view_jobs')).rows.map((row) => row.id),
                           runs: (await session.query<{ id: string }>('execute view_runs')).rows.map((row) => row.id) };
            expect([mode, who, i, seen]).toEqual([mode, who, i, expected[who]]);
          }
          await session.query('reset role');
        }
      }
      // With no role set, the same statements show nothing.
      expect((await session.query('execute view_jobs')).rows).toEqual([]);
      expect((await session.query('execute view_runs')).rows).toEqual([]);
    } finally {
      await session.end();
    }
  });

  describe('a leaky function in the caller\'s WHERE clause', () => {
    let leaker: pg.Client;
    let notices: string[];
    const foreignSecrets = (): string[] => [db().role('bob'), db().role('dora'), 'bob-secret', 'dora-secret', 'secret-error-of-bob', 'secret-error-of-dora', 'bob_fns', 'dora_fns'];

    beforeAll(async () => {
      leaker = await db().login('alice');
      notices = collectNotices(leaker);
      // Cheap, so the planner would love to run it first; it raises its argument as a NOTICE.
      await leaker.query(`create function alice_fns.leak(v text) returns boolean language plpgsql cost 0.0000001
        as $$ begin raise notice 'leak:%', v; return true; end $$`);
    });

    test('she cannot mark it LEAKPROOF (only a superuser can)', async () => {
      expect((await failureOf(leaker, 'alter function alice_fns.leak(text) leakproof')).code).toBe('42501');
    });

    test('through api.jobs and api.job_runs, in WHERE, joins, EXISTS and LATERAL, it sees only her own rows', async () => {
      notices.length = 0;
      const queries = [
        `select id from api.jobs where alice_fns.leak(owner) and alice_fns.leak(name) and alice_fns.leak(arguments::text)
            and alice_fns.leak(function_signature)`,
        `select id from api.job_runs where alice_fns.leak(owner) and alice_fns.leak(error_message) and alice_fns.leak(status::text)`,
        `select j.id from api.jobs j join api.job_runs r on alice_fns.leak(r.owner || ' ' || j.owner || ' ' || coalesce(r.error_message, '-'))`,
        `select id from api.job_runs r where exists (select 1 where alice_fns.leak(r.error_message))`,
        `select j.id from api.jobs j, lateral (select alice_fns.leak(j.name) as l) x where x.l`,
        `select id from api.jobs where owner <> 'nobody' and alice_fns.leak(owner) order by alice_fns.leak(name::text)`,
      ];
      for (const sql of queries) await leaker.query(sql);

      const leaked = notices.filter((notice) => notice.startsWith('leak:'));
      // The test works: her own values do reach leak().
      expect(leaked).toEqual(expect.arrayContaining([`leak:${db().role('alice')}`, 'leak:alice-name', 'leak:secret-error-of-alice']));
      for (const secret of foreignSecrets()) {
        expect([secret, leaked.filter((notice) => notice.includes(secret))]).toEqual([secret, []]);
      }
    });

    test('errors as a side channel: a division by zero on bob\'s rows never fires, a failing cast names only her own values', async () => {
      const { rows } = await leaker.query<{ id: string }>(
        `select id from api.jobs where 1 / (case when owner = $1 then 0 else 1 end) = 1 order by id`,
        [db().role('bob')],
      );
      expect(rows.map((row) => row.id)).toEqual([jobs.alice?.id, jobs.aliceGone?.id].sort((a, b) => Number(a) - Number(b)));
      const failed = await failureOf(leaker, 'select id from api.job_runs where owner::integer = 1');
      expect(failed.code).toBe('22P02');
      expect(failed.message).toContain(db().role('alice'));
      for (const secret of foreignSecrets()) expect(JSON.stringify(failed)).not.toContain(secret);
    });
  });

  describe('dropped owners', () => {
    const dropped = (): string[] => [db().role('dora'), db().role('dora_fns'), db().role('gone_fns')];

    beforeAll(async () => {
      // dora (a job owner with logged runs) is removed; dora_fns and gone_fns (function owners
      // with logged runs) are dropped with everything they own.
      await transaction(db(), `${setLocalRole(db(), 'mgr')}; call mgr.remove_user('dora')`);
      await db().admin.query(`drop owned by ${q('dora_fns')}; drop role ${q('dora_fns')};
                              drop owned by ${q('gone_fns')}; drop role ${q('gone_fns')}`);
      expect(
        await countRows(db(), 'select from pg_roles where rolname = any($1::text[])', [dropped()]),
      ).toBe(0);
      expect(await countRows(db(), 'select from data.job_runs where owner = $1 or function_owner = any($2::text[])', [db().role('dora'), dropped()])).toBe(4);
    });

    test('everyone else still reads both views: no error, no notice, nothing naming a dropped role; rows of live owners unchanged', async () => {
      const readers: Array<[string, pg.Client]> = [
        ['alice', alice],
        ['bob', bob],
        ['carol', carol],
        ['executor', await db().login('executor')],
        ['authenticator', await db().login('authenticator')],
        ['admin', db().admin],
      ];
      for (const [who, session] of readers) {
        const notices = collectNotices(session);
        const seen: Record<string, unknown[]> = {};
        for (const view of ['api.jobs', 'api.job_runs']) {
          try {
            seen[view] = (await session.query(`select * from ${view} order by id`)).rows;
          } catch (error) {
            throw new Error(`${who} cannot read ${view}: ${(error as Error).message}`);
          }
        }
        expect([who, notices]).toEqual([who, []]);
        const everything = JSON.stringify(seen);
        // The dora job rows themselves are invisible to everyone but a superuser... and to it as well:
        // pg_has_role(superuser, <no role>) is not true (documented).
        for (const name of [db().role('dora'), 'dora-secret', 'secret-error-of-dora']) {
          expect([who, name, everything.includes(name)]).toEqual([who, name, false]);
        }
      }

      // alice still sees her job on gone_fns' (dropped) function and its runs, through her own role.
      const aliceJobs = (await alice.query<{ id: string }>('select id from api.jobs order by id')).rows.map((row) => row.id);
      expect(aliceJobs).toEqual([jobs.alice?.id, jobs.aliceGone?.id]);
      expect(await countRows(db(), 'select from data.job_runs where job_id = $1', [jobs.aliceGone?.id])).toBe(2);
      expect((await alice.query('select status from api.job_runs where job_id = $1 order by id', [jobs.aliceGone?.id])).rows).toEqual([
        { status: 'succeeded' },
        { status: 'failed' },
      ]);
      expect((await bob.query<{ id: string }>('select id from api.jobs')).rows.map((row) => row.id)).toEqual([jobs.bob?.id]);
      expect((await bob.query('select * from api.job_runs')).rows).toHaveLength(2);
      expect((await carol.query('select * from api.jobs')).rows).toEqual([]);
    });

    test('the dropped owner\'s job id behaves like a missing one for everyone else (HC211, naming nothing)', async () => {
      const doraJob = jobs.dora as JobRow;
      for (const sql of ['select * from api.pause_job($1)', 'select * from api.run_job_now($1)', 'select api.unschedule_job($1)']) {
        const failed = await failureOf(alice, sql, [doraJob.id]);
        expect([sql, failed.code, failed.message]).toEqual([sql, 'HC211', `job ${doraJob.id} not found`]);
        expect(JSON.stringify(failed)).not.toContain('dora');
      }
      expect(await countRows(db(), 'select from data.jobs where id = $1', [doraJob.id])).toBe(1);
    });
  });
});
