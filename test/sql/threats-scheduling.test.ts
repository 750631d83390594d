import { beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import { useTestDatabase } from '../support/database.ts';
import { countRows, createOwnerRole, failureOf, scheduleJob, setLocalRole, transaction, type Failure } from '../support/jobs.ts';
import { asRole, executeNow, outcomeOf, reasonOf, serverVersionNum, verdictOf } from '../support/threats.ts';

/**
 * The scheduling half of privilege amplification: two classic exploits, every
 * scheduling rule (SPEC section 2) refused when scheduling, and every rule broken after scheduling
 * caught by the check the executor runs. Attacks are made over real logins by the role that would
 * make them; every function that must not run writes to a table that must stay empty.
 */
describe('scheduling threats', () => {
  const db = useTestDatabase();
  let joe: pg.Client; // the classic exploits
  let ann: pg.Client; // rules broken after scheduling
  let sam: pg.Client; // rules refused when scheduling
  let version = 0;

  const q = (nickname: string): string => db().admin.escapeIdentifier(db().role(nickname));
  const fnsCalls = (fn: string): Promise<number> => countRows(db(), 'select from fns.calls where fn = $1', [fn]);

  beforeAll(async () => {
    version = await serverVersionNum(db());
    // $fns owns the functions ann and sam may schedule. Its schema and its calls table are open
    // to everyone, so that the only thing that can stop a call is hardcron.
    await createOwnerRole(db(), 'fns', `
      create schema fns;
      create table fns.calls (fn text, arg text, by_role text default current_user);
      grant usage on schema fns to public;
      grant insert on fns.calls to public;
      create schema fns_open;
      grant usage, create on schema fns_open to public;

      create function fns.ok(x integer) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into fns.calls (fn, arg) values ('ok', x) $$;
      create function fns.invoker(x integer) returns void security invoker set search_path = pg_catalog, pg_temp
        language sql as $$ insert into fns.calls (fn, arg) values ('invoker', x) $$;
      create procedure fns.proc(x integer) security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into fns.calls (fn, arg) values ('proc', x) $$;
      create aggregate fns.agg(integer) (sfunc = int4pl, stype = integer);
      create function fns.unpinned(x integer) returns void security definer
        language sql as $$ insert into fns.calls (fn, arg) values ('unpinned', x) $$;
      create function fns.temp_first(x integer) returns void security definer set search_path = pg_temp, pg_catalog
        language sql as $$ insert into fns.calls (fn, arg) values ('temp_first', x) $$;
      create function fns.open_path(x integer) returns void security definer set search_path = fns_open, pg_catalog, pg_temp
        language sql as $$ insert into fns.calls (fn, arg) values ('open_path', x) $$;
      create function fns.no_timeout(x integer) returns void security definer set search_path = pg_catalog, pg_temp
        set statement_timeout = 0
        language sql as $$ insert into fns.calls (fn, arg) values ('no_timeout', x) $$;
      -- A trusted extension $fns may install itself, and its own function made a member of it.
      create schema fns_ext;
      create extension pgcrypto schema fns_ext;
      create function fns_ext.own(x integer) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ insert into fns.calls (fn, arg) values ('own', x) $$;
      alter extension pgcrypto add function fns_ext.own(integer);
    `);
    // A security definer function of the superuser, in fns' schema (only a superuser can put it there).
    await db().admin.query(`create function fns.su_owned(x integer) returns void security definer
        set search_path = pg_catalog, pg_temp
        language sql as $$ insert into fns.calls (fn, arg) values ('su_owned', x) $$`);
    await createOwnerRole(db(), 'stranger');

    // Exploit 1: joe schedules his own function; $secure owns a function of the same
    // signature in schema secure_creditcard, executable by everyone.
    await createOwnerRole(db(), 'joe_owner', `
      create schema joe;
      create table joe.blocked (customer_id integer, by_role text default current_user);
      create table joe.reads (path text, by_role text default current_user);
      grant usage on schema joe to public;
    `);
    await createOwnerRole(db(), 'secure', `
      create schema secure_creditcard;
      create table secure_creditcard.blocked (customer_id integer, by_role text default current_user, by_session text default session_user);
      create function secure_creditcard.block_creditcard(customer_id integer) returns void security definer
        set search_path = pg_catalog, pg_temp
        language sql as $$ insert into secure_creditcard.blocked (customer_id) values (customer_id) $$;
      grant usage on schema secure_creditcard to public;
      grant insert on secure_creditcard.blocked to public;
      grant execute on function secure_creditcard.block_creditcard(integer) to public;
    `);

    await db().addUser('joe', { scheduler: true, memberOf: ['joe_owner'] });
    await db().addUser('ann', { scheduler: true, memberOf: ['fns'] });
    await db().addUser('sam', { scheduler: true, memberOf: ['fns'] });
    await db().addUser('nosched', { memberOf: ['fns'] });
    await db().addUser('outsider', { scheduler: true });
    joe = await db().login('joe');
    ann = await db().login('ann');
    sam = await db().login('sam');
  });

  describe('two classic exploits', () => {
    test('exploit 1: joe drops his scheduled function; the same signature in secure_creditcard, on his and the executor\'s search_path, is never resolved', async () => {
      const { admin } = db();
      await joe.query(`set role ${q('joe_owner')};
        create function joe.block_creditcard(customer_id integer) returns void security definer
          set search_path = pg_catalog, pg_temp
          language sql as $$ insert into joe.blocked (customer_id) values (customer_id) $$;
        reset role`);
      const job = await scheduleJob(joe, 'joe.block_creditcard(integer)', [4242]);
      expect(job).toMatchObject({ owner: db().role('joe'), function_signature: 'joe.block_creditcard(integer)' });
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: null, rule: null });

      // The exploit: drop the function, put secure_creditcard on joe's and the executor's paths.
      await joe.query(`set role ${q('joe_owner')}; drop function joe.block_creditcard(integer); reset role`);
      await admin.query(`alter role ${q('joe')} set search_path = secure_creditcard, joe, pg_catalog`);
      await admin.query(`alter role ${q('executor')} set search_path = secure_creditcard, pg_catalog`);
      try {
        const joeAgain = await db().login('joe');
        // Precondition: through joe's search_path, the name does lead to secure_creditcard now.
        const { rows: found } = await joeAgain.query(
          `select p.pronamespace::regnamespace::text as schema from pg_proc p where p.oid = to_regprocedure('block_creditcard(integer)')`,
        );
        expect(found).toEqual([{ schema: 'secure_creditcard' }]);

        // The check the executor runs: refused, generic reason, nothing resolved.
        expect(await verdictOf(db(), job.id)).toEqual({
          reason: 'function_not_eligible',
          rule: 0,
          message: 'function joe.block_creditcard(integer) does not exist',
          function_oid: null,
          function_owner: null,
        });
        // Resolution of the stored signature ignores any search_path.
        await admin.query('begin');
        try {
          await admin.query('set local search_path = secure_creditcard, joe, pg_catalog');
          const { rows } = await admin.query('select code.resolve_function($1) as oid', ['joe.block_creditcard(integer)']);
          expect(rows).toEqual([{ oid: null }]);
        } finally {
          await admin.query('rollback');
        }

        // joe cannot get there through his path by scheduling anew either.
        expect((await failureOf(joeAgain, `select * from api.schedule_job('block_creditcard(integer)', '[4242]', run_at => now() + interval '1 day')`)).code).toBe(
          'HC201',
        );
        const direct = await failureOf(
          joeAgain,
          `select * from api.schedule_job('secure_creditcard.block_creditcard(integer)', '[4242]', run_at => now() + interval '1 day')`,
        );
        expect(direct.code).toBe('HC203');
        expect(direct.message).toMatch(/\(rule 2\)/);

        // And the executor, logged in with secure_creditcard on its own path, rejects the run.
        const executor = await db().login('executor');
        expect((await executor.query('show search_path')).rows).toEqual([{ search_path: 'secure_creditcard, pg_catalog' }]);
        const [run] = await executeNow(db(), [job.id], executor);
        expect(run).toMatchObject({ status: 'rejected', reject_reason: 'function_not_eligible', error_message: null });
        expect(await countRows(db(), 'select from secure_creditcard.blocked')).toBe(0);
        expect(await countRows(db(), 'select from joe.blocked')).toBe(0);
        expect(await countRows(db(), 'select from data.jobs where owner = $1', [db().role('joe')])).toBe(1);
      } finally {
        await admin.query(`alter role ${q('joe')} reset search_path`);
        await admin.query(`alter role ${q('executor')} reset search_path`);
      }
    });

    test('exploit 2: joe\'s own pg_read_file(text), scheduled for several files then dropped: the same verdict and run record for every file, pg_catalog.pg_read_file never reached', async () => {
      await joe.query(`set role ${q('joe_owner')};
        create function joe.pg_read_file(path text) returns text security definer
          set search_path = pg_catalog, pg_temp
          language sql as $$ insert into joe.reads (path) values (path) returning 'not a secret' $$;
        reset role`);
      // PG_VERSION and postgresql.auto.conf exist in every data directory; the others do not (or may).
      const files = ['server.key', 'no-such-file', 'PG_VERSION', 'postgresql.auto.conf'];
      const jobs = [];
      for (const file of files) jobs.push(await scheduleJob(joe, 'joe.pg_read_file(text)', [file]));
      const before = await verdictOf(db(), jobs[0]!.id);
      expect(before.reason).toBeNull();
      expect(before.function_oid).toEqual(expect.any(Number));

      await joe.query(`set role ${q('joe_owner')}; drop function joe.pg_read_file(text); reset role`);

      const verdicts = await Promise.all(jobs.map((job) => verdictOf(db(), job.id)));
      for (const verdict of verdicts) {
        expect(verdict).toEqual({
          reason: 'function_not_eligible',
          rule: 0,
          message: 'function joe.pg_read_file(text) does not exist',
          function_oid: null,
          function_owner: null,
        });
      }

      const runs = await executeNow(
        db(),
        jobs.map((job) => job.id),
      );
      expect(runs).toHaveLength(files.length);
      const outcomes = runs.map(outcomeOf);
      for (const outcome of outcomes) {
        expect(outcome).toEqual(outcomes[0]);
        expect(outcome).toMatchObject({
          status: 'rejected',
          reject_reason: 'function_not_eligible',
          rows_returned: null,
          rows_affected: null,
          error_sqlstate: null,
          error_message: null,
          error_detail: null,
          error_hint: null,
          error_context: null,
        });
      }
      // What joe can read in the log is the same for every file (but the job id and times).
      const { rows: logged } = await joe.query(
        `select status, reject_reason, error_sqlstate, error_message, error_detail, error_hint, error_context, rows_returned, rows_affected
           from api.job_runs where job_id = any($1::bigint[])`,
        [jobs.map((job) => job.id)],
      );
      expect(logged).toHaveLength(files.length);
      expect(new Set(logged.map((row) => JSON.stringify(row))).size).toBe(1);
      // Neither joe's function (dropped) nor anything else ran: a call of pg_catalog.pg_read_file
      // as joe would have been a `failed` run with a permission error, not `rejected`.
      expect(await countRows(db(), 'select from joe.reads')).toBe(0);

      // Naming the system function directly is refused when scheduling (rule 3).
      for (const signature of ['pg_catalog.pg_read_file(text)', 'pg_catalog.pg_read_file(text, bigint, bigint)']) {
        const refused = await failureOf(joe, `select * from api.schedule_job($1, '["server.key"]', run_at => now() + interval '1 day')`, [
          signature,
        ]);
        expect(refused.code).toBe('HC203');
        expect(refused.message).toMatch(/\(rule 3\): .*belongs to PostgreSQL/);
      }
      expect(await countRows(db(), 'select from data.jobs where function_signature like $1', ['pg_catalog.%'])).toBe(0);
    });
  });

  describe('every rule, refused when scheduling (SQLSTATE and a message naming the rule), nothing stored, nothing called', () => {
    const refusals: Array<{ what: string; who?: string; signature: string; args?: unknown[]; code: string; message: RegExp }> = [
      { what: 'no $job_scheduler', who: 'nosched', signature: 'fns.ok(integer)', code: 'HC204', message: /\(rule 1\): .*job_scheduler/ },
      { what: 'not a member of the function owner', who: 'outsider', signature: 'fns.ok(integer)', code: 'HC203', message: /\(rule 2\): you are not a member of/ },
      { what: 'SECURITY INVOKER', signature: 'fns.invoker(integer)', code: 'HC203', message: /\(rule 3\): .*not SECURITY DEFINER/ },
      { what: 'a procedure', signature: 'fns.proc(integer)', code: 'HC203', message: /\(rule 3\): .*is a procedure, not a function/ },
      { what: 'an aggregate', signature: 'fns.agg(integer)', code: 'HC203', message: /\(rule 3\): .*aggregate, not a function/ },
      { what: 'a pg_catalog function', signature: 'pg_catalog.pg_read_file(text)', args: ['PG_VERSION'], code: 'HC203', message: /\(rule 3\): .*belongs to PostgreSQL/ },
      { what: 'an information_schema function', signature: 'information_schema._pg_index_position(oid, smallint)', args: [1, 1], code: 'HC203', message: /\(rule 3\): .*belongs to PostgreSQL/ },
      { what: 'an extension\'s function', signature: 'fns_ext.gen_random_bytes(integer)', args: [16], code: 'HC203', message: /\(rule 3\): .*belongs to PostgreSQL or to an extension/ },
      { what: 'its owner\'s own function, made a member of an extension', signature: 'fns_ext.own(integer)', code: 'HC203', message: /\(rule 3\): .*belongs to PostgreSQL or to an extension/ },
      { what: 'a superuser-owned function', signature: 'fns.su_owned(integer)', code: 'HC203', message: /\(rule 4\): .*owned by a superuser/ },
      { what: 'an unpinned search_path', signature: 'fns.unpinned(integer)', code: 'HC203', message: /\(rule 5\): .*does not pin search_path/ },
      { what: 'pg_temp first in the pinned search_path', signature: 'fns.temp_first(integer)', code: 'HC203', message: /\(rule 5\): .*pg_temp is in its search_path before/ },
      { what: 'a schema writable by PUBLIC in the pinned search_path', signature: 'fns.open_path(integer)', code: 'HC203', message: /\(rule 5\): .*schema fns_open .*can be written/ },
      { what: 'a proconfig that sets statement_timeout', signature: 'fns.no_timeout(integer)', code: 'HC203', message: /\(rule 5\): .*statement_timeout/ },
      { what: 'too many arguments', signature: 'fns.ok(integer)', args: [1, 2], code: 'HC205', message: /\(rule 6\): .*takes 1 argument, 2 given/ },
      { what: 'too few arguments', signature: 'fns.ok(integer)', args: [], code: 'HC205', message: /\(rule 6\): .*takes 1 argument, 0 given/ },
      { what: 'an argument of the wrong type', signature: 'fns.ok(integer)', args: ['not a number'], code: 'HC205', message: /\(rule 6\): argument 1: .*not a valid integer/ },
      { what: 'a JSON object for an integer', signature: 'fns.ok(integer)', args: [{ a: 1 }], code: 'HC205', message: /\(rule 6\): argument 1: a JSON object cannot be a integer/ },
    ];

    for (const { what, who = 'sam', signature, args = [1], code, message } of refusals) {
      test(`${what}: ${code}`, async () => {
        const client = who === 'sam' ? sam : await db().login(who);
        const jobsBefore = await countRows(db(), 'select from data.jobs');
        const refused = await failureOf(client, `select * from api.schedule_job($1, $2::jsonb, run_at => now() + interval '1 day')`, [
          signature,
          JSON.stringify(args),
        ]);
        expect(refused.code).toBe(code);
        expect(refused.message).toMatch(/^cannot schedule /);
        expect(refused.message).toMatch(message);
        expect(await countRows(db(), 'select from data.jobs')).toBe(jobsBefore);
        expect(await countRows(db(), 'select from fns.calls')).toBe(0);
      });
    }

    test('a superuser cannot own a job: the admin scheduling in its own name gets HC204 (rule 4)', async () => {
      const jobsBefore = await countRows(db(), 'select from data.jobs');
      const refused = await failureOf(db().admin, `select * from api.schedule_job('fns.ok(integer)', '[1]', run_at => now() + interval '1 day')`);
      expect(refused.code).toBe('HC204');
      expect(refused.message).toMatch(/\(rule 4\): a superuser cannot own jobs/);
      expect(await countRows(db(), 'select from data.jobs')).toBe(jobsBefore);
    });

    test('PostgreSQL 16+: a member granted the owner role WITH INHERIT FALSE cannot schedule its functions, nor keep a job on them', async ({ skip }) => {
      skip(version < 160000, 'GRANT … WITH INHERIT FALSE needs PostgreSQL 16 or later; this server is 15');
      const { admin } = db();
      await db().addUser('nia', { scheduler: true });
      await admin.query(`grant ${q('fns')} to ${q('nia')} with inherit false`);
      // Precondition: nia is a MEMBER of $fns (and may SET ROLE to it), without its privileges.
      const { rows } = await admin.query(`select pg_has_role($1, $2, 'MEMBER') as member, pg_has_role($1, $2, 'USAGE') as usage`, [
        db().role('nia'),
        db().role('fns'),
      ]);
      expect(rows).toEqual([{ member: true, usage: false }]);
      const nia = await db().login('nia');
      const jobsBefore = await countRows(db(), 'select from data.jobs');
      const refused = await failureOf(nia, `select * from api.schedule_job('fns.ok(integer)', '[1]', run_at => now() + interval '1 day')`);
      expect(refused.code).toBe('HC203');
      expect(refused.message).toMatch(/\(rule 2\): you are not a member of/);
      expect(await countRows(db(), 'select from data.jobs')).toBe(jobsBefore);

      // A member whose grant is changed to INHERIT FALSE after scheduling: rejected at execution.
      await db().addUser('nina', { scheduler: true, memberOf: ['fns'] });
      const nina = await db().login('nina');
      const job = await scheduleJob(nina, 'fns.ok(integer)', [1601]);
      await admin.query(`grant ${q('fns')} to ${q('nina')} with inherit false`);
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: 'function_not_eligible', rule: 2 });
      const [run] = await executeNow(db(), [job.id]);
      expect(run).toMatchObject({ status: 'rejected', reject_reason: 'function_not_eligible' });
      expect(await countRows(db(), `select from fns.calls where arg = '1601'`)).toBe(0);
    });
  });

  describe('rule 5 also holds for search_path entries that are not plain schema names', () => {
    // An attacker with CREATE on the database ($mallory_owner, like every owner role made by
    // mgr.re_create_role) plants functions that a victim's pinned search_path would resolve to.
    beforeAll(async () => {
      await createOwnerRole(db(), 'mallory_owner', `
        create schema mallory;
        create table mallory.loot (via text, by_role text default current_user);
        grant usage on schema mallory to public;
        grant insert on mallory.loot to public;
      `);
      await createOwnerRole(db(), 'victim', `
        create schema victim;
        create table victim.shouts (said text);
        -- "$user" is in PostgreSQL's default search_path; SET search_path FROM CURRENT stores it too.
        create function victim.shout(x text) returns void security definer
          set search_path = "$user", pg_catalog, pg_temp
          language sql as $$ insert into victim.shouts values (upper(x)) $$;
        -- One string literal: PostgreSQL stores it as ONE schema named "victim, pg_temp".
        create function victim.shout_quoted(x varchar) returns void security definer
          set search_path = 'victim, pg_temp'
          language sql as $$ insert into victim.shouts values (upper(x)) $$;
      `);
      await db().addUser('mallory', { memberOf: ['mallory_owner'] });
      await db().addUser('vic', { scheduler: true, memberOf: ['victim'] });
    });

    /** Schedules as vic; if that works, runs the job. Returns what happened. */
    async function attempt(signature: string, via: string): Promise<{ scheduled: Pick<Failure, 'code' | 'message'> | 'scheduled'; run: string | null; loot: unknown[] }> {
      const vic = await db().login('vic');
      let scheduled: Pick<Failure, 'code' | 'message'> | 'scheduled';
      let run: string | null = null;
      try {
        const job = await scheduleJob(vic, signature, ['hello']);
        scheduled = 'scheduled';
        const [record] = await executeNow(db(), [job.id]);
        run = record?.status ?? null;
      } catch (error) {
        const { code = '', message } = error as { code?: string; message: string };
        scheduled = { code, message };
      }
      const { rows: loot } = await db().admin.query('select via, by_role from mallory.loot where via = $1', [via]);
      return { scheduled, run, loot };
    }

    test('"$user": a schema named after the function\'s owner but owned by someone else is refused (rule 5)', async () => {
      // mallory creates schema "<db>$victim" (any name is hers to take) and plants upper(text).
      const mallory = await db().login('mallory');
      await mallory.query(`create schema ${q('victim')};
        grant usage on schema ${q('victim')} to public;
        create function ${q('victim')}.upper(x text) returns text language sql
          as $$ insert into mallory.loot (via) values ('$user') returning pg_catalog.upper(x) $$;`);
      const outcome = await attempt('victim.shout(text)', '$user');
      expect(outcome).toEqual({
        scheduled: { code: 'HC203', message: expect.stringMatching(/\(rule 5\)/) },
        run: null,
        loot: [],
      });
    });

    test('a search_path given as one quoted string ("victim, pg_temp") is one schema, not two: refused (rule 5)', async () => {
      // mallory creates the schema "victim, pg_temp" that the path really names, and plants a
      // better match for upper(varchar) than pg_catalog.upper(text).
      const mallory = await db().login('mallory');
      await mallory.query(`create schema "victim, pg_temp";
        grant usage on schema "victim, pg_temp" to public;
        create function "victim, pg_temp".upper(x varchar) returns text language sql
          as $$ insert into mallory.loot (via) values ('quoted path') returning pg_catalog.upper(x) $$;`);
      const outcome = await attempt('victim.shout_quoted(character varying)', 'quoted path');
      expect(outcome).toEqual({
        scheduled: { code: 'HC203', message: expect.stringMatching(/\(rule 5\)/) },
        run: null,
        loot: [],
      });
    });
  });

  describe('every rule broken after scheduling: the check the executor runs refuses, the run is rejected, nothing is called', () => {
    let n = 0;

    /** A fresh function $fns owns, scheduled by ann (eligible), then `breakIt`, then checked and executed. */
    async function scheduledThenBroken(breakIt: (fn: string) => string): Promise<unknown> {
      n += 1;
      const fn = `fns.t${n}`;
      await asRole(db(), 'fns', `create function ${fn}(x integer) returns void security definer set search_path = pg_catalog, pg_temp
          language sql as $$ insert into fns.calls (fn, arg) values ('${fn}', x) $$`);
      const job = await scheduleJob(ann, `${fn}(integer)`, [n]);
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: null, rule: null });
      await transaction(db(), breakIt(fn));
      const verdict = reasonOf(await verdictOf(db(), job.id));
      const [run] = await executeNow(db(), [job.id]);
      return { verdict, run: { status: run?.status, reject_reason: run?.reject_reason }, calls: await fnsCalls(fn) };
    }

    const refused = (reason: string, rule: number) => ({
      verdict: { reason, rule },
      run: { status: 'rejected', reject_reason: reason },
      calls: 0,
    });
    const asFns = (): string => setLocalRole(db(), 'fns');

    test('control: nothing broken, the job runs and calls its function once', async () => {
      expect(await scheduledThenBroken(() => 'select 1')).toEqual({
        verdict: { reason: null, rule: null },
        run: { status: 'succeeded', reject_reason: null },
        calls: 1,
      });
    });

    test('the function was dropped (rule 0: it does not exist)', async () => {
      expect(await scheduledThenBroken((fn) => `${asFns()}; drop function ${fn}(integer)`)).toEqual(refused('function_not_eligible', 0));
    });

    test('CREATE OR REPLACE by its owner made it SECURITY INVOKER (rule 3)', async () => {
      const outcome = await scheduledThenBroken(
        (fn) => `${asFns()}; create or replace function ${fn}(x integer) returns void security invoker
          set search_path = pg_catalog, pg_temp
          language sql as $$ insert into fns.calls (fn, arg) values ('${fn}', x) $$`,
      );
      expect(outcome).toEqual(refused('function_not_eligible', 3));
    });

    test('ALTER FUNCTION … OWNER TO a role the job owner is not a member of (rule 2)', async () => {
      expect(await scheduledThenBroken((fn) => `alter function ${fn}(integer) owner to ${q('stranger')}`)).toEqual(
        refused('function_not_eligible', 2),
      );
    });

    test('ALTER FUNCTION … OWNER TO a superuser (rule 4)', async () => {
      expect(await scheduledThenBroken((fn) => `alter function ${fn}(integer) owner to current_user`)).toEqual(
        refused('function_not_eligible', 4),
      );
    });

    test('the job owner lost $job_scheduler (rule 1)', async () => {
      try {
        expect(await scheduledThenBroken(() => `revoke ${q('job_scheduler')} from ${q('ann')}`)).toEqual(refused('owner_not_eligible', 1));
      } finally {
        await db().admin.query(`grant ${q('job_scheduler')} to ${q('ann')}`);
      }
    });

    test('the job owner lost membership in the function owner (rule 2)', async () => {
      try {
        expect(await scheduledThenBroken(() => `revoke ${q('fns')} from ${q('ann')}`)).toEqual(refused('function_not_eligible', 2));
      } finally {
        await db().admin.query(`grant ${q('fns')} to ${q('ann')}`);
      }
    });

    test('the job owner became a superuser (rule 4)', async () => {
      try {
        expect(await scheduledThenBroken(() => `alter role ${q('ann')} superuser`)).toEqual(refused('owner_not_eligible', 4));
      } finally {
        await db().admin.query(`alter role ${q('ann')} nosuperuser`);
      }
    });

    test('its owner unpinned its search_path: ALTER FUNCTION … RESET search_path (rule 5)', async () => {
      expect(await scheduledThenBroken((fn) => `${asFns()}; alter function ${fn}(integer) reset search_path`)).toEqual(
        refused('function_not_eligible', 5),
      );
    });

    test('its owner put pg_temp first in its search_path (rule 5)', async () => {
      expect(await scheduledThenBroken((fn) => `${asFns()}; alter function ${fn}(integer) set search_path = pg_temp, pg_catalog`)).toEqual(
        refused('function_not_eligible', 5),
      );
    });

    test('its owner added a PUBLIC-writable schema to its search_path (rule 5)', async () => {
      expect(
        await scheduledThenBroken((fn) => `${asFns()}; alter function ${fn}(integer) set search_path = fns_open, pg_catalog, pg_temp`),
      ).toEqual(refused('function_not_eligible', 5));
    });

    test('the function owner role was dropped and created again under its name: stored by name, re-checked, rejected until every rule holds for the new role', async () => {
      // Documented outcome of resolving by name (DESIGN.md): the job names the role and the
      // function by name; whatever carries those names at execution is checked like anything else.
      const doomedFunction = `
        create schema doomed;
        create table doomed.calls (arg integer, by_role text default current_user);
        create function doomed.f(x integer) returns void security definer set search_path = pg_catalog, pg_temp
          language sql as $$ insert into doomed.calls (arg) values (x) $$;`;
      await createOwnerRole(db(), 'doomed', doomedFunction);
      await db().admin.query(`grant ${q('doomed')} to ${q('ann')}`);
      const job = await scheduleJob(ann, 'doomed.f(integer)', [1]);
      expect((await verdictOf(db(), job.id)).function_owner).toBe(db().role('doomed'));

      // re_create_role drops the role with everything it owns (its schema and function) and creates it anew.
      await createOwnerRole(db(), 'doomed');
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: 'function_not_eligible', rule: 0 });
      expect(await executeNow(db(), [job.id])).toMatchObject([{ status: 'rejected', reject_reason: 'function_not_eligible' }]);

      // The new role creates a function of the same signature; ann is not a member of the new role.
      await createOwnerRole(db(), 'doomed', doomedFunction);
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: 'function_not_eligible', rule: 2 });
      expect(await executeNow(db(), [job.id])).toMatchObject([{ status: 'rejected', reject_reason: 'function_not_eligible' }]);
      expect(await countRows(db(), 'select from doomed.calls')).toBe(0);

      // Only once ann is granted the new role does the job pass again (every rule holds, now).
      await db().admin.query(`grant ${q('doomed')} to ${q('ann')}`);
      expect(await verdictOf(db(), job.id)).toMatchObject({ reason: null, function_owner: db().role('doomed') });
    });

    test('the job owner role was dropped and created again under its name: rejected while it does not exist or lacks a rule; a new role that satisfies every rule takes the job over', async () => {
      const { admin } = db();
      await db().addUser('dora', { scheduler: true, memberOf: ['fns'] });
      const dora = await db().login('dora');
      const job = await scheduleJob(dora, 'fns.ok(integer)', [7001]);
      await dora.end();

      await transaction(db(), `${setLocalRole(db(), 'mgr')}; call mgr.remove_user('dora')`);
      expect(await verdictOf(db(), job.id)).toMatchObject({
        reason: 'owner_not_eligible',
        rule: 1,
        message: `role "${db().role('dora')}" does not exist`,
      });
      expect(await executeNow(db(), [job.id])).toMatchObject([{ status: 'rejected', reject_reason: 'owner_not_eligible' }]);

      // A new user under the same name, not (yet) a member of $fns.
      await db().addUser('dora', { scheduler: true });
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: 'function_not_eligible', rule: 2 });
      expect(await executeNow(db(), [job.id])).toMatchObject([{ status: 'rejected', reject_reason: 'function_not_eligible' }]);
      expect(await countRows(db(), `select from fns.calls where arg = '7001'`)).toBe(0);

      // Documented: roles are resolved by name, so once the new dora satisfies every rule, the
      // old dora's job (and its run history) are hers.
      await admin.query(`grant ${q('fns')} to ${q('dora')}`);
      expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: null, rule: null });
      const newDora = await db().login('dora');
      expect((await newDora.query('select id from api.jobs where owner = $1', [db().role('dora')])).rows).toEqual([{ id: job.id }]);
      expect((await newDora.query('select status from api.job_runs where job_id = $1', [job.id])).rows).toHaveLength(2);
    });

    test('the job owner role was renamed: the job names the old role, which no longer exists (rule 1)', async () => {
      const { admin } = db();
      await db().addUser('eve', { scheduler: true, memberOf: ['fns'] });
      const eve = await db().login('eve');
      const job = await scheduleJob(eve, 'fns.ok(integer)', [7002]);
      await eve.end();
      await admin.query(`alter role ${q('eve')} rename to ${q('eve_renamed')}`);
      try {
        expect(reasonOf(await verdictOf(db(), job.id))).toEqual({ reason: 'owner_not_eligible', rule: 1 });
        expect(await executeNow(db(), [job.id])).toMatchObject([{ status: 'rejected', reject_reason: 'owner_not_eligible' }]);
        expect(await countRows(db(), `select from fns.calls where arg = '7002'`)).toBe(0);
      } finally {
        await admin.query(`alter role ${q('eve_renamed')} rename to ${q('eve')}`);
      }
    });
  });
});
