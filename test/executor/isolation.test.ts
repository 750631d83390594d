import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, useTestDatabase, type TestDatabase } from '../support/database.ts';
import { finishedRuns, runNow, startExecutor } from '../support/executor.ts';
import { createOwner, setLocalRole, transaction } from '../support/jobs.ts';

/**
 * Two owners, one executor with one connection: whatever the first owner's run leaves in its
 * session or transaction must be gone when the next owner's run starts. Each case plants state in
 * one owner's job and probes for it in the other owner's job that the executor runs right after
 * it (both due before the executor starts, the planter first: claims go by due time, then id).
 * The prober records what it found in its own table; the assertions read that table, so a leak is
 * proved by its effect, not by looking at the executor's internals.
 */
type Nick = 'bob' | 'mallory';

interface Case {
  /** The attack and the defence expected of the executor. */
  title: string;
  /** Whose job runs first and leaves state behind; the other owner's job probes for it. */
  planter: Nick;
  /** PL/pgSQL body (between begin and end) of the planter's job function. */
  plant: string;
  /** PL/pgSQL body of the prober's job function; it calls <prober>.saw(what, value) for what it finds. */
  probe: string;
  /** Checks what the prober saw (and anything else, as admin). */
  check(seen: Readonly<Record<string, string | null>>, db: TestDatabase): Promise<void>;
}

/** A block that records `expression` under `what`, or the error it raised (sqlstate: message). */
function attempt(prober: Nick, what: string, expression: string): string {
  return `begin
            perform ${prober}.saw(${quote(what)}, (${expression})::text);
          exception when others then
            perform ${prober}.saw(${quote(what)}, 'error ' || sqlstate || ': ' || sqlerrm);
          end;`;
}

function quote(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

const other = (nick: Nick): Nick => (nick === 'bob' ? 'mallory' : 'bob');
const SECRET = 'bob-secret-7f3a';

const cases: Case[] = [
  {
    title: 'a large object descriptor left open by bob: mallory cannot read or write bob\'s object through descriptor 0',
    planter: 'bob',
    // Opened read-write: the attack is reading the secret and overwriting it.
    plant: `insert into bob.objects values (lo_from_bytea(0, convert_to(${quote(SECRET)}, 'UTF8')));
            perform lo_open((select max(id) from bob.objects), x'60000'::integer);`,
    probe: `${attempt('mallory', 'read fd 0', `encode(loread(0, 100), 'escape')`)}
            ${attempt('mallory', 'write fd 0', `lo_lseek(0, 0, 0) + lowrite(0, convert_to('pwned', 'UTF8'))`)}`,
    async check(seen, db) {
      expect(JSON.stringify(seen)).not.toContain(SECRET);
      expect(seen['read fd 0']).toMatch(/^error /);
      expect(seen['write fd 0']).toMatch(/^error /);
      const { rows } = await db.admin.query<{ content: string }>(
        `select convert_from(lo_get(id), 'UTF8') as content from bob.objects`,
      );
      expect(rows).toEqual([{ content: SECRET }]);
    },
  },
  {
    title: 'SET CONSTRAINTS ALL IMMEDIATE by mallory: bob\'s job relying on an INITIALLY DEFERRED foreign key still succeeds',
    planter: 'mallory',
    plant: `set constraints all immediate;`,
    // A correct job: the child first, its parent later in the same transaction.
    probe: `insert into bob.children values (1, 1);
            insert into bob.parents values (1);
            perform bob.saw('family', 'inserted');`,
    async check(seen, db) {
      expect(seen.family).toBe('inserted');
      expect((await db.admin.query('select id from bob.parents')).rows).toEqual([{ id: 1 }]);
    },
  },
  {
    title: 'setseed(0.5) by mallory: bob\'s random() does not follow the sequence mallory chose',
    planter: 'mallory',
    plant: `perform setseed(0.5);`,
    probe: `perform bob.saw('random ' || i, random()::text) from generate_series(1, 5) i;`,
    async check(seen, db) {
      const bobs = [1, 2, 3, 4, 5].map((i) => seen[`random ${i}`]);
      expect(bobs.every((value) => value !== null && value !== undefined)).toBe(true);
      // The sequence setseed(0.5) produces, from a session of the test's own.
      const seeded = await connect(db.adminUrl);
      try {
        await seeded.query('select setseed(0.5)');
        const { rows } = await seeded.query<{ value: string }>('select random()::text as value from generate_series(1, 5)');
        expect(bobs).not.toEqual(rows.map((row) => row.value));
      } finally {
        await seeded.end();
      }
    },
  },
  {
    title: 'a session-level custom setting (set_config(..., false)) by bob: mallory reads nothing',
    planter: 'bob',
    plant: `perform set_config('x.leak', ${quote(SECRET)}, false);`,
    probe: attempt('mallory', 'x.leak', `current_setting('x.leak', true)`),
    async check(seen) {
      expect(seen['x.leak'] ?? '').toBe('');
    },
  },
  {
    title: 'a temp table created by bob: mallory finds no temp table and no rows of it',
    planter: 'bob',
    plant: `create temp table leak as select ${quote(SECRET)}::text as secret;`,
    probe: `${attempt('mallory', 'temp tables', `(select count(*) from pg_class where relnamespace = pg_my_temp_schema())`)}
            ${attempt('mallory', 'temp rows', `(select string_agg(secret, ',') from pg_temp.leak)`)}`,
    async check(seen) {
      expect(JSON.stringify(seen)).not.toContain(SECRET);
      expect(seen['temp tables']).toBe('0');
    },
  },
  {
    title: 'a WITH HOLD cursor declared by bob: mallory can neither fetch from it nor see its query',
    planter: 'bob',
    plant: `execute 'declare leak cursor with hold for select secret from bob.secrets';`,
    probe: `${attempt('mallory', 'cursors', `(select string_agg(name || ': ' || statement, '; ') from pg_cursors)`)}
            declare
              c refcursor := 'leak';
              v text;
            begin
              fetch c into v;
              perform mallory.saw('fetched', v);
            exception when others then
              perform mallory.saw('fetched', 'error ' || sqlstate || ': ' || sqlerrm);
            end;`,
    async check(seen) {
      expect(JSON.stringify(seen)).not.toContain(SECRET);
      expect(seen.cursors).toBeNull();
      expect(seen.fetched).toMatch(/^error /);
    },
  },
  {
    title: 'a prepared statement left by bob: mallory sees no prepared statement and not its text',
    planter: 'bob',
    plant: `execute ${quote(`prepare leak as select '${SECRET}'::text`)};`,
    probe: attempt('mallory', 'prepared', `(select string_agg(name || ': ' || statement, '; ') from pg_prepared_statements)`),
    async check(seen) {
      expect(JSON.stringify(seen)).not.toContain(SECRET);
      expect(seen.prepared).toBeNull();
    },
  },
  {
    title: 'LISTEN by bob: mallory\'s session listens on nothing',
    planter: 'bob',
    plant: `listen bob_payroll_channel;`,
    probe: attempt('mallory', 'listening', `(select string_agg(c, ',') from pg_listening_channels() c)`),
    async check(seen) {
      expect(seen.listening).toBeNull();
    },
  },
  {
    title: 'a session advisory lock taken by bob: mallory does not hold it, and anyone can take it afterwards',
    planter: 'bob',
    plant: `perform pg_advisory_lock(424242);`,
    // Advisory locks are re-entrant within a session: "held before trying" is what tells a leak.
    probe: `${attempt('mallory', 'held before', `(select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid())`)}
            ${attempt('mallory', 'try lock', `pg_try_advisory_lock(424242)`)}`,
    async check(seen, db) {
      expect(seen['held before']).toBe('0');
      expect(seen['try lock']).toBe('true');
      const taker = await connect(db.adminUrl);
      try {
        expect((await taker.query('select pg_try_advisory_lock(424242) as got')).rows[0].got).toBe(true);
      } finally {
        await taker.end();
      }
    },
  },
  {
    title: 'nextval on bob\'s sequence: mallory\'s lastval() yields neither bob\'s value nor the name of his sequence',
    planter: 'bob',
    plant: `perform nextval('bob.payroll_ids');`,
    probe: attempt('mallory', 'lastval', `lastval()`),
    async check(seen) {
      // With DISCARD SEQUENCES after each run: "lastval is not yet defined in this session"
      // (55000). Without it, she would get bob's value, or an error naming a sequence.
      expect(seen.lastval ?? '').not.toContain('7777777');
      expect(seen.lastval ?? '').not.toContain('payroll_ids');
    },
  },
];

describe('state does not cross owners between runs on the same executor connection', () => {
  const db = useTestDatabase();
  const clients = {} as Record<Nick, pg.Client>;
  let executor: Executor | undefined;

  beforeAll(async () => {
    const { admin, role } = db();
    for (const nick of ['bob', 'mallory'] as const) {
      await createOwner(db(), nick, `
        create table ${nick}.seen (at bigint generated always as identity, what text, value text);
        create function ${nick}.saw(what text, value text) returns void security definer set search_path = pg_catalog, pg_temp
          language sql as $$ insert into ${nick}.seen (what, value) values (what, value) $$`);
      await admin.query(`grant temporary on database "${db().name}" to "${role(nick)}"`);
      await db().addUser(`${nick}_user`, { scheduler: true, memberOf: [nick] });
      clients[nick] = await db().login(`${nick}_user`);
    }
    await transaction(db(), `${setLocalRole(db(), 'bob')};
      create table bob.secrets (secret text);
      insert into bob.secrets values (${quote(SECRET)});
      create table bob.objects (id oid);
      create sequence bob.payroll_ids start 7777777;
      create table bob.parents (id int primary key);
      create table bob.children (id int, parent int references bob.parents deferrable initially deferred)`);
  });

  afterEach(async () => {
    await executor?.stop();
    executor = undefined;
    for (const nick of ['bob', 'mallory'] as const) await db().admin.query(`truncate ${nick}.seen`);
  });

  afterAll(async () => {
    await executor?.stop();
  });

  test.each(cases.map((c, i) => ({ ...c, i })))('$title', async ({ i, planter, plant, probe, check }) => {
    const prober = other(planter);
    await transaction(db(), `${setLocalRole(db(), planter)};
      create function ${planter}.plant_${i}() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $body$ begin ${plant} end $body$`);
    await transaction(db(), `${setLocalRole(db(), prober)};
      create function ${prober}.probe_${i}() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $body$ begin ${probe} end $body$`);
    // Both due before the executor starts, the planter's first: one connection (concurrency 1)
    // runs them one after the other, in this order.
    const planted = await runNow(clients[planter], `${planter}.plant_${i}()`);
    const probed = await runNow(clients[prober], `${prober}.probe_${i}()`);
    executor = await startExecutor(db(), { concurrency: 1, listen: false });
    const [plantRun] = await finishedRuns(db(), planted);
    const [probeRun] = await finishedRuns(db(), probed);
    expect(plantRun?.status).toBe('succeeded');
    expect(probeRun).toMatchObject({ status: 'succeeded', error_message: null });
    // The order the attack needs: the planter's run claimed and started first.
    expect(BigInt(plantRun?.id ?? 0)).toBeLessThan(BigInt(probeRun?.id ?? 0));

    const { rows } = await db().admin.query<{ what: string; value: string | null }>(`select what, value from ${prober}.seen order by at`);
    await check(Object.fromEntries(rows.map((row) => [row.what, row.value])), db());
  });
});
