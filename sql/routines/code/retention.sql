-- Retention of run history, and the partitions it rests on (data/run_partitions.sql). The
-- executor calls code.maintain_run_history every minute or so; one executor at a time does the
-- work (the others find the settings row locked and return).
--
-- The policy: a finished run is kept while it finished less than keep_days ago (keep_failed_days
-- for failed, timed_out, rejected and lost runs, which are kept at least as long as the rest),
-- counted in calendar days of the job's time zone, so that "7 days" across a DST change is seven
-- local days, 167 or 169 hours; and the last keep_last_runs runs of each job are kept whatever
-- their age. The installation's defaults are in data.history_settings; a job's options
-- (keep_days, keep_failed_days, keep_last_runs) override them. A running run is never removed.
--
-- Rows go by partition, never by a long DELETE: a partition whose rows are all past the policy
-- is truncated; one where most are past it is emptied but for the rows to keep (they are put
-- back with their ids, in the same transaction); an empty one is dropped when that can be done
-- without holding anyone up (data.drop_run_partition).

-- The first id from which runs may be running: the oldest partition not yet settled. Claims,
-- sweeps and cancels read runs from there on only, so a settled partition is never locked by
-- them, and their plans do not grow with the number of partitions.
create or replace function code.running_floor()
  returns bigint
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce(min(p.first_id) filter (where p.settled_at is null), max(p.first_id)) from data.run_partitions p
$$;

-- `at` minus n calendar days in a time zone. A body parsed at creation and no SET clause, so that
-- it is inlined into the query judging a partition's runs (called per run, it took a third of it).
create or replace function code.days_before(at timestamptz, n integer, time_zone text)
  returns timestamptz
  language sql
  stable
  parallel safe
return ((at at time zone time_zone) - pg_catalog.make_interval(days => n)) at time zone time_zone;

-- One pass: open the waiting partition when the current one is old enough, create the next one
-- ahead, settle the partitions nobody inserts into and that have no running run, and apply the
-- policy to the settled ones old enough to hold something past it, until one is emptied or
-- dropped (then it returns, so that its locks go with its commit). `at`: the time the pass acts
-- for (now(); tests pass other times). Returns what it did, one row per action.
create or replace function code.maintain_run_history(at timestamptz default now())
  returns table (action text, partition_name text, rows_before bigint, rows_kept bigint)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  -- The query judging a partition's runs is estimated far above jit_above_cost (its per-job
  -- subquery is costed over every partition): compiling it took half of a pass (bench:history).
  set jit = off
as $$
declare
  settings data.history_settings;
  part     record;
  shortest integer;
  n        bigint;
  keep     bigint[];
  running  boolean;
  first    bigint;
begin
  -- One pass at a time, across executors: the others return at once.
  select * into settings from data.history_settings s for update skip locked;
  if not found then
    return;
  end if;

  if exists (select from data.run_partitions p where p.opened_at is null)
     -- The current partition: the newest opened one.
     and (select p.opened_at from data.run_partitions p where p.opened_at is not null order by p.first_id desc limit 1)
         <= at - make_interval(secs => settings.partition_seconds) then
    first := data.open_run_partition(at);
    partition_name := (select p.name from data.run_partitions p where p.first_id = first);
    action := 'opened'; rows_before := null; rows_kept := null;
    return next;
  end if;
  -- Always one partition ahead: opening never waits for one to be created (and never opens one
  -- created in its own transaction, see data.open_run_partition).
  if not exists (select from data.run_partitions p where p.opened_at is null) then
    first := data.create_run_partition();
    partition_name := (select p.name from data.run_partitions p where p.first_id = first);
    action := 'created';
    return next;
  end if;

  -- Settled: a partition claims no longer insert into (its successor was opened a minute ago,
  -- by the clock as well as by `at`: a claim is one short statement) with no running run. Its
  -- running runs only ever end. (A claim that is slower than that still cannot lose its rows:
  -- data.empty_run_partition checks the partition again under its lock.)
  for part in
    select p.first_id, p.name from data.run_partitions p
     where p.settled_at is null and p.opened_at is not null
       and exists (select from data.run_partitions q
                    where q.first_id > p.first_id and q.opened_at < least(at, now()) - interval '1 minute')
     order by p.first_id
  loop
    execute format('select exists (select from data.job_runs r where r.id >= %s and r.id < %s and r.status = %L)',
                   part.first_id, part.first_id + 4294967296, 'running') into strict running;
    exit when running;  -- the newer ones wait for this one: running_floor is a single bound
    update data.run_partitions p set settled_at = at where p.first_id = part.first_id;
    action := 'settled'; partition_name := part.name;
    return next;
  end loop;

  -- The shortest time anything is kept: a partition closed before then may hold rows past it.
  shortest := least(settings.keep_days, settings.keep_failed_days,
                    (select min(least(coalesce((j.options->>'keep_days')::integer, settings.keep_days),
                                      coalesce((j.options->>'keep_failed_days')::integer, settings.keep_failed_days)))
                       from data.jobs j where j.options ?| array['keep_days', 'keep_failed_days']));
  for part in
    select p.first_id, p.name from data.run_partitions p
     where p.settled_at is not null
       and (p.pruned_at is null or p.pruned_at < at - interval '1 day')
       -- Closed (its successor opened) more than `shortest` days ago: younger ones cannot hold a
       -- run past the policy. Only a shortcut: each row is judged on its own below.
       and (select min(q.opened_at) from data.run_partitions q where q.first_id > p.first_id)
           < at - make_interval(days => shortest)
     order by p.first_id
  loop
    execute format($q$
      with runs as (
        select r.id, r.job_id, r.status, r.finished_at from data.job_runs r where r.id >= %1$s and r.id < %2$s
      ), policy as (
        select d.job_id, tz,
               coalesce((j.options->>'keep_days')::integer, $1) as keep_days,
               greatest(coalesce((j.options->>'keep_failed_days')::integer, $2),
                        coalesce((j.options->>'keep_days')::integer, $1)) as keep_failed_days,
               coalesce((j.options->>'keep_last_runs')::integer, $3) as keep_last_runs
          from (select distinct r.job_id from runs r) d
          left join data.jobs j on j.id = d.job_id
          cross join lateral (select coalesce(j.time_zone, 'UTC') as tz) z
      ), floors as (
        -- The id of the job's keep_last_runs-th newest run, in any partition (index job_runs_by_job).
        select p.*, case when p.keep_last_runs > 0 then
                      (select k.id from data.job_runs k where k.job_id = p.job_id order by k.id desc
                        offset p.keep_last_runs - 1 limit 1) end as last_floor
          from policy p
      )
      select count(*), coalesce(array_agg(r.id) filter (
               where r.status = 'running'
                  or r.finished_at > code.days_before($4, case when r.status in ('failed', 'timed_out', 'rejected', 'lost')
                                                               then f.keep_failed_days else f.keep_days end, f.tz)
                  or r.id >= f.last_floor
                  or (f.keep_last_runs > 0 and f.last_floor is null)), '{}')
        from runs r join floors f on f.job_id = r.job_id
      $q$, part.first_id, part.first_id + 4294967296)
      into strict n, keep
      using settings.keep_days, settings.keep_failed_days, settings.keep_last_runs, at;
    partition_name := part.name; rows_before := n; rows_kept := cardinality(keep);
    if n = 0 then
      action := case when data.drop_run_partition(part.first_id) then 'dropped' else 'empty' end;
    elsif cardinality(keep) * 2 <= n then
      -- Most rows are past the policy: empty the partition but for the rest.
      begin
        action := case when data.empty_run_partition(part.first_id, keep, n) is null then 'busy'  -- judged again next pass
                       when cardinality(keep) = 0 then 'truncated' else 'compacted' end;
      exception when lock_not_available then
        action := 'busy';  -- readers held it; the next pass tries again
      end;
    else
      action := 'kept';
    end if;
    if action <> 'dropped' then
      update data.run_partitions p set pruned_at = case when action = 'busy' then null else at end
       where p.first_id = part.first_id;
    end if;
    return next;
    -- The locks taken to empty or drop a partition are held until this transaction ends (a drop's
    -- is on the whole table, which every run waits for): one such action per pass, committed at
    -- once. The executor calls again while passes act (server/executor/executor.ts).
    exit when action in ('truncated', 'compacted', 'dropped');
  end loop;
end;
$$;

-- The installation's retention defaults and partition period (data.history_settings). For the
-- administrator (the database owner), who runs `hardcron migrate`.
create or replace function code.set_history_settings(keep_days integer default null, keep_failed_days integer default null,
                                                     keep_last_runs integer default null, partition_seconds integer default null)
  returns data.history_settings
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  result data.history_settings;
begin
  if keep_days is not null and keep_days not between 1 and 36500 then
    perform code.fail('HC401', 'keep_days must be a whole number from 1 to 36500');
  end if;
  if keep_failed_days is not null and keep_failed_days not between 1 and 36500 then
    perform code.fail('HC401', 'keep_failed_days must be a whole number from 1 to 36500');
  end if;
  if keep_last_runs is not null and keep_last_runs not between 0 and 10000 then
    perform code.fail('HC401', 'keep_last_runs must be a whole number from 0 to 10000');
  end if;
  if partition_seconds is not null and partition_seconds not between 60 and 31622400 then
    perform code.fail('HC401', 'partition_seconds must be a whole number from 60 to 31622400 (a year)');
  end if;
  update data.history_settings s
     set keep_days = coalesce(set_history_settings.keep_days, s.keep_days),
         keep_failed_days = coalesce(set_history_settings.keep_failed_days, s.keep_failed_days),
         keep_last_runs = coalesce(set_history_settings.keep_last_runs, s.keep_last_runs),
         partition_seconds = coalesce(set_history_settings.partition_seconds, s.partition_seconds)
  returning * into result;
  return result;
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.running_floor() to %I', db || '$api');
  execute format('grant execute on function code.maintain_run_history(timestamptz) to %I', db || '$api');
end;
$grants$;
