import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createNoteOwner, failureOf, scheduleJob, setLocalRole, transaction, type Failure, type JobRow } from '../support/jobs.ts';
import { executeNow } from '../support/threats.ts';

/**
 * Who the caller is cannot be spoofed, one owner's job
 * ids are indistinguishable from missing ones to everyone else, "Alice" is not "alice", and names
 * planted on a caller's search_path (or in pg_temp) never reach hardcron's own code.
 */
describe('identity and name-resolution threats', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let bob: pg.Client;

  const q = (nickname: string): string => db().admin.escapeIdentifier(db().role(nickname));
  const jobsSnapshot = async (ids: string[]): Promise<unknown[]> =>
    (await db().admin.query('select * from data.jobs where id = any($1::bigint[]) order by id', [ids])).rows;

  beforeAll(async () => {
    for (const owner of ['alice_fns', 'bob_fns', 'caps_fns']) {
      await createNoteOwner(db(), owner, `
        grant insert on ${owner}.calls to public;
        create function ${owner}.f(x integer) returns void security definer set search_path = pg_catalog, pg_temp
          language sql as $$ insert into ${owner}.calls (arg) values (x) $$;`);
    }
    await db().addUser('alice', { scheduler: true, memberOf: ['alice_fns'] });
    await db().addUser('bob', { scheduler: true, memberOf: ['bob_fns'] });
    alice = await db().login('alice');
    bob = await db().login('bob');
  });

  describe('identity spoofing', () => {
    test('jwt.claims.role, request.jwt.claims and request.jwt.claim.role naming bob: the job alice schedules is alice\'s', async () => {
      const session = await db().login('alice');
      const bobRole = db().role('bob');
      await session.query(`set jwt.claims.role = ${session.escapeLiteral(bobRole)}`);
      await session.query(`set request.jwt.claims = ${session.escapeLiteral(JSON.stringify({ role: bobRole }))}`);
      await session.query(`select set_config('request.jwt.claim.role', $1, false), set_config('jwt.claims.sub', 'bob', false)`, [bobRole]);
      expect((await session.query(`select current_setting('jwt.claims.role') as r`)).rows).toEqual([{ r: bobRole }]);

      const job = await scheduleJob(session, 'alice_fns.f(integer)', [12]);
      expect(job.owner).toBe(db().role('alice'));
      expect((await db().admin.query('select owner from data.jobs where id = $1', [job.id])).rows).toEqual([{ owner: db().role('alice') }]);
      // The claims do not show bob's jobs to her session either, and bob does not see hers.
      const bobJob = await scheduleJob(bob, 'bob_fns.f(integer)', [13]);
      expect((await session.query('select id from api.jobs')).rows.map((row) => row.id)).not.toContain(bobJob.id);
      expect((await failureOf(session, 'select * from api.pause_job($1)', [bobJob.id])).code).toBe('HC211');
      expect((await bob.query('select id from api.jobs')).rows.map((row) => row.id)).not.toContain(job.id);
    });

    test('SET ROLE, set_config(\'role\', …) and SET SESSION AUTHORIZATION to bob fail with 42501; the caller stays alice', async () => {
      const session = await db().login('alice');
      const bobRole = db().role('bob');
      const jobsBefore = await countRows(db(), 'select from data.jobs');
      expect((await failureOf(session, `set role ${q('bob')}`)).code).toBe('42501');
      expect((await failureOf(session, `select set_config('role', $1, false)`, [bobRole])).code).toBe('42501');
      expect((await failureOf(session, `set session authorization ${q('bob')}`)).code).toBe('42501');
      expect((await session.query(`select current_user as cu, session_user as su, current_setting('role') as r`)).rows).toEqual([
        { cu: db().role('alice'), su: db().role('alice'), r: 'none' },
      ]);
      const job = await scheduleJob(session, 'alice_fns.f(integer)', [14]);
      expect(job.owner).toBe(db().role('alice'));
      expect(await countRows(db(), 'select from data.jobs')).toBe(jobsBefore + 1);
    });

    test('set_config(\'role\', …) inside a security definer function is refused (42501), even for her own role', async () => {
      const session = await db().login('alice');
      await session.query(`create function alice_fns.become(r text) returns text security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select set_config('role', r, false) $$`);
      for (const target of [db().role('bob'), db().role('alice'), db().role('alice_fns')]) {
        const refused = await failureOf(session, 'select alice_fns.become($1)', [target]);
        expect(refused.code).toBe('42501');
        expect(refused.message).toMatch(/cannot set parameter "role" within security-definer function/);
      }
    });

    test('SET ROLE to a role she may be makes that role the caller, never a more privileged one', async () => {
      const session = await db().login('alice');
      const jobsBefore = await countRows(db(), 'select from data.jobs');
      const scheduleSql = `select * from api.schedule_job('alice_fns.f(integer)', '[1]', run_at => now() + interval '1 day')`;
      // $client may use the api but does not have $job_scheduler: rule 1, for $client.
      await session.query(`set role ${q('client')}`);
      const asClient = await failureOf(session, scheduleSql);
      expect(asClient.code).toBe('HC204');
      expect(asClient.message).toContain(`role "${db().role('client')}" is not a member of`);
      // Her owner role is no $client member: it cannot even reach the api.
      await session.query(`set role ${q('alice_fns')}`);
      expect((await failureOf(session, scheduleSql)).code).toBe('42501');
      await session.query('reset role');
      expect(await countRows(db(), 'select from data.jobs')).toBe(jobsBefore);
    });

    test('documented: a superuser sees every job in api.jobs (pg_has_role is true for a superuser)', async () => {
      await scheduleJob(alice, 'alice_fns.f(integer)', [15]);
      await scheduleJob(bob, 'bob_fns.f(integer)', [16]);
      const { rows } = await db().admin.query<{ owner: string }>('select distinct owner from api.jobs order by owner');
      expect(rows.map((row) => row.owner)).toEqual(expect.arrayContaining([db().role('alice'), db().role('bob')]));
      expect(await countRows(db(), 'select from api.jobs')).toBe(await countRows(db(), 'select from data.jobs'));
    });
  });

  describe('foreign job ids', () => {
    const operations: Array<[string, string]> = [
      ['pause_job', 'select * from api.pause_job($1)'],
      ['resume_job', 'select * from api.resume_job($1)'],
      ['run_job_now', 'select * from api.run_job_now($1)'],
      ['update_job (name)', `select * from api.update_job($1, name => 'mine now')`],
      ['update_job (function)', `select * from api.update_job($1, function_signature => 'alice_fns.f(integer)', arguments => '[1]')`],
      ['update_job (schedule)', `select * from api.update_job($1, schedule => '* * * * *')`],
      ['update_job (bad arguments)', `select * from api.update_job($1, arguments => '["not", "valid"]')`],
      ['unschedule_job', 'select api.unschedule_job($1)'],
    ];

    /** The error with the job id replaced: what must be identical for a foreign and a missing id. */
    const shapeOf = (error: Failure, id: string): Failure => {
      const strip = (text: string | undefined): string | undefined => text?.replaceAll(id, '<id>');
      return { ...error, message: strip(error.message) as string, where: strip(error.where) };
    };

    test('every operation on bob\'s job id, as alice, fails exactly like an id that does not exist (HC211 "job N not found"), naming nothing of bob\'s; his job is unchanged', async () => {
      const bobJob = await scheduleJob(bob, 'bob_fns.note(text)', ['bob-secret-argument'], { name: 'bob secret job' });
      await db().admin.query(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, started_at, finished_at, status, error_message)
         values ($1, $2, $3, now(), now(), now(), 'failed', 'bob-secret-error')`,
        [bobJob.id, db().role('bob'), db().role('bob_fns')],
      );
      const { rows } = await db().admin.query<{ id: string }>('select (max(id) + 1000)::text as id from data.jobs');
      const missingId = rows[0]?.id as string;
      const before = await jobsSnapshot([bobJob.id]);
      const bobsSecrets = [db().role('bob'), 'bob_fns', 'bob-secret', 'bob secret'];

      for (const [name, sql] of operations) {
        const foreign = await failureOf(alice, sql, [bobJob.id]);
        const missing = await failureOf(alice, sql, [missingId]);
        expect([name, foreign.code, foreign.message]).toEqual([name, 'HC211', `job ${bobJob.id} not found`]);
        expect([name, shapeOf(foreign, bobJob.id)]).toEqual([name, shapeOf(missing, missingId)]);
        const everything = JSON.stringify(foreign);
        for (const secret of bobsSecrets) expect([name, everything.includes(secret)]).toEqual([name, false]);
      }
      // Reading is the same too: nothing, as for a missing id.
      for (const id of [bobJob.id, missingId]) {
        expect((await alice.query('select * from api.jobs where id = $1', [id])).rows).toEqual([]);
        expect((await alice.query('select * from api.job_runs where job_id = $1', [id])).rows).toEqual([]);
      }

      expect(await jobsSnapshot([bobJob.id])).toEqual(before);
      const seenByBob = (await bob.query<JobRow>('select * from api.jobs where id = $1', [bobJob.id])).rows;
      expect(seenByBob).toMatchObject([{ name: 'bob secret job', enabled: true, arguments: ['bob-secret-argument'] }]);
      expect(await countRows(db(), 'select from bob_fns.calls')).toBe(0);
    });
  });

  describe('case of role names', () => {
    test('mgr.add_user refuses nicknames that are not lower case (HC101)', async () => {
      for (const nickname of ['Alice', 'ALICE', 'alicE']) {
        let code = 'ok';
        try {
          await transaction(db(), `${setLocalRole(db(), 'mgr')}; call mgr.add_user(${db().admin.escapeLiteral(nickname)}, 'pw-123456', true)`);
        } catch (error) {
          code = (error as { code?: string }).code ?? '';
        }
        expect([nickname, code]).toEqual([nickname, 'HC101']);
      }
      expect(await countRows(db(), `select from pg_roles where lower(rolname) = lower($1) and rolname <> $1`, [db().role('alice')])).toBe(0);
    });

    test('"<db>$Alice" (made by the admin) and "<db>$alice": neither sees, changes, runs or unschedules the other\'s jobs', async () => {
      const { admin } = db();
      // What an administrator could do by hand: a capitalised role with the rights add_user gives.
      await admin.query(`create role ${q('Alice')} login inherit;
        grant ${q('client')}, ${q('job_scheduler')}, ${q('caps_fns')} to ${q('Alice')};
        grant ${q('Alice')} to ${q('authenticator')}, ${q('executor')}`);
      await admin.query('call mgr.create_frame($1)', [db().role('Alice')]);
      const capital = await db().login('Alice');
      expect((await capital.query('select session_user as su')).rows).toEqual([{ su: db().role('Alice') }]);

      const upperJob = await scheduleJob(capital, 'caps_fns.f(integer)', [3301]);
      const lowerJob = await scheduleJob(alice, 'alice_fns.f(integer)', [3302]);
      expect(upperJob.owner).toBe(db().role('Alice'));
      expect(lowerJob.owner).toBe(db().role('alice'));
      const before = await jobsSnapshot([upperJob.id, lowerJob.id]);

      const ownersSeenBy = async (client: pg.Client): Promise<string[]> =>
        [...new Set((await client.query<{ owner: string }>('select owner from api.jobs')).rows.map((row) => row.owner))].sort();
      expect(await ownersSeenBy(capital)).toEqual([db().role('Alice')]);
      expect(await ownersSeenBy(alice)).toEqual([db().role('alice')]);

      for (const [client, otherJob] of [
        [capital, lowerJob],
        [alice, upperJob],
      ] as const) {
        for (const sql of [
          'select * from api.pause_job($1)',
          'select * from api.resume_job($1)',
          'select * from api.run_job_now($1)',
          `select * from api.update_job($1, name => 'taken')`,
          'select api.unschedule_job($1)',
        ]) {
          const { code, message } = await failureOf(client, sql, [otherJob.id]);
          expect([sql, { code, message }]).toEqual([
            sql,
            { code: 'HC211', message: `job ${otherJob.id} not found` },
          ]);
        }
      }
      // Nor can one schedule the other's functions.
      expect((await failureOf(capital, `select * from api.schedule_job('alice_fns.f(integer)', '[1]', run_at => now() + interval '1 day')`)).code).toBe(
        'HC203',
      );
      expect((await failureOf(alice, `select * from api.schedule_job('caps_fns.f(integer)', '[1]', run_at => now() + interval '1 day')`)).code).toBe(
        'HC203',
      );
      expect(await jobsSnapshot([upperJob.id, lowerJob.id])).toEqual(before);

      // Each job runs as its own owner, and only its own function is called.
      const runs = await executeNow(db(), [upperJob.id, lowerJob.id]);
      expect(runs.map((run) => [run.owner, run.status])).toEqual([
        [db().role('Alice'), 'succeeded'],
        [db().role('alice'), 'succeeded'],
      ]);
      expect((await admin.query(`select arg from caps_fns.calls where arg in ('3301', '3302')`)).rows).toEqual([{ arg: '3301' }]);
      expect((await admin.query(`select arg from alice_fns.calls where arg in ('3301', '3302')`)).rows).toEqual([{ arg: '3302' }]);
    });
  });

  describe('names planted on the caller\'s search_path or in pg_temp', () => {
    // alice plants, in a schema she can create in, look-alikes of names hardcron's functions use
    // (and an = operator for text and oid) that answer "yes" and would hand her bob's identity.
    // Each records its call in alice_fns.hijacked, which everyone may insert into.
    let planter: pg.Client;
    const hijacked = (): Promise<number> => countRows(db(), 'select from alice_fns.hijacked');

    beforeAll(async () => {
      await transaction(db(), `${setLocalRole(db(), 'alice_fns')};
        create table alice_fns.hijacked (what text, by_role text default current_user);
        grant insert on alice_fns.hijacked to public`);
      planter = await db().login('alice');
      const bobRole = planter.escapeLiteral(db().role('bob'));
      const log = (what: string): string => `insert into alice_fns.hijacked (what) values ('${what}');`;
      await planter.query(`
        create function alice_fns.pg_has_role(a oid, b oid, p text) returns boolean language sql as $$ ${log('pg_has_role(oid,oid,text)')} select true $$;
        create function alice_fns.pg_has_role(a name, b name, p text) returns boolean language sql as $$ ${log('pg_has_role(name,name,text)')} select true $$;
        create function alice_fns.pg_has_role(b name, p text) returns boolean language sql as $$ ${log('pg_has_role(name,text)')} select true $$;
        create function alice_fns.to_regrole(r text) returns regrole language sql as $$ ${log('to_regrole')} select pg_catalog.to_regrole(${bobRole}) $$;
        create function alice_fns.quote_ident(t text) returns text language sql as $$ ${log('quote_ident')} select t $$;
        create function alice_fns.current_setting(s text) returns text language sql as $$ ${log('current_setting')} select ${bobRole}::text $$;
        create function alice_fns.current_setting(s text, missing_ok boolean) returns text language sql as $$ ${log('current_setting(2)')} select ${bobRole}::text $$;
        create function alice_fns.now() returns timestamptz language sql as $$ ${log('now')} select pg_catalog.now() $$;
        create function alice_fns.parse_ident(t text, strict boolean) returns text[] language sql as $$ ${log('parse_ident')} select pg_catalog.parse_ident(t, strict) $$;
        create function alice_fns.split_part(a text, b text, n integer) returns text language sql as $$ ${log('split_part')} select pg_catalog.split_part(a, b, n) $$;
        create function alice_fns.btrim(t text) returns text language sql as $$ ${log('btrim')} select pg_catalog.btrim(t) $$;
        create function alice_fns.jsonb_typeof(j jsonb) returns text language sql as $$ ${log('jsonb_typeof')} select pg_catalog.jsonb_typeof(j) $$;
        create function alice_fns.jsonb_array_length(j jsonb) returns integer language sql as $$ ${log('jsonb_array_length')} select pg_catalog.jsonb_array_length(j) $$;
        create function alice_fns.format_type(t oid, m integer) returns text language sql as $$ ${log('format_type')} select pg_catalog.format_type(t, m) $$;
        create function alice_fns.to_regtype(t text) returns regtype language sql as $$ ${log('to_regtype')} select pg_catalog.to_regtype(t) $$;
        create function alice_fns.pg_notify(c text, p text) returns void language sql as $$ ${log('pg_notify')} $$;
        create function alice_fns.text_eq(a text, b text) returns boolean language sql as $$ ${log('=(text,text)')} select true $$;
        create operator alice_fns.= (leftarg = text, rightarg = text, function = alice_fns.text_eq);
        create function alice_fns.text_ne(a text, b text) returns boolean language sql as $$ ${log('<>(text,text)')} select false $$;
        create operator alice_fns.<> (leftarg = text, rightarg = text, function = alice_fns.text_ne);
        create function alice_fns.oid_eq(a oid, b oid) returns boolean language sql as $$ ${log('=(oid,oid)')} select true $$;
        create operator alice_fns.= (leftarg = oid, rightarg = oid, function = alice_fns.oid_eq);
        create function alice_fns.text_match(a text, b text) returns boolean language sql as $$ ${log('~(text,text)')} select true $$;
        create operator alice_fns.~ (leftarg = text, rightarg = text, function = alice_fns.text_match);
      `);
      await planter.query('set search_path = alice_fns, pg_catalog');
    });

    test('control: in alice\'s own session her look-alikes do shadow pg_catalog', async () => {
      const { rows } = await planter.query(
        `select 'a'::text = 'b'::text as eq, pg_has_role('x', 'USAGE') as has, current_setting('role') as role`,
      );
      expect(rows).toEqual([{ eq: true, has: true, role: db().role('bob') }]);
      expect(await hijacked()).toBeGreaterThanOrEqual(3);
      await db().admin.query('truncate alice_fns.hijacked');
    });

    test('scheduling, viewing and changing jobs from that session (and the executor with the same path): hardcron never calls them, and they buy her nothing', async () => {
      const bobJob = await scheduleJob(bob, 'bob_fns.f(integer)', [801]);
      await db().admin.query('truncate alice_fns.hijacked');

      // Only qualified names and parameters in alice's own statements: any call logged below is hardcron's.
      const { rows } = await planter.query<JobRow>(
        `select * from api.schedule_job($1::text, $2::jsonb, run_at => pg_catalog.now() + interval '1 day', name => $3::text)`,
        ['alice_fns.f(integer)', '[802]', 'planted'],
      );
      const job = rows[0] as JobRow;
      expect(job.owner).toBe(db().role('alice'));
      await planter.query('select * from api.pause_job($1::bigint)', [job.id]);
      await planter.query('select * from api.resume_job($1::bigint)', [job.id]);
      await planter.query('select * from api.run_job_now($1::bigint)', [job.id]);
      await planter.query(`select * from api.update_job($1::bigint, name => $2::text, arguments => $3::jsonb)`, [job.id, 'planted 2', '[803]']);
      const visible = (await planter.query<JobRow>('select * from api.jobs')).rows;
      expect(visible.every((row) => row.owner === db().role('alice'))).toBe(true);
      expect(visible.map((row) => row.id)).not.toContain(bobJob.id);
      expect((await planter.query('select * from api.job_runs')).rows.every((row) => row.owner === db().role('alice'))).toBe(true);
      for (const sql of ['select * from api.pause_job($1::bigint)', 'select api.unschedule_job($1::bigint)']) {
        expect((await failureOf(planter, sql, [bobJob.id])).code).toBe('HC211');
      }

      await db().admin.query(`alter role ${q('executor')} set search_path = alice_fns, pg_catalog`);
      try {
        const executor = await db().login('executor');
        const [run] = await executeNow(db(), [job.id], executor);
        expect(run).toMatchObject({ status: 'succeeded', owner: db().role('alice') });
      } finally {
        await db().admin.query(`alter role ${q('executor')} reset search_path`);
      }
      expect((await db().admin.query(`select arg from alice_fns.calls where arg = '803'`)).rows).toEqual([{ arg: '803' }]);
      expect((await db().admin.query('select what, by_role from alice_fns.hijacked')).rows).toEqual([]);
      expect(await jobsSnapshot([bobJob.id])).toMatchObject([{ enabled: true, owner: db().role('bob') }]);
    });

    test('pg_temp: alice cannot create temporary objects at all (TEMP is revoked from PUBLIC)', async () => {
      for (const sql of [
        'create temp table jobs (id bigint)',
        'create function pg_temp.now() returns timestamptz language sql as $$ select pg_catalog.now() $$',
        'create temp view pg_roles as select * from pg_catalog.pg_roles',
      ]) {
        expect([sql, (await failureOf(planter, sql)).code]).toEqual([sql, '42501']);
      }
    });

    test('even granted TEMP, relations and types alice plants in pg_temp under catalog and hardcron names are never read by hardcron', async () => {
      const { admin } = db();
      await admin.query(`grant temporary on database ${admin.escapeIdentifier(db().name)} to ${q('alice')}`);
      try {
        const session = await db().login('alice');
        await session.query(`create function alice_fns.seen(what text) returns boolean language sql
          as $$ insert into alice_fns.hijacked (what) values (what); select true $$`);
        const views = ['pg_roles', 'pg_proc', 'pg_namespace', 'pg_type', 'pg_auth_members', 'pg_depend', 'pg_enum', 'pg_timezone_names'];
        for (const name of views) {
          await session.query(`create temp view ${name} as select * from pg_catalog.${name} where alice_fns.seen('pg_temp.${name}')`);
        }
        await session.query(`create temp view jobs as select * from (values (1)) v(id) where alice_fns.seen('pg_temp.jobs');
          create temp view job_runs as select * from (values (1)) v(id) where alice_fns.seen('pg_temp.job_runs');
          create type pg_temp.verdict as (reason text)`);
        await admin.query('truncate alice_fns.hijacked');

        const job = await scheduleJob(session, 'alice_fns.f(integer)', [804]);
        await session.query('select * from api.pause_job($1)', [job.id]);
        await session.query('select * from api.resume_job($1)', [job.id]);
        await session.query(`select * from api.update_job($1, arguments => '[805]')`, [job.id]);
        await session.query('select * from api.jobs');
        await session.query('select * from api.job_runs');
        await session.query('select api.unschedule_job($1)', [job.id]);
        expect((await admin.query('select what from alice_fns.hijacked')).rows).toEqual([]);
        // Control: her own unqualified reads do go through pg_temp first.
        await session.query('select count(*) from pg_roles');
        expect((await admin.query('select distinct what from alice_fns.hijacked')).rows).toEqual([{ what: 'pg_temp.pg_roles' }]);
      } finally {
        await admin.query(`revoke temporary on database ${admin.escapeIdentifier(db().name)} from ${q('alice')}`);
      }
    });

    // Casts: a user can only create casts involving a type she owns, so hardcron's own casts
    // between PostgreSQL's types cannot be replaced; what remains is the argument of a job whose
    // parameter type is hers — a domain whose CHECK calls her code, or a composite with an
    // implicit cast from text. Scheduling must not evaluate those as hardcron's roles.
    test("casts and domain checks of a job's own parameter types run as the job's owner only, never as hardcron's roles", async () => {
      const { admin } = db();
      await transaction(db(), `${setLocalRole(db(), 'alice_fns')};
        create function alice_fns.spy(v text) returns boolean language sql
          as $$ insert into alice_fns.hijacked (what) values ('spy:' || v); select true $$;
        create domain alice_fns.watched as text check (alice_fns.spy(value));
        create type alice_fns.pair as (a text, b text);
        create function alice_fns.pair_of(t text) returns alice_fns.pair language sql
          as $$ insert into alice_fns.hijacked (what) values ('cast:' || t); select row(t, t)::alice_fns.pair $$;
        create cast (text as alice_fns.pair) with function alice_fns.pair_of(text) as implicit;
        grant usage on type alice_fns.watched, alice_fns.pair to public;
        grant execute on function alice_fns.spy(text), alice_fns.pair_of(text) to public;
        create function alice_fns.take(w alice_fns.watched, p alice_fns.pair) returns void security definer
          set search_path = pg_catalog, pg_temp language sql as $$ insert into alice_fns.calls (arg) values (w || '/' || (p).a) $$`);
      await admin.query('truncate alice_fns.hijacked');

      const job = await scheduleJob(alice, 'alice_fns.take(alice_fns.watched,alice_fns.pair)', ['w', 'p']);
      await alice.query(`select * from api.update_job($1, arguments => '["w2", "p2"]')`, [job.id]);
      await alice.query('select * from api.jobs');
      expect((await admin.query('select what, by_role from alice_fns.hijacked')).rows).toEqual([]); // not evaluated at scheduling

      const [run] = await executeNow(db(), [job.id]);
      expect(run).toMatchObject({ status: 'succeeded' });
      expect((await admin.query(`select arg from alice_fns.calls where arg = 'w2/p2'`)).rows).toEqual([{ arg: 'w2/p2' }]);
      // At the call, as the job's owner (alice), who could have run them herself.
      const { rows } = await admin.query('select distinct what, by_role from alice_fns.hijacked order by what');
      expect(rows).toEqual([
        { what: 'cast:p2', by_role: db().role('alice') },
        { what: 'spy:w2', by_role: db().role('alice') },
      ]);
    });
  });
});
