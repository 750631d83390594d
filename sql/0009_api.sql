-- The API (owned by $api): two security_barrier views and pass-through shims. $client may use
-- these and nothing else. The views show a row to a caller with USAGE on the job's owner or on
-- the role that owned its function when it was scheduled (a superuser has every role, so it
-- sees everything).

select set_config('role', current_database() || '$api', true);

create view api.jobs with (security_barrier) as
  select j.id, j.name, j.owner, j.function_signature, j.arguments, j.schedule, j.run_at, j.time_zone,
         j.options, j.enabled, least(j.next_run_at, j.extra_run_at, j.retry_at) as next_run_at,
         last.started_at as last_run_at, last.status as last_status, j.created_at, j.updated_at
    from data.jobs j
    left join lateral (
      -- The newest run (index job_runs_by_job); a skipped or lost run may not have started.
      select r.status, coalesce(r.started_at, r.finished_at) as started_at
        from data.job_runs r where r.job_id = j.id order by r.id desc limit 1
    ) last on true
   where code.caller_has_role(j.owner) or code.caller_has_role(j.function_owner);

create view api.job_runs with (security_barrier) as
  select r.id, r.job_id, r.owner, r.scheduled_for, r.started_at, r.finished_at, r.status, r.attempt,
         r.rows_returned, r.rows_affected, r.error_sqlstate, r.error_message, r.error_detail, r.error_hint,
         r.error_context, r.reject_reason, r.executor_id
    from data.job_runs r
   where code.caller_has_role(r.owner) or code.caller_has_role(r.function_owner);

-- Each shim calls its code function exactly once (plpgsql, not a view predicate) and returns
-- the job as the caller sees it through api.jobs.

create function api.schedule_job(
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

create function api.update_job(
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

create function api.pause_job(job_id bigint)
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

create function api.resume_job(job_id bigint)
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

create function api.run_job_now(job_id bigint)
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

create function api.unschedule_job(job_id bigint)
  returns boolean
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.unschedule_job(job_id) $$;

do $grants$
declare
  db constant text := current_database();
begin
  -- The runtime roles see the views too (and, in their own sessions, no rows).
  execute format('grant usage on schema api to %I, %I, %I', db || '$executor', db || '$authenticator', db || '$anonymous');
  execute format('grant select on api.jobs, api.job_runs to %I, %I, %I, %I',
                 db || '$client', db || '$executor', db || '$authenticator', db || '$anonymous');
  execute format('grant execute on function
      api.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb),
      api.update_job(bigint, text, jsonb, text, timestamptz, text, text, jsonb),
      api.pause_job(bigint), api.resume_job(bigint), api.run_job_now(bigint), api.unschedule_job(bigint)
    to %I', db || '$client');
end;
$grants$;

reset role;
