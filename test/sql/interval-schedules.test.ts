import type pg from 'pg';
import { beforeAll, describe, expect, test } from 'vitest';
import { useTestDatabase } from '../support/database.ts';
import { createBilling, failureOf, scheduleJob } from '../support/jobs.ts';

/**
 * Interval schedules (`every N seconds|minutes|hours|days`, sql/routines/code/cron.sql): parsed
 * and refused as scheduling and the preview see them, occurrences anchor + k·period whatever the
 * zone, the anchor kept or moved by update and resume, and catching up in constant time.
 */
describe('interval schedules', () => {
  const db = useTestDatabase();
  let alice: pg.Client; // a scheduler, member of billing
  let dave: pg.Client; // no scheduler: may only preview

  beforeAll(async () => {
    await createBilling(db());
    await db().addUser('alice', { scheduler: true, memberOf: ['billing'] });
    await db().addUser('dave');
    alice = await db().login('alice');
    dave = await db().login('dave');
  });

  const SECOND = 1000;
  const DAY = 86_400 * SECOND;

  /** Runs `fn` in a transaction of `client` and returns its result with the transaction's now(). */
  async function inTransaction<T>(client: pg.Client, fn: () => Promise<T>): Promise<{ now: Date; result: T }> {
    await client.query('begin');
    try {
      const now = (await client.query<{ now: Date }>('select now() as now')).rows[0]?.now as Date;
      const result = await fn();
      await client.query('commit');
      return { now, result };
    } catch (error) {
      await client.query('rollback');
      throw error;
    }
  }

  /** now() truncated to the whole second: the anchor of a schedule set in that transaction. */
  const wholeSecond = (at: Date): number => Math.floor(at.getTime() / SECOND) * SECOND;

  const jobOf = async (id: string): Promise<{ schedule: string | null; schedule_anchor: Date | null; next_run_at: Date | null }> =>
    (await db().admin.query('select schedule, schedule_anchor, next_run_at from data.jobs where id = $1', [id])).rows[0];

  describe('the grammar', () => {
    test.each<[string, number]>([
      ['every 90 seconds', 90],
      ['every 5 minutes', 300],
      ['every 1 minute', 60],
      ['every minute', 60],
      ['every second', 1],
      ['every 1 seconds', 1],
      ['Every 12 HOURS', 43_200],
      ['every day', 86_400],
      ['  every   2  days ', 172_800],
      ['every 366 days', 366 * 86_400],
      ['every 8784 hours', 366 * 86_400],
      ['every 31622400 seconds', 366 * 86_400],
    ])('%s: a period of %i seconds', async (schedule, seconds) => {
      const { rows } = await db().admin.query<{ period: number; cron: boolean }>(
        'select (s).period_seconds as period, (s).cron is null as cron from code.parse_schedule($1) s',
        [schedule],
      );
      expect(rows[0]).toEqual({ period: seconds, cron: true });
    });

    test('a cron expression is still a cron expression', async () => {
      const { rows } = await db().admin.query(
        `select (s).period_seconds as period, (s).cron = code.parse_cron('*/5 * * * *') as same from code.parse_schedule('*/5 * * * *') s`,
      );
      expect(rows[0]).toEqual({ period: null, same: true });
    });

    describe('refusals: HC206 from scheduling and from the preview alike, leaving nothing behind', () => {
      const state = async (): Promise<unknown> =>
        (await db().admin.query(`select (select count(*) from data.jobs)::int as jobs, (select count(*) from data.job_runs)::int as runs,
                                        (select count(*) from data.time_zones)::int as zones`)).rows[0];

      test.each<[string, RegExp]>([
        ['every 0 minutes', /: the number must be at least 1$/],
        ['every 00 seconds', /: the number must be at least 1$/],
        ['every -5 minutes', /: '-5' is not a whole number$/],
        ['every 1.5 hours', /: '1.5' is not a whole number$/],
        ['every five minutes', /: 'five' is not a whole number$/],
        ['every 2 weeks', /: 'weeks' is not a unit: use seconds, minutes, hours or days$/],
        ['every 10 ms', /: 'ms' is not a unit: use seconds, minutes, hours or days$/],
        ['every 5 secondss', /: 'secondss' is not a unit/],
        ['every 5', /: the unit is missing: seconds, minutes, hours or days$/],
        ['every minutes', /: the number is missing: every N minutes, or every minute$/],
        ['every 367 days', /: the period is longer than 366 days$/],
        ['every 8785 hours', /: the period is longer than 366 days$/],
        ['every 99999999999999999999 seconds', /: the period is longer than 366 days$/],
        ['every', /: it is not every N seconds, minutes, hours or days$/],
        ['everyday', /: it is not every N seconds, minutes, hours or days$/],
        ['every 5 minutes from now', /: it is not every N seconds, minutes, hours or days$/],
        ['every\t5 minutes', /: it is not every N seconds, minutes, hours or days$/],
      ])('%s', async (schedule, message) => {
        const before = await state();
        const scheduling = await failureOf(alice, `select api.schedule_job('billing.close_day(date)', '["2026-01-01"]', schedule => $1)`, [schedule]);
        expect({ code: scheduling.code, message: scheduling.message }).toEqual({
          code: 'HC206',
          message: expect.stringMatching(new RegExp(`^invalid interval schedule '${schedule.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'${message.source}`)),
        });
        expect(scheduling.hint).toMatch(/^Write every N seconds, minutes, hours or days/);
        const preview = await failureOf(dave, 'select * from api.preview_schedule($1)', [schedule]);
        expect({ code: preview.code, message: preview.message, hint: preview.hint }).toEqual({
          code: scheduling.code, message: scheduling.message, hint: scheduling.hint,
        });
        expect(await state()).toEqual(before);
      });

      test('an update to a bad interval changes nothing', async () => {
        const job = await scheduleJob(alice, 'billing.close_day(date)', ['2026-01-01'], { schedule: 'every 5 minutes' });
        const before = await jobOf(job.id);
        const failure = await failureOf(alice, 'select api.update_job($1, schedule => $2)', [job.id, 'every 0 minutes']);
        expect(failure.code).toBe('HC206');
        expect(await jobOf(job.id)).toEqual(before);
        await alice.query('select api.unschedule_job($1)', [job.id]);
      });
    });
  });

  describe('occurrences', () => {
    const next = async (schedule: string, zone: string, anchor: string, after: string): Promise<Date> =>
      (await db().admin.query<{ at: Date }>('select code.next_occurrence(code.parse_schedule($1), $2, $3, $4) as at', [schedule, zone, anchor, after]))
        .rows[0]?.at as Date;

    test('anchor + k·period, strictly after, never the anchor itself', async () => {
      const anchor = '2026-06-01T10:00:00Z';
      expect(await next('every 90 seconds', 'UTC', anchor, '2026-05-01T00:00:00Z')).toEqual(new Date('2026-06-01T10:01:30Z'));
      expect(await next('every 90 seconds', 'UTC', anchor, anchor)).toEqual(new Date('2026-06-01T10:01:30Z'));
      expect(await next('every 90 seconds', 'UTC', anchor, '2026-06-01T10:01:29.999999Z')).toEqual(new Date('2026-06-01T10:01:30Z'));
      expect(await next('every 90 seconds', 'UTC', anchor, '2026-06-01T10:01:30Z')).toEqual(new Date('2026-06-01T10:03:00Z'));
      // A year on: 350,400 periods of 90 s later, found directly.
      expect(await next('every 90 seconds', 'UTC', anchor, '2027-06-01T10:00:00Z')).toEqual(new Date('2027-06-01T10:01:30Z'));
    });

    test('a fixed rate: every 1 day is 24 hours apart across DST changes, in any zone', async () => {
      // New York springs forward on 8 March 2026 and falls back on 1 November.
      expect(await next('every 1 day', 'America/New_York', '2026-03-07T12:00:00Z', '2026-03-08T12:00:00Z')).toEqual(new Date('2026-03-09T12:00:00Z'));
      expect(await next('every day', 'America/New_York', '2026-10-31T12:00:00Z', '2026-11-01T12:00:00Z')).toEqual(new Date('2026-11-02T12:00:00Z'));
      expect(await next('every 1 day', 'Australia/Lord_Howe', '2026-10-03T12:00:00Z', '2026-10-03T12:00:00Z')).toEqual(new Date('2026-10-04T12:00:00Z'));
      // The same whatever the session's zone.
      await db().admin.query('begin');
      try {
        await db().admin.query(`set local time zone 'Europe/Amsterdam'`);
        expect(await next('every 1 day', 'UTC', '2026-03-28T12:00:00Z', '2026-03-29T12:00:00Z')).toEqual(new Date('2026-03-30T12:00:00Z'));
      } finally {
        await db().admin.query('rollback');
      }
    });

    test('scheduling anchors the job at the whole second: the first run is one period later', async () => {
      const { now, result: job } = await inTransaction(alice, () =>
        scheduleJob(alice, 'billing.close_day(date)', ['2026-01-01'], { schedule: 'every 90 seconds', timeZone: 'Asia/Kolkata' }));
      expect(job.schedule).toBe('every 90 seconds');
      expect(job.next_run_at?.getTime()).toBe(wholeSecond(now) + 90 * SECOND);
      expect((await jobOf(job.id)).schedule_anchor?.getTime()).toBe(wholeSecond(now));
      await alice.query('select api.unschedule_job($1)', [job.id]);
    });

    test('the preview counts from now, as scheduling now would, with local times and nothing shifted', async () => {
      const { now, result } = await inTransaction(dave, async () =>
        (await dave.query<{ occurs_at: Date; local_time: string; shifted: boolean }>(
          `select * from api.preview_schedule('every 5 minutes', 'Asia/Kolkata', 4)`)).rows);
      expect(result.map((r) => r.occurs_at.getTime())).toEqual([1, 2, 3, 4].map((k) => wholeSecond(now) + k * 300 * SECOND));
      expect(result.every((r) => r.local_time.endsWith('+05:30') && !r.shifted)).toBe(true);
    });

    test('updates and resuming keep the anchor (the phase); a different schedule moves it to now', async () => {
      const job = await scheduleJob(alice, 'billing.close_day(date)', ['2026-01-01'], { schedule: 'every 1 hour' });
      // An anchor long ago, 7 seconds past a whole hour: every occurrence is too.
      const anchor = new Date('2026-01-01T00:00:07Z');
      await db().admin.query('update data.jobs set schedule_anchor = $2 where id = $1', [job.id, anchor]);
      const onTheGrid = (at: Date | null): boolean => at !== null && (at.getTime() - anchor.getTime()) % 3_600_000 === 0;

      const renamed = await inTransaction(alice, () => alice.query('select api.update_job($1, name => $2, schedule => $3)', [job.id, 'hourly', 'every 1 hour']));
      let state = await jobOf(job.id);
      expect(state.schedule_anchor).toEqual(anchor);
      expect(onTheGrid(state.next_run_at)).toBe(true);
      expect(state.next_run_at!.getTime() - renamed.now.getTime()).toBeGreaterThan(0);
      expect(state.next_run_at!.getTime() - renamed.now.getTime()).toBeLessThanOrEqual(3_600_000);

      await alice.query('select api.pause_job($1)', [job.id]);
      const resumed = await inTransaction(alice, () => alice.query('select api.resume_job($1)', [job.id]));
      state = await jobOf(job.id);
      expect(state.schedule_anchor).toEqual(anchor);
      expect(onTheGrid(state.next_run_at)).toBe(true);
      expect(state.next_run_at!.getTime() - resumed.now.getTime()).toBeGreaterThan(0);
      expect(state.next_run_at!.getTime() - resumed.now.getTime()).toBeLessThanOrEqual(3_600_000);

      const changed = await inTransaction(alice, () => alice.query('select api.update_job($1, schedule => $2)', [job.id, 'every 2 hours']));
      state = await jobOf(job.id);
      expect(state.schedule_anchor?.getTime()).toBe(wholeSecond(changed.now));
      expect(state.next_run_at?.getTime()).toBe(wholeSecond(changed.now) + 7_200_000);

      await alice.query('select api.update_job($1, run_at => $2)', [job.id, '2030-01-01T00:00:00Z']);
      expect(await jobOf(job.id)).toEqual({ schedule: null, schedule_anchor: null, next_run_at: new Date('2030-01-01T00:00:00Z') });
      const again = await inTransaction(alice, () => alice.query('select api.update_job($1, schedule => $2)', [job.id, 'every 10 seconds']));
      expect(await jobOf(job.id)).toEqual({
        schedule: 'every 10 seconds',
        schedule_anchor: new Date(wholeSecond(again.now)),
        next_run_at: new Date(wholeSecond(again.now) + 10 * SECOND),
      });
      await alice.query('select api.unschedule_job($1)', [job.id]);
    });
  });

  /**
   * Catching up is arithmetic: whatever the gap, code.schedule_catch_up calls code.next_occurrence twice
   * and never searches (code.cron_next is not called at all).
   */
  describe('catching up costs the same after a minute or a year', () => {
    interface CatchUp {
      newest: Date;
      following: Date;
      oldest_kept: Date;
      occurrences: number;
      searches: number;
    }

    const NOW = new Date('2026-11-25T12:00:45Z');

    async function catchUp(schedule: string, anchor: Date, due: Date, keep: number): Promise<CatchUp> {
      const { admin } = db();
      await admin.query('begin');
      try {
        await admin.query(`set local track_functions = 'all'`);
        // The backend's pending counts may hold calls of earlier transactions: only the difference counts.
        const calls = (fn: string): string => `coalesce(pg_stat_get_xact_function_calls('${fn}'::regprocedure), 0)::int`;
        const occurrences = calls('code.next_occurrence(code.schedule_spec, text, timestamptz, timestamptz)');
        const searches = calls('code.cron_next(code.cron_spec, text, timestamptz)');
        const before = (await admin.query<{ o: number; s: number }>(`select ${occurrences} as o, ${searches} as s`)).rows[0]!;
        const { rows } = await admin.query<CatchUp>(
          `with c as materialized (select * from code.schedule_catch_up(code.parse_schedule($1), 'Europe/Amsterdam', $2, $3, $4, $5))
           select c.newest, c.following, c.oldest_kept, ${occurrences} - $6 as occurrences, ${searches} - $7 as searches from c`,
          [schedule, anchor, due, NOW, keep, before.o, before.s],
        );
        return rows[0] as CatchUp;
      } finally {
        await admin.query('rollback');
      }
    }

    test.each<[string, string, number, number]>([
      ['every 1 second', 'a minute', 1, 60],
      ['every 1 second', 'a year', 1, 365 * 86_400],
      ['every 90 seconds', 'a year', 90, 365 * 86_400],
      ['every 7 hours', 'a year', 7 * 3600, 365 * 86_400],
    ])('%s, behind by %s: the newest occurrence and the next, in two steps', async (schedule, _behind, period, behindSeconds) => {
      // The anchor is a whole number of periods before the due occurrence, which is `behindSeconds` old.
      const due = new Date(NOW.getTime() - behindSeconds * SECOND);
      const anchor = new Date(due.getTime() - 3 * period * SECOND);
      const passed = Math.floor((NOW.getTime() - anchor.getTime()) / (period * SECOND));
      const newest = new Date(anchor.getTime() + passed * period * SECOND);
      const result = await catchUp(schedule, anchor, due, 1);
      expect(result).toEqual({ newest, following: new Date(newest.getTime() + period * SECOND), oldest_kept: newest, occurrences: 2, searches: 0 });
    });

    test("not behind: the due occurrence is the newest, and one step finds the next", async () => {
      const due = new Date(NOW.getTime() - 30 * SECOND);
      const result = await catchUp('every 1 minute', new Date(due.getTime() - 60 * SECOND), due, 5);
      expect(result).toEqual({ newest: due, following: new Date(due.getTime() + 60 * SECOND), oldest_kept: due, occurrences: 1, searches: 0 });
    });

    test("missed: 'all' keeps the last max_missed occurrences up to the newest, or all of them from the due one", async () => {
      const due = new Date(NOW.getTime() - 365 * DAY);
      const kept = await catchUp('every 1 second', due, due, 100);
      expect(kept).toMatchObject({ newest: NOW, oldest_kept: new Date(NOW.getTime() - 99 * SECOND), occurrences: 2, searches: 0 });
      const few = await catchUp('every 1 minute', new Date(NOW.getTime() - 150 * SECOND), new Date(NOW.getTime() - 90 * SECOND), 100);
      expect(few).toMatchObject({ newest: new Date(NOW.getTime() - 30 * SECOND), oldest_kept: new Date(NOW.getTime() - 90 * SECOND) });
    });

    /** code.plan_claim for the job, a year behind, in a transaction that reads the same now(). */
    async function planAYearBehind(options: object): Promise<{ now: Date; plan: Record<string, unknown>; anchor: Date }> {
      const job = await scheduleJob(alice, 'billing.close_day(date)', ['2026-01-01'], { schedule: 'every 90 seconds', options });
      await db().admin.query(
        `update data.jobs set schedule_anchor = schedule_anchor - interval '365 days', next_run_at = next_run_at - interval '365 days' where id = $1`,
        [job.id]);
      const { admin } = db();
      await admin.query('begin');
      try {
        const { rows } = await admin.query(
          `select now(), j.schedule_anchor as anchor, to_jsonb(p) as plan from data.jobs j, code.plan_claim(j, false) p where j.id = $1`, [job.id]);
        return rows[0];
      } finally {
        await admin.query('rollback');
        await alice.query('select api.unschedule_job($1)', [job.id]);
      }
    }

    test("the claim a year behind, missed 'latest': the newest occurrence runs, one gap passed over", async () => {
      const { now, plan, anchor } = await planAYearBehind({ missed: 'latest' });
      const period = 90 * SECOND;
      const newest = anchor.getTime() + Math.floor((now.getTime() - anchor.getTime()) / period) * period;
      expect(plan).toMatchObject({ status: 'running', trigger: 'catch_up' });
      expect(new Date(plan.missed_from as string).getTime()).toBe(anchor.getTime() + period);
      expect(new Date(plan.occurrence as string).getTime()).toBe(newest);
      expect(new Date(plan.next_run_at as string).getTime()).toBe(newest + period);
    });

    test("the claim a year behind, missed 'all': the oldest of the last max_missed runs first, the next one period on", async () => {
      const { now, plan, anchor } = await planAYearBehind({ missed: 'all', max_missed: 10 });
      const period = 90 * SECOND;
      const newest = anchor.getTime() + Math.floor((now.getTime() - anchor.getTime()) / period) * period;
      expect(plan).toMatchObject({ status: 'running', trigger: 'catch_up' });
      expect(new Date(plan.missed_from as string).getTime()).toBe(anchor.getTime() + period);
      expect(new Date(plan.occurrence as string).getTime()).toBe(newest - 9 * period);
      expect(new Date(plan.next_run_at as string).getTime()).toBe(newest - 8 * period);
    });
  });
});
