-- Scheduling (security definer functions owned by $code, reached through api/jobs.sql):
-- schedule, update, pause, resume, run now and unschedule a job. Every change is checked like
-- scheduling, by the caller's identity (code/identity.sql) and the eligibility check.

-- Wakes idle executors: a job's due time may have moved (they re-read the earliest due time).
create or replace function code.notify_jobs_changed()
  returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$ select pg_notify('hardcron_jobs_changed', '') $$;

-- The first occurrence of a job's timing after `after`: its schedule's next occurrence (an
-- interval's counted from `anchor`, see code.next_occurrence), or run_at.
create or replace function code.first_run_at(schedule text, run_at timestamptz, time_zone text, anchor timestamptz, after timestamptz)
  returns timestamptz
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  next_at timestamptz;
begin
  if (schedule is null) = (run_at is null) then
    perform code.fail('HC208', 'give exactly one of schedule (a cron expression) and run_at (a time)');
  end if;
  if run_at is not null then
    if run_at < after then
      perform code.fail('HC208', format('run_at %s is in the past', run_at));
    end if;
    return run_at;
  end if;
  next_at := code.next_occurrence(code.parse_schedule(schedule), time_zone, anchor, after);
  if next_at is null then  -- only a cron expression can have no next occurrence
    perform code.cron_error(schedule, 'it never fires');
  end if;
  return next_at;
end;
$$;

-- The caller's job, locked for a change. Another owner's job and a missing one fail alike, after
-- the same statements and calls: the caller's roles are computed before the job is looked up,
-- and the lookup compares names only.
create or replace function code.job_to_change(job_id bigint)
  returns data.jobs
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  roles constant text[] := code.caller_roles();
  job data.jobs;
begin
  -- No lock yet: a lock on another owner's row could wait for that owner's transaction.
  select * into job from data.jobs j
   where j.id = job_id and array[j.owner, j.function_owner] && roles;
  if job.id is null then
    perform code.fail('HC211', format('job %s not found', coalesce(job_id::text, 'NULL')));
  end if;
  if not job.owner = any (roles) then
    perform code.fail('HC212', format('job %s belongs to %s: only its owner and members of that role may change it',
                                      job_id, quote_ident(job.owner)));
  end if;
  select * into job from data.jobs j where j.id = job_id for update;
  if job.id is null then  -- unscheduled since the lookup
    perform code.fail('HC211', format('job %s not found', job_id));
  end if;
  return job;
end;
$$;

-- One role owns at most 10,000 jobs: a job that schedules jobs (as its owner may) cannot grow
-- without bound. Serialised per owner by the owner's row in data.owner_locks, held until the
-- calling transaction ends, so concurrent calls cannot overshoot.
create or replace function code.require_room_for_job(owner text)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  most constant integer := 10000;
begin
  insert into data.owner_locks (owner) values (require_room_for_job.owner) on conflict do nothing;
  update data.owner_locks l set last_scheduled_at = now() where l.owner = require_room_for_job.owner;
  if (select count(*) from (select from data.jobs j where j.owner = require_room_for_job.owner limit most) x) >= most then
    perform code.fail('HC215', format('role %s already owns %s jobs, the most one role may own', quote_ident(owner), most),
                      'Unschedule jobs that are no longer needed.');
  end if;
end;
$$;

create or replace function code.schedule_job(
  function_signature text, arguments jsonb, schedule text, run_at timestamptz,
  name text, time_zone text, options jsonb)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  caller    constant text := code.caller();
  signature text;
  verdict   code.verdict;
  zone      text;
  -- An interval schedule counts from the whole second it is set at (code.next_occurrence).
  anchor    constant timestamptz := case when schedule is not null then date_trunc('second', now()) end;
  next_at   timestamptz;
  job_id    bigint;
begin
  perform code.require_valid_name(name);
  perform code.require_valid_arguments(arguments);
  signature := code.canonical_signature(function_signature);
  verdict := code.check_eligibility(caller, signature, arguments);
  perform code.require_eligible(verdict, signature);
  zone := code.require_time_zone(time_zone);
  -- Neither a schedule nor a time: one run, due now (the transaction's time, never in the past
  -- for first_run_at, which compares with the same now()).
  if schedule is null and run_at is null then
    run_at := now();
  end if;
  next_at := code.first_run_at(schedule, run_at, zone, anchor, now());
  perform code.require_room_for_job(caller);

  insert into data.jobs (name, owner, function_signature, function_owner, arguments, schedule, schedule_anchor, run_at,
                         time_zone, options, next_run_at)
  values (name, caller, signature, verdict.function_owner, arguments, btrim(schedule), anchor, run_at,
          zone, code.job_options(coalesce(options, '{}')), next_at)
  returning id into job_id;
  perform code.notify_jobs_changed();
  return job_id;
end;
$$;

-- Changes the given fields (null: keep), re-checking everything as scheduling does. Giving
-- schedule switches a one-off job to a schedule and back for run_at. A different schedule is
-- anchored now; any other change keeps the anchor, so an interval schedule keeps its phase.
create or replace function code.update_job(
  job_id bigint, function_signature text, arguments jsonb, schedule text, run_at timestamptz,
  name text, time_zone text, options jsonb)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job       data.jobs := code.job_to_change(job_id);
  verdict   code.verdict;
begin
  if schedule is not null and run_at is not null then
    perform code.fail('HC208', 'give exactly one of schedule (a cron expression) and run_at (a time)');
  end if;
  perform code.require_valid_name(name);
  if arguments is not null then
    perform code.require_valid_arguments(arguments);
  end if;
  if function_signature is not null then
    job.function_signature := code.canonical_signature(function_signature);
  end if;
  job.arguments := coalesce(arguments, job.arguments);
  if schedule is not null then
    if btrim(schedule) is distinct from job.schedule then
      job.schedule_anchor := date_trunc('second', now());
    end if;
    job.schedule := btrim(schedule);
    job.run_at := null;
  elsif run_at is not null then
    job.run_at := run_at;
    job.schedule := null;
    job.schedule_anchor := null;
  end if;
  job.name := coalesce(name, job.name);
  job.time_zone := code.require_time_zone(coalesce(time_zone, job.time_zone));
  job.options := code.job_options(coalesce(job.options || options, job.options));

  -- The job keeps running as its owner, so the owner must be eligible for it now.
  verdict := code.check_eligibility(job.owner, job.function_signature, job.arguments);
  perform code.require_eligible(verdict, job.function_signature);

  update data.jobs j
     set function_signature = job.function_signature,
         function_owner     = verdict.function_owner,
         arguments          = job.arguments,
         schedule           = job.schedule,
         schedule_anchor    = job.schedule_anchor,
         run_at             = job.run_at,
         name               = job.name,
         time_zone          = job.time_zone,
         options            = job.options,
         next_run_at        = case when job.enabled
                                   then code.first_run_at(job.schedule, job.run_at, job.time_zone, job.schedule_anchor, now()) end,
         updated_at         = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

create or replace function code.pause_job(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  update data.jobs j
     set enabled = false, next_run_at = null, extra_run_at = null, retry_at = null, retry_scheduled_for = null,
         retry_attempt = null, updated_at = now(),
         paused_reason = case when j.enabled then format('paused by %s', code.caller()) else j.paused_reason end
   where j.id = job.id;
  perform code.request_cancel(job.id);
  return job.id;
end;
$$;

-- Resuming starts from now: occurrences missed while paused are not made up. The anchor stays, so
-- an interval schedule resumes in its phase.
create or replace function code.resume_job(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  update data.jobs j
     set enabled = true, consecutive_failures = 0, paused_reason = null,
         next_run_at = case
           when job.enabled then j.next_run_at
           when job.schedule is not null then code.next_occurrence(code.parse_schedule(job.schedule), job.time_zone, job.schedule_anchor, now())
           when not exists (select from data.job_runs r where r.job_id = job.id) then greatest(job.run_at, now())
         end,
         updated_at = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

create or replace function code.run_job_now(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  if not job.enabled then
    perform code.fail('HC216', format('job %s is paused', job.id), format('resume it first: api.resume_job(%s)', job.id));
  end if;
  update data.jobs j set extra_run_at = coalesce(least(j.extra_run_at, now()), now()), updated_at = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

-- Removes the job; its runs stay in the history.
create or replace function code.unschedule_job(job_id bigint)
  returns boolean
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  delete from data.jobs j where j.id = job.id;
  perform code.request_cancel(job.id);
  return true;
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.schedule_job(text,jsonb,text,timestamp with time zone,text,text,jsonb) to %I', db || '$api');
  execute format('grant execute on function code.update_job(bigint,text,jsonb,text,timestamp with time zone,text,text,jsonb) to %I', db || '$api');
  execute format('grant execute on function code.pause_job(bigint) to %I', db || '$api');
  execute format('grant execute on function code.resume_job(bigint) to %I', db || '$api');
  execute format('grant execute on function code.run_job_now(bigint) to %I', db || '$api');
  execute format('grant execute on function code.unschedule_job(bigint) to %I', db || '$api');
end;
$grants$;
