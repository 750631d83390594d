import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type pg from 'pg';
import type { Executor } from '../../server/executor/executor.ts';
import { connect, useTestDatabase } from '../support/database.ts';
import { afterNextClaim, finishedRuns, runNow, startExecutor, waitFor } from '../support/executor.ts';
import { eventually } from '../support/child.ts';
import { createOwner, scheduleJob, type RunRow } from '../support/jobs.ts';

/** The columns of data.job_runs these tests read. */
type Run = Pick<RunRow, 'status' | 'attempt' | 'scheduled_for' | 'started_at' | 'finished_at' | 'missed_before' | 'trigger'>;

describe('missed runs, overlap, retries and events', () => {
  const db = useTestDatabase();
  let alice: pg.Client;
  let executor: Executor;

  beforeAll(async () => {
    await createOwner(db(), 'pol', `
      create function pol.noop() returns void security definer set search_path = pg_catalog, pg_temp language sql as $$ select $$;
      create function pol.nap(seconds float8) returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_sleep(seconds) $$;
      create function pol.fail() returns void security definer set search_path = pg_catalog, pg_temp
        language plpgsql as $$ begin raise exception 'always fails'; end $$;
      create function pol.held() returns void security definer set search_path = pg_catalog, pg_temp
        language sql as $$ select pg_advisory_xact_lock(4242) $$`);
    await db().addUser('alice', { scheduler: true, memberOf: ['pol'] });
    alice = await db().login('alice');
    executor = await startExecutor(db(), { concurrency: 2, maxRunsPerOwner: 2, batchSize: 1 });
  });

  afterAll(async () => {
    await executor?.stop();
  });

  const runsOf = async (jobId: string): Promise<Run[]> =>
    (await db().admin.query<Run>('select status, attempt, scheduled_for, started_at, finished_at, missed_before, trigger from data.job_runs where job_id = $1 order by id', [jobId]))
      .rows;

  /**
   * A cron job whose next occurrence `backdate` moves into the past (as after downtime).
   * Scheduled (as alice) and backdated in one transaction: scheduled apart, a per-second job
   * could be claimed for its first occurrence before the backdating, on a busy machine, and the
   * catch-up would then plan that occurrence again.
   */
  async function cronJob(schedule: string, options: object, backdate: string): Promise<string> {
    const admin = db().admin;
    await admin.query('begin');
    try {
      await admin.query(`set local role ${admin.escapeIdentifier(db().role('alice'))}`);
      const { rows } = await admin.query<{ id: string }>(
        `select id::text from api.schedule_job('pol.noop()', '[]', schedule => $1, options => $2::jsonb)`,
        [schedule, JSON.stringify(options)],
      );
      await admin.query('reset role');
      const id = (rows[0] as { id: string }).id;
      await admin.query(`update data.jobs set next_run_at = next_run_at - interval '${backdate}' where id = $1`, [id]);
      await admin.query('commit');
      return id;
    } catch (error) {
      await admin.query('rollback');
      throw error;
    }
  }

  async function oldestMissed(id: string): Promise<number> {
    return (await db().admin.query<{ at: Date }>('select created_at as at from data.jobs where id = $1', [id])).rows[0]!.at.getTime();
  }

  test("missed 'latest': one run, for the newest missed occurrence", async () => {
    const id = await cronJob('* * * * * *', { missed: 'latest' }, '20 seconds');
    const scheduledAt = await oldestMissed(id); // the occurrences missed go back 20 s before this
    // The first run itself must have finished: on a busy machine the next second's occurrence may
    // finish first (recorded skipped while the first still runs).
    await waitFor(db(), `select (select status from data.job_runs where job_id = $1 and status <> 'missed' order by id limit 1) <> 'running' as done`, [id]);
    await alice.query('select api.pause_job($1)', [id]);
    const [missed, first] = await runsOf(id);
    expect(first?.status).toBe('succeeded');
    expect(first!.scheduled_for.getTime()).toBeGreaterThanOrEqual(scheduledAt - 1000); // not one of the older ones
    // The occurrences passed over are accounted for: one `missed` row from the first of them up
    // to the one that ran.
    expect(missed).toMatchObject({ status: 'missed', attempt: 1, started_at: null, trigger: null });
    expect(first?.trigger).toBe('catch_up');
    expect(missed!.scheduled_for.getTime()).toBeLessThanOrEqual(scheduledAt - 19_000);
    expect(missed!.missed_before?.getTime()).toBe(first!.scheduled_for.getTime());
  });

  test("missed 'all' with max_missed 3: the newest three missed occurrences each run, oldest first", async () => {
    const id = await cronJob('* * * * * *', { missed: 'all', max_missed: 3 }, '30 seconds');
    const scheduledAt = await oldestMissed(id);
    await waitFor(db(), `select count(*) >= 3 as done from data.job_runs where job_id = $1 and status not in ('running', 'missed')`, [id]);
    await alice.query('select api.pause_job($1)', [id]);
    const runs = (await runsOf(id)).filter((run) => run.status !== 'missed').slice(0, 3);
    const times = runs.map((run) => run.scheduled_for.getTime());
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(times[1]! - times[0]!).toBe(1000);
    expect(times[2]! - times[1]!).toBe(1000);
    expect(times[0]!).toBeGreaterThanOrEqual(scheduledAt - 5000); // the older ones (up to 30 s back) were passed over…
    expect(runs[0]?.trigger).toBe('catch_up');
    const missed = (await runsOf(id)).filter((run) => run.status === 'missed');
    expect(missed).toHaveLength(1); // …and recorded, up to the first that ran
    expect(missed[0]!.scheduled_for.getTime()).toBeLessThanOrEqual(scheduledAt - 29_000);
    expect(missed[0]!.missed_before?.getTime()).toBe(times[0]);
  });

  test("missed 'none': an occurrence missed by more than a minute is skipped, not run", async () => {
    const id = await cronJob('0 0 1 1 *', { missed: 'none' }, '0 seconds');
    await db().admin.query(`update data.jobs set next_run_at = now() - interval '2 minutes' where id = $1`, [id]);
    const [run] = await finishedRuns(db(), id, 1);
    expect(run?.status).toBe('skipped');
    expect(run?.started_at).toBeNull();
    expect((await runsOf(id)).map((r) => r.status)).toEqual(['skipped']); // nothing passed over: no missed row
  });

  // The executor advances schedules with the SQL cron (DESIGN "Cron in SQL"): an Amsterdam job
  // backdated to before the latest spring change runs every missed day once, oldest first, and
  // the runs show the documented DST behaviour at both changes.
  test("DST: '30 2 * * *' in Europe/Amsterdam runs once a day across both changes, as documented", { timeout: 60_000 }, async () => {
    const year = latestYearWithBothChangesPast(new Date());
    const spring = lastSundayUtc(year, 2);
    const autumn = lastSundayUtc(year, 9);
    const { id } = await scheduleJob(alice, 'pol.noop()', [], {
      schedule: '30 2 * * *',
      timeZone: 'Europe/Amsterdam',
      options: { missed: 'all', max_missed: 1000, overlap: 'queue' },
    });
    // 02:30 CET two days before the spring change: at most ~600 daily occurrences up to now.
    await db().admin.query('update data.jobs set next_run_at = $2 where id = $1', [id, at(spring, -2, 1, 30)]);
    await waitFor(db(), `select j.next_run_at > now() and not exists (select from data.job_runs r where r.job_id = j.id and r.status = 'running') as done
                           from data.jobs j where j.id = $1`, [id], 50_000);
    await alice.query('select api.pause_job($1)', [id]);
    const runs = await runsOf(id);
    expect(runs.filter((run) => run.status !== 'succeeded')).toEqual([]);
    const times = runs.map((run) => run.scheduled_for.toISOString());
    // Oldest first, one run per local day, no day left out.
    expect(times).toEqual([...times].sort());
    const days = runs.map((run) => amsterdamDate(run.scheduled_for));
    expect(new Set(days).size).toBe(days.length);
    expect(days[0]).toBe(amsterdamDate(at(spring, -2, 1, 30)));
    const dayNumbers = days.map((day) => Date.parse(`${day}T00:00:00Z`) / 86_400_000);
    expect(dayNumbers.every((n, i) => i === 0 || n - (dayNumbers[i - 1] as number) === 1)).toBe(true);
    // Spring forward: 02:30 does not exist and the run is at 03:30 CEST (01:30Z), then 02:30 CEST.
    expect(times).toEqual(expect.arrayContaining([at(spring, -1, 1, 30), at(spring, 0, 1, 30), at(spring, 1, 0, 30)].map((d) => d.toISOString())));
    // Fall back: 02:30 happens twice and runs once, at the first (00:30Z), then 02:30 CET.
    expect(times).toEqual(expect.arrayContaining([at(autumn, -1, 0, 30), at(autumn, 0, 0, 30), at(autumn, 1, 1, 30)].map((d) => d.toISOString())));
    expect(times).not.toContain(at(autumn, 0, 1, 30).toISOString());
  });

  test("overlap 'skip': occurrences due while a run is running are recorded skipped", async () => {
    const { id } = await scheduleJob(alice, 'pol.nap(float8)', [2.5], { schedule: '* * * * * *' });
    await waitFor(db(), `select count(*) filter (where status = 'skipped') >= 1 and count(*) filter (where status = 'succeeded') >= 1 as done
                           from data.job_runs where job_id = $1`, [id], 30_000);
    await alice.query('select api.pause_job($1)', [id]);
    const runs = await runsOf(id);
    const succeeded = runs.filter((run) => run.status === 'succeeded');
    for (const [a, b] of succeeded.slice(1).map((run, i) => [succeeded[i] as Run, run] as const)) {
      expect(b.started_at!.getTime()).toBeGreaterThanOrEqual(a.finished_at!.getTime()); // never two at once
    }
  });

  test("overlap 'allow': two runs of one job may run at the same time", async () => {
    const { id } = await scheduleJob(alice, 'pol.nap(float8)', [1.5], { schedule: '* * * * * *', options: { overlap: 'allow' } });
    await finishedRuns(db(), id, 3);
    await alice.query('select api.pause_job($1)', [id]);
    const runs = (await runsOf(id)).filter((run) => run.status === 'succeeded');
    const overlapping = runs.some((a, i) => runs.slice(i + 1).some((b) => b.started_at! < a.finished_at!));
    expect(overlapping).toBe(true);
    expect(runs.every((run) => run.status !== 'skipped')).toBe(true);
  });

  test("overlap 'queue': a due occurrence waits for the running one, nothing is skipped, runs never overlap", async () => {
    const { id } = await scheduleJob(alice, 'pol.nap(float8)', [1.2], { schedule: '* * * * * *', options: { overlap: 'queue' } });
    await finishedRuns(db(), id, 3);
    await alice.query('select api.pause_job($1)', [id]);
    await waitFor(db(), `select count(*) = 0 as done from data.job_runs where job_id = $1 and status = 'running'`, [id]);
    const runs = await runsOf(id);
    expect(runs.filter((run) => run.status === 'skipped')).toEqual([]);
    const done = runs.filter((run) => run.status === 'succeeded');
    for (const [a, b] of done.slice(1).map((run, i) => [done[i] as Run, run] as const)) {
      expect(b.started_at!.getTime()).toBeGreaterThanOrEqual(a.finished_at!.getTime());
    }
  });

  test('retries: a failing job is tried again with exponential backoff, then gives up', async () => {
    const id = await runNow(alice, 'pol.fail()', [], { retries: 2, retry_delay_seconds: 0.2 });
    const runs = (await finishedRuns(db(), id, 3)) as unknown as Run[];
    // It gave up: no further attempt is queued (a run's record and the queueing of its retry are
    // one transaction, so this is final, not a race).
    expect((await db().admin.query('select retry_at from data.jobs where id = $1', [id])).rows).toEqual([{ retry_at: null }]);
    const all = await runsOf(id);
    expect(all.map((run) => [run.status, run.attempt, run.trigger])).toEqual([
      ['failed', 1, 'run_now'],
      ['failed', 2, 'retry'],
      ['failed', 3, 'retry'],
    ]);
    expect(new Set(all.map((run) => run.scheduled_for.getTime())).size).toBe(1); // the same occurrence
    const gap1 = all[1]!.started_at!.getTime() - all[0]!.finished_at!.getTime();
    const gap2 = all[2]!.started_at!.getTime() - all[1]!.finished_at!.getTime();
    expect(gap1).toBeGreaterThanOrEqual(190); // 0.2 s
    expect(gap2).toBeGreaterThanOrEqual(390); // 0.4 s: doubled
    expect(runs).toHaveLength(3);
  });

  // A lost run is retried even when its job does not allow overlapping runs: the retry waits
  // for the running run instead of being recorded skipped.
  test("overlap 'skip': the retry of a lost run waits for the running run, and runs", async () => {
    const holder = await connect(db().adminUrl);
    await holder.query('select pg_advisory_lock(4242)');
    const sweeper = await db().login('executor');
    try {
      const { id } = await scheduleJob(alice, 'pol.held()', [], { schedule: '* * * * * *', options: { overlap: 'skip', retry_delay_seconds: 0.001 } });
      await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'running') as done`, [id]);
      // A run of an earlier occurrence whose executor is gone, as after a crash, claimed an hour
      // ago: the sweep below (grace 50 minutes) takes it and no run the executor has just claimed.
      const { rows } = await db().admin.query<{ at: Date }>(
        `insert into data.job_runs (job_id, owner, function_owner, scheduled_for, status, executor_id, claimed_at)
         select id, owner, function_owner, date_trunc('second', now()) - interval '1 minute', 'running', 'gone', now() - interval '1 hour'
           from data.jobs where id = $1
         returning scheduled_for as at`,
        [id],
      );
      expect((await sweeper.query<{ n: number }>(`select executor.sweep_runs(3000) as n`)).rows[0]?.n).toBe(1);
      await waitFor(db(), `select retry_at <= now() as done from data.jobs where id = $1`, [id]);
      // The retry is due while the first run holds on: a claim made since then passed it over.
      await afterNextClaim(db(), alice, 'pol.noop()');
      const { rows: early } = await db().admin.query('select status from data.job_runs where job_id = $1 and attempt = 2', [id]);
      expect(early).toEqual([]);
      await holder.query('select pg_advisory_unlock(4242)');
      await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and scheduled_for = $2 and attempt = 2 and status <> 'running') as done`, [id, rows[0]!.at]);
      await alice.query('select api.pause_job($1)', [id]);
      const retries = (await runsOf(id)).filter((run) => run.scheduled_for.getTime() === rows[0]!.at.getTime());
      expect(retries.map((run) => [run.attempt, run.status, run.trigger])).toEqual([
        [1, 'lost', null], // inserted by hand above
        [2, 'succeeded', 'lost_retry'],
      ]);
    } finally {
      await sweeper.end();
      await holder.end();
    }
  });

  test('trigger, lateness_ms and missed_before through api.job_runs: the owner sees them, another user sees no row', async () => {
    const id = await cronJob('* * * * * *', { missed: 'latest' }, '10 seconds');
    await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'succeeded') as done`, [id]);
    await alice.query('select api.pause_job($1)', [id]);
    const { rows } = await alice.query<{ status: string; trigger: string | null; late: boolean | null; missed: boolean }>(
      `select status, trigger, lateness_ms >= 0 as late, missed_before is not null as missed
         from api.job_runs where job_id = $1 and status in ('missed', 'succeeded') order by id limit 2`,
      [id],
    );
    expect(rows).toEqual([
      { status: 'missed', trigger: null, late: null, missed: true },
      { status: 'succeeded', trigger: 'catch_up', late: true, missed: false },
    ]);
    await db().addUser('eve', { scheduler: true });
    const eve = await db().login('eve');
    try {
      expect((await eve.query('select trigger, lateness_ms, missed_before from api.job_runs where job_id = $1', [id])).rows).toEqual([]);
    } finally {
      await eve.end();
    }
  });

  // The executor's run and claim transactions log their events without notifying; the executor
  // announces them once they committed (an empty payload, for any number of commits).
  test('every state change of a run is logged, and announced with an empty payload after its commit', async () => {
    // Nothing else of this file's jobs is due or running: every announcement is this run's.
    await db().admin.query('update data.jobs set next_run_at = null, extra_run_at = null, retry_at = null');
    await waitFor(db(), `select not exists (select from data.job_runs where status = 'running') as done`);
    const listener = await connect(db().adminUrl);
    const payloads: string[] = [];
    listener.on('notification', (message) => {
      if (message.channel === 'hardcron_run_events') payloads.push(message.payload ?? '');
    });
    await listener.query('listen hardcron_run_events');
    // The run waits for this lock, so that its start and its end are announced apart.
    const holder = await connect(db().adminUrl);
    await holder.query('select pg_advisory_lock(4242)');
    try {
      const id = await runNow(alice, 'pol.held()');
      await waitFor(db(), `select exists (select from data.job_runs where job_id = $1 and status = 'running') as done`, [id]);
      await eventually('the claim announced', async () => (payloads.length > 0 ? true : undefined));
      const atStart = payloads.length;
      await holder.query('select pg_advisory_unlock(4242)');
      const [run] = await finishedRuns(db(), id);
      expect(run?.status).toBe('succeeded');
      await eventually('the finish announced', async () => (payloads.length > atStart ? true : undefined));
      expect(new Set(payloads)).toEqual(new Set(['']));
      const { rows } = await db().admin.query('select run_id::text, job_id::text, status from data.job_run_events where job_id = $1 order by id', [id]);
      expect(rows).toEqual([
        { run_id: run?.id, job_id: id, status: 'running' },
        { run_id: run?.id, job_id: id, status: 'succeeded' },
      ]);
    } finally {
      await holder.end();
      await listener.end();
    }
  });
});

/** Midnight UTC of the last Sunday of `month` (0-based): the EU's DST changes happen at 01:00Z that day. */
function lastSundayUtc(year: number, month: number): Date {
  const last = new Date(Date.UTC(year, month + 1, 0));
  return new Date(Date.UTC(year, month, last.getUTCDate() - last.getUTCDay()));
}

/** The newest year whose autumn change lies at least two days before `now`. */
function latestYearWithBothChangesPast(now: Date): number {
  const year = now.getUTCFullYear();
  return at(lastSundayUtc(year, 9), 2, 0, 0) < now ? year : year - 1;
}

/** `day` moved by `days` days, at hh:mm UTC. */
function at(day: Date, days: number, hours: number, minutes: number): Date {
  return new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate() + days, hours, minutes));
}

/** The local date in Amsterdam, as YYYY-MM-DD. */
function amsterdamDate(instant: Date): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Amsterdam', year: 'numeric', month: '2-digit', day: '2-digit' }).format(instant);
}
