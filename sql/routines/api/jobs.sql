-- Jobs as clients see them (schema api, owned by $api: all that $client may use): the view
-- api.jobs (over data.jobs, whose row security shows $api the caller's rows only), and the
-- pass-through shims that schedule and change jobs.
-- A caller sees a job when it has USAGE on the job's owner or on the role that owned its
-- function when it was scheduled (a superuser has every role, so it sees everything); another
-- owner's job id takes the same path as a missing one, in every function and view.
--
-- PostGraphile reads the comments: they give the GraphQL schema its keys, relations and
-- descriptions. The views are read-only to clients; the behavior tags keep the schema from
-- offering mutations that could only fail.

-- The views show the rows of data.jobs and data.job_runs that the row security policies show
-- $api, their owner, for the calling user (data/row_security.sql): the one rule of visibility.
-- They are plain views, merged into the query that reads them, so that its ORDER BY and LIMIT
-- reach the tables' indexes (a page costs what it returns: code/visibility.sql). The condition
-- has no column in it, so PostgreSQL evaluates it once, before it reads any row ("One-Time
-- Filter"): it computes the caller's roles whether or not a row matches, and reads nothing for
-- a caller who sees no job at all.
-- The security_barrier option is gone with the filtering it protected: the policies are applied
-- before any condition of the caller's query (leaky functions included), like a barrier's.
create or replace view api.jobs as
  select j.id, j.name, j.owner, j.function_signature, j.arguments, j.schedule, j.run_at, j.time_zone,
         j.options, j.enabled, least(j.next_run_at, j.extra_run_at, j.retry_at) as next_run_at,
         last.started_at as last_run_at, last.status::api.job_run_status as last_status, j.created_at, j.updated_at,
         j.paused_reason, j.consecutive_failures,
         (j.options->>'overlap')::api.job_overlap_policy as overlap, (j.options->>'missed')::api.job_missed_policy as missed
    from data.jobs j
    left join lateral (
      -- The newest run (index job_runs_by_job); a skipped or lost run may not have started.
      select r.status, coalesce(r.started_at, r.finished_at) as started_at
        from data.job_runs r where r.job_id = j.id order by r.id desc limit 1
    ) last on true
   where (select code.caller_sees_jobs());
alter view api.jobs reset (security_barrier);

comment on view api.jobs is
$$@primaryKey id
@behavior -insert -update -delete
A scheduled call of a security definer function. You see the jobs whose owner role (or whose function's owner role) you have.$$;

comment on column api.jobs.id is 'The job''s id.';

comment on column api.jobs.name is 'A name for people; not unique.';

comment on column api.jobs.owner is E'@notNull\nThe role the function runs as: the owner of the function when the job was scheduled.';

comment on column api.jobs.function_signature is E'@notNull\nThe function called, schema-qualified with argument types, e.g. billing.close_day(date).';

comment on column api.jobs.arguments is E'@notNull\nThe arguments of the call, a JSON array with one element per parameter.';

comment on column api.jobs.schedule is 'A cron expression (5 fields, or 6 with seconds first); null for a one-off job.';

comment on column api.jobs.run_at is 'When a one-off job runs; null for a cron job.';

comment on column api.jobs.time_zone is E'@notNull\nThe IANA time zone the cron expression is read in.';

comment on column api.jobs.options is E'@notNull\nAll options, defaults filled in: overlap, missed, max_missed, timeout_seconds, retries, retry_delay_seconds, max_consecutive_failures, keep_days, keep_failed_days, keep_last_runs (overlap and missed also as the typed fields of those names).';

comment on column api.jobs.enabled is E'@notNull\nFalse while paused.';

comment on column api.jobs.next_run_at is 'The next due occurrence (or retry); null when nothing is due.';

comment on column api.jobs.last_run_at is 'When the newest run started.';

comment on column api.jobs.paused_reason is 'Why the job is paused: by whom, or after how many failures in a row (option max_consecutive_failures); null while it runs.';

comment on column api.jobs.consecutive_failures is E'@notNull\nRuns that ended failed or timed out since the last success (or since the job was resumed).';

comment on column api.jobs.last_status is E'@behavior +orderBy\nThe status of the newest run; null before the first. Ordered as the enum is: running, succeeded, failed, …';

comment on column api.jobs.created_at is E'@notNull\nWhen the job was scheduled.';

comment on column api.jobs.updated_at is E'@notNull\nWhen the job last changed: scheduled, updated, paused (also by itself), resumed or asked to run now.';

comment on column api.jobs.overlap is E'@notNull\nThe option overlap: what happens to an occurrence due while the previous run still runs (skip, queue or allow).';

comment on column api.jobs.missed is E'@notNull\nThe option missed: which occurrences a job behind its schedule runs (latest, all or none).';

-- Each shim calls its code function exactly once (plpgsql, not a view predicate) and returns
-- the job as the caller sees it through api.jobs.
create or replace function api.schedule_job(
  function_signature text,
  arguments          jsonb       default '[]',
  schedule           text        default null,
  run_at             timestamptz default null,
  name               text        default null,
  time_zone          text        default 'UTC',
  options            jsonb       default '{}')
  returns api.jobs
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  changed_id constant bigint := code.schedule_job(function_signature, arguments, schedule, run_at, name, time_zone, options);
  result api.jobs;
begin
  select j.* into strict result from api.jobs j where j.id = changed_id;
  return result;
end;
$$;

comment on function api.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb) is
  E'@resultFieldName job\nSchedules a call of a security definer function: a cron schedule or a one-off run_at, exactly one of them.';

comment on function api.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb) is
  E'@resultFieldName job\nSchedules a call of a security definer function: on a cron schedule, once at run_at, or (neither given) once, now. A one-off job stays listed with its runs after it ran.';

create or replace function api.update_job(
  job_id             bigint,
  function_signature text        default null,
  arguments          jsonb       default null,
  schedule           text        default null,
  run_at             timestamptz default null,
  name               text        default null,
  time_zone          text        default null,
  options            jsonb       default null)
  returns api.jobs
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  changed_id constant bigint := code.update_job(job_id, function_signature, arguments, schedule, run_at, name, time_zone, options);
  result api.jobs;
begin
  select j.* into strict result from api.jobs j where j.id = changed_id;
  return result;
end;
$$;

comment on function api.update_job(bigint, text, jsonb, text, timestamptz, text, text, jsonb) is
  E'@resultFieldName job\nChanges a job; null fields stay as they are. Checked like scheduling.';

create or replace function api.pause_job(job_id bigint)
  returns api.jobs
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  changed_id constant bigint := code.pause_job(job_id);
  result api.jobs;
begin
  select j.* into strict result from api.jobs j where j.id = changed_id;
  return result;
end;
$$;

comment on function api.pause_job(bigint) is E'@resultFieldName job\nStops a job from running until it is resumed.';

create or replace function api.resume_job(job_id bigint)
  returns api.jobs
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  changed_id constant bigint := code.resume_job(job_id);
  result api.jobs;
begin
  select j.* into strict result from api.jobs j where j.id = changed_id;
  return result;
end;
$$;

comment on function api.resume_job(bigint) is E'@resultFieldName job\nLets a paused job run again from its next occurrence.';

create or replace function api.run_job_now(job_id bigint)
  returns api.jobs
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  changed_id constant bigint := code.run_job_now(job_id);
  result api.jobs;
begin
  select j.* into strict result from api.jobs j where j.id = changed_id;
  return result;
end;
$$;

comment on function api.run_job_now(bigint) is E'@resultFieldName job\nAdds one extra occurrence, due now.';

create or replace function api.unschedule_job(job_id bigint)
  returns boolean
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.unschedule_job(job_id) $$;

comment on function api.unschedule_job(bigint) is E'@resultFieldName unscheduled\nDeletes a job; its run history stays.';

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select on api.jobs to %I', db || '$anonymous');
  execute format('grant select on api.jobs to %I', db || '$authenticator');
  execute format('grant select on api.jobs to %I', db || '$client');
  execute format('grant select on api.jobs to %I', db || '$executor');
  execute format('grant execute on function api.schedule_job(text,jsonb,text,timestamp with time zone,text,text,jsonb) to %I', db || '$client');
  execute format('grant execute on function api.update_job(bigint,text,jsonb,text,timestamp with time zone,text,text,jsonb) to %I', db || '$client');
  execute format('grant execute on function api.pause_job(bigint) to %I', db || '$client');
  execute format('grant execute on function api.resume_job(bigint) to %I', db || '$client');
  execute format('grant execute on function api.run_job_now(bigint) to %I', db || '$client');
  execute format('grant execute on function api.unschedule_job(bigint) to %I', db || '$client');
end;
$grants$;
