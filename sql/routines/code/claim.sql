-- Claiming due occurrences, set-based: one statement locks the due jobs (FOR UPDATE SKIP
-- LOCKED), advances them and inserts their runs. What a claim means for one job (which
-- occurrence, which attempt, the job's next state, skip or run) is decided by code.plan_claim.

-- The newest occurrence of a cron at or before `now_at`, starting from the due occurrence `due`,
-- and the one after it, found without stepping through every missed occurrence: a window ending
-- at `now_at` doubles (1 s, 2 s, 4 s, ...) until it holds an occurrence, and only the occurrences
-- inside it are stepped through. So catching up costs about log2 of the gap to the newest
-- occurrence, whether the executors were away for a minute or a year. `oldest_kept`: the first of
-- the last `keep` occurrences up to the newest (`missed: all` runs those), or `due` when fewer
-- have passed; the window then doubles until it holds `keep` of them.
create or replace function code.catch_up(spec code.cron_spec, zone text, due timestamptz, now_at timestamptz, keep integer,
                              out newest timestamptz, out following timestamptz, out oldest_kept timestamptz)
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  span  interval := interval '1 second';
  start timestamptz;
  last  timestamptz[];  -- the newest `keep` occurrences of the window, oldest first
  seen  integer;
  t     timestamptz;
begin
  following := code.cron_next(spec, zone, due);
  if following > now_at then  -- not behind: the due occurrence is the newest
    newest := due;
    oldest_kept := due;
    return;
  end if;
  keep := greatest(keep, 1);
  loop
    start := greatest(due, now_at - span);
    last := '{}';
    seen := 0;
    t := code.cron_next(spec, zone, start);
    while t <= now_at loop
      seen := seen + 1;
      last := last || t;
      if cardinality(last) > keep then last := last[2:]; end if;
      t := code.cron_next(spec, zone, t);
    end loop;
    exit when start = due or seen >= keep;
    span := span * 2;
  end loop;
  newest := last[cardinality(last)];
  following := t;
  oldest_kept := case when seen >= keep then last[1] else due end;
end;
$$;

-- code.catch_up for a schedule of either kind (code.parse_schedule): a cron expression's by the
-- search above; an interval's by arithmetic, in constant time: the newest occurrence is the one
-- before the first after `now_at` (code.next_occurrence), and the last `keep` are a period apart.
create or replace function code.schedule_catch_up(spec code.schedule_spec, zone text, anchor timestamptz, due timestamptz,
                                         now_at timestamptz, keep integer,
                                         out newest timestamptz, out following timestamptz, out oldest_kept timestamptz)
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  period constant interval := interval '1 second' * spec.period_seconds;
begin
  if spec.period_seconds is null then
    select c.newest, c.following, c.oldest_kept into newest, following, oldest_kept
      from code.catch_up(spec.cron, zone, due, now_at, keep) c;
    return;
  end if;
  following := code.next_occurrence(spec, zone, anchor, due);
  if following > now_at then  -- not behind: the due occurrence is the newest
    newest := due;
    oldest_kept := due;
    return;
  end if;
  following := code.next_occurrence(spec, zone, anchor, now_at);
  newest := following - period;
  oldest_kept := greatest(due, newest - period * (greatest(keep, 1) - 1));
end;
$$;

-- The run policies (overlap, missed, retries) for one due job, as of now: retries first, then a run-now
-- request, then the schedule with its missed-run policy; overlap decides between run and skip.
-- Occurrences the missed-run policy passes over are the gap [missed_from, occurrence). `trigger`
-- says what makes the run (see data.job_runs.trigger).
create or replace function code.plan_claim(job data.jobs, overlapping boolean)
  returns code.claim_plan
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  due_at constant timestamptz := least(job.next_run_at, job.extra_run_at, job.retry_at);
  plan   code.claim_plan;
  catch  record;
  spec   code.schedule_spec;
  skip   boolean := false;
begin
  plan := row(null, 1, job.next_run_at, job.extra_run_at, job.retry_at, job.retry_scheduled_for, job.retry_attempt,
              null, ceil((job.options->>'timeout_seconds')::numeric * 1000)::integer, null, 'schedule')::code.claim_plan;
  if job.retry_at = due_at then
    plan.occurrence := job.retry_scheduled_for;
    plan.attempt := job.retry_attempt;
    plan.retry_at := null; plan.retry_scheduled_for := null; plan.retry_attempt := null;
    -- The attempt before was lost (its executor lost it), or failed (code.queue_retry).
    plan.trigger := case when job.retry_lost then 'lost_retry' else 'retry' end;
  elsif job.extra_run_at = due_at then
    plan.occurrence := job.extra_run_at;
    plan.extra_run_at := null;
    plan.trigger := 'run_now';
  elsif job.schedule is null then
    plan.occurrence := job.next_run_at;
    plan.next_run_at := null;  -- a one-off job has run
  else
    spec := code.parse_schedule(job.schedule);
    catch := code.schedule_catch_up(spec, job.time_zone, job.schedule_anchor, job.next_run_at, now(),
                           case when job.options->>'missed' = 'all' then (job.options->>'max_missed')::integer else 1 end);
    plan.occurrence := catch.newest;
    plan.next_run_at := catch.following;
    case job.options->>'missed'
      when 'latest' then
        null;
      when 'none' then
        skip := plan.occurrence < now() - interval '1 minute';
      else  -- 'all': oldest first, keeping at most max_missed of the occurrences due
        plan.occurrence := catch.oldest_kept;
        plan.next_run_at := code.next_occurrence(spec, job.time_zone, job.schedule_anchor, plan.occurrence);
    end case;
    if plan.occurrence > job.next_run_at then
      plan.missed_from := job.next_run_at;
    end if;
    if catch.newest > job.next_run_at then  -- more than one occurrence had passed
      plan.trigger := 'catch_up';
    end if;
  end if;
  skip := skip or (overlapping and job.options->>'overlap' = 'skip');
  plan.status := case when skip then 'skipped' else 'running' end;
  return plan;
end;
$$;

-- Claims up to max_runs due occurrences for an executor, giving no owner more than its room: an
-- owner listed in `owners` may take as many more runs as the same position of `room` says (its
-- runs already running on this executor count against it), any other owner `per_owner`. Owners
-- without room are passed over in the scan, so one owner's backlog never stands in front of
-- another's due runs. Without them (a claim by hand), no owner is limited.
create or replace function code.claim_runs(executor_id text, max_runs integer, owners text[] default '{}',
                                           room integer[] default '{}', per_owner integer default 10000)
  returns table (run_id bigint, job_id bigint, timeout_ms integer, owner text, claim_token uuid)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  -- Planned for the owners passed over each time: with none, the due index is walked in order and
  -- the scan stops at max_runs; a generic plan would read every due job whoever owns it.
  set plan_cache_mode = force_custom_plan
as $$
declare
  full_owners text[] := array(select o.name from unnest(owners, room) o(name, left_over) where o.left_over < 1);
  -- Runs may be running from here on only (code.running_floor): a constant of this plan, so
  -- that the plan reads only the partitions not yet settled, whatever their number.
  floor constant bigint := code.running_floor();
  locked bigint[];
begin
  if max_runs is null or max_runs < 1 or max_runs > 10000 then
    perform code.fail('HC301', 'max_runs must be from 1 to 10000');
  end if;
  if per_owner is null or per_owner < 1 or cardinality(owners) is distinct from cardinality(room) then
    perform code.fail('HC301', 'per_owner must be at least 1, and owners and room must be of the same length');
  end if;
  if not exists (select from data.executors e where e.id = claim_runs.executor_id and e.lease_expires_at > now()) then
    perform code.fail('HC302', format('executor %s has no live lease: renew it before claiming', claim_runs.executor_id));
  end if;

  -- Two statements, so that the runs this claim plans around are read after it holds its jobs'
  -- rows. A claim that finds a job's row updated by a claim that committed after this statement
  -- began locks the row's new version (READ COMMITTED re-checks it), but the statement's
  -- snapshot, older, does not show that claim's run: planned in the same statement, the job ran
  -- a second run beside the running one under overlap 'skip' (seen in the failover test). The
  -- second statement's snapshot is taken after the locks, so it sees every run of these jobs
  -- committed by a claim that held them before.
  select array_agg(d.id) into locked from (
    select j.id from data.jobs j
     where (j.next_run_at is not null or j.extra_run_at is not null or j.retry_at is not null)
       and least(j.next_run_at, j.extra_run_at, j.retry_at) <= now()
       and j.owner <> all (full_owners)
       -- Not while a run is running (and not taking a place in the batch): with overlap 'queue',
       -- and with overlap 'skip' when a retry is due, which waits for the running run rather
       -- than being skipped (a retry, of a lost run say, is never dropped for overlapping).
       -- Asked again below, on the newer snapshot.
       and not ((j.options->>'overlap' = 'queue' or (j.options->>'overlap' = 'skip' and j.retry_at is not null and j.retry_at <= now()))
                and exists (select from data.job_runs r where r.job_id = j.id and r.status = 'running' and r.id >= floor))
     order by least(j.next_run_at, j.extra_run_at, j.retry_at), j.id
     limit max_runs
     for update skip locked) d;

  return query
  with due as materialized (
    select j from data.jobs j
     where j.id = any (locked)
       and not ((j.options->>'overlap' = 'queue' or (j.options->>'overlap' = 'skip' and j.retry_at is not null and j.retry_at <= now()))
                and exists (select from data.job_runs r where r.job_id = j.id and r.status = 'running' and r.id >= floor))
  ), within_room as materialized (
    -- The first runs of each owner, as many as its room; the rest stay due (their rows are
    -- unlocked when this claim commits).
    select d.j from (
      select d.j, row_number() over (partition by (d.j).owner order by least((d.j).next_run_at, (d.j).extra_run_at, (d.j).retry_at), (d.j).id) as nth
        from due d) d
     where d.nth <= coalesce((select o.left_over from unnest(owners, room) o(name, left_over) where o.name = (d.j).owner), per_owner)
  ), planned as materialized (
    select (d.j).id as job_id, (d.j).owner, (d.j).function_owner, p.*,
           row_number() over (order by least((d.j).next_run_at, (d.j).extra_run_at, (d.j).retry_at), (d.j).id) as position
      from within_room d,
           code.plan_claim(d.j, exists (select from data.job_runs r where r.job_id = (d.j).id and r.status = 'running'
                                                                      and r.id >= floor)) p
  ), advanced as (
    update data.jobs j
       set next_run_at = p.next_run_at, extra_run_at = p.extra_run_at, retry_at = p.retry_at,
           retry_scheduled_for = p.retry_scheduled_for, retry_attempt = p.retry_attempt
      from planned p
     where j.id = p.job_id
  ), inserted as (
    -- One `missed` row for the occurrences a job's missed-run policy passed over, if any, then
    -- the run (or skip) of its planned occurrence: ids follow the occurrences, and the newest row
    -- of a job is its run.
    insert into data.job_runs as r (job_id, owner, function_owner, scheduled_for, status, attempt, executor_id, finished_at,
                                    missed_before, claim_token, trigger)
    select p.job_id, p.owner, p.function_owner, p.missed_from, 'missed', 1, claim_runs.executor_id, now(), p.occurrence, null, null
      from planned p
     where p.missed_from is not null
    union all
    select p.job_id, p.owner, p.function_owner, p.occurrence, p.status, p.attempt, claim_runs.executor_id,
           case when p.status = 'skipped' then now() end, null,
           case when p.status = 'running' then gen_random_uuid() end,  -- names this claim (see code.start_run)
           p.trigger
      from planned p
    -- This occurrence already has its run: the key (job_id, scheduled_for, attempt) is unique in
    -- each partition, and a claim inserts into the newest (see DESIGN.md, "Exactly once").
    on conflict do nothing
    returning r.id, r.job_id, r.status, r.claim_token
  ), announced as materialized (
    select i.*, code.log_run_event(i.id, i.job_id, i.status) from inserted i  -- announced by the executor
  )
  select a.id, a.job_id, p.timeout_ms, p.owner, a.claim_token
    from announced a join planned p on p.job_id = a.job_id
   where a.status = 'running'
   order by p.position;
end;
$$;

-- When is the next occurrence due? (index-backed; the executor sleeps until then)
create or replace function code.next_due_at()
  returns timestamptz
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select least(j.next_run_at, j.extra_run_at, j.retry_at) from data.jobs j
   where j.next_run_at is not null or j.extra_run_at is not null or j.retry_at is not null
   order by least(j.next_run_at, j.extra_run_at, j.retry_at) limit 1
$$;

-- The backlog gauge: its query did not state the due index's predicate, so it read every job.
create or replace function code.due_backlog()
  returns bigint
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select count(*) from (
    select from data.jobs j
     where (j.next_run_at is not null or j.extra_run_at is not null or j.retry_at is not null)
       and least(j.next_run_at, j.extra_run_at, j.retry_at) <= now()
     limit 1000000
  ) due
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.claim_runs(text,integer,text[],integer[],integer) to %I', db || '$api');
  execute format('grant execute on function code.next_due_at() to %I', db || '$api');
  execute format('grant execute on function code.due_backlog() to %I', db || '$api');
end;
$grants$;
