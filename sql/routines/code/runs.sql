-- A run's life after its claim: started (every check repeated), finished with its outcome in
-- the same transaction as the job's effects, and retried when its policy says so.

-- A run is named by its id and its claim's token (code.claim_runs): after a failover an id can
-- name another run, a token cannot.
create or replace function code.start_run(run_id bigint, executor_id text, claim_token uuid)
  returns table (job_id bigint, scheduled_for timestamptz, started_at timestamptz, done_status text,
                 owner text, call_sql text, arguments text[])
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run     data.job_runs;
  job     data.jobs;
  verdict code.verdict;
  fn      pg_proc;
begin
  -- Locked until the run's transaction ends: code.sweep_runs passes over a run whose row is held,
  -- and declares lost one whose row nobody holds.
  -- EXECUTE: planned with the run's id, so that its partition alone is read and locked (a cached
  -- generic plan locks every partition of data.job_runs until the run commits, and retention
  -- would wait for every run). The same in each statement naming a run by id below.
  execute 'select * from data.job_runs r where r.id = $1 for update' into run using start_run.run_id;
  if run.id is null or run.executor_id is distinct from start_run.executor_id
     or run.claim_token is distinct from start_run.claim_token or start_run.claim_token is null then
    perform code.fail('HC302', format('run %s is not a claimed run of this executor (or not this claim of it)', start_run.run_id));
  end if;
  job_id := run.job_id;
  scheduled_for := run.scheduled_for;
  started_at := clock_timestamp();  -- recorded by finish_run: one write per run
  if run.status <> 'running' then  -- swept as lost meanwhile (and retried): nothing to do
    done_status := 'lost';
    return next;
    return;
  end if;
  if exists (select from data.cancel_requests c where c.run_id = run.id) then  -- paused or unscheduled since the claim
    done_status := 'cancelled';
    perform code.finish_run(run.id, done_status, started_at);
    return next;
    return;
  end if;
  select * into job from data.jobs j where j.id = run.job_id;
  if job.id is null then  -- unscheduled since it was claimed
    done_status := 'skipped';
    perform code.finish_run(run.id, done_status, started_at);
    return next;
    return;
  end if;

  verdict := code.check_eligibility(run.owner, job.function_signature, job.arguments);
  if verdict.reason is not null then
    done_status := 'rejected';
    perform code.finish_run(run.id, done_status, started_at, reject_reason => verdict.reason);
    return next;
    return;
  end if;

  select * into strict fn from pg_proc where oid = verdict.function_oid;
  owner := run.owner;
  call_sql := format('select count(*) from %I.%I(%s)',
    (select nspname from pg_namespace where oid = fn.pronamespace), fn.proname,
    (select string_agg(format('($1)[%s]::%s', i, format_type(t, null)), ', ' order by i)
       from unnest(fn.proargtypes::oid[]) with ordinality a(t, i)
      where i <= jsonb_array_length(job.arguments)));
  arguments := array(select code.argument_text(job.arguments -> (i::integer - 1), t)
                       from unnest(fn.proargtypes::oid[]) with ordinality a(t, i)
                      where i <= jsonb_array_length(job.arguments) order by i);
  return next;
end;
$$;

create or replace function code.finish_run(
  run_id bigint, status text, started_at timestamptz, rows_returned bigint default null, rows_affected bigint default null,
  error_sqlstate text default null, error_message text default null, error_detail text default null,
  error_hint text default null, error_context text default null, reject_reason text default null)
  returns void
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run            data.job_runs;
  retries        integer;
  current_status text;
begin
  -- By primary key only, the status checked here (see the top of this file).
  execute 'select r.status from data.job_runs r where r.id = $1 for update' into current_status using finish_run.run_id;
  if current_status is distinct from 'running' then
    perform code.fail('HC303', format('run %s is no longer running here (its lease expired)', finish_run.run_id));
  end if;
  execute 'update data.job_runs r
               set status = $2, started_at = $3, finished_at = clock_timestamp(), rows_returned = $4, rows_affected = $5,
                   error_sqlstate = $6, error_message = left($7, 10000), error_detail = left($8, 10000),
                   error_hint = left($9, 10000), error_context = left($10, 10000), reject_reason = $11
             where r.id = $1
            returning *'
     into run
    using finish_run.run_id, finish_run.status, finish_run.started_at, finish_run.rows_returned, finish_run.rows_affected,
          finish_run.error_sqlstate, finish_run.error_message, finish_run.error_detail, finish_run.error_hint,
          finish_run.error_context, finish_run.reject_reason;
  if run.status in ('failed', 'timed_out') then
    select (j.options->>'retries')::integer into retries from data.jobs j where j.id = run.job_id;
    if run.attempt <= coalesce(retries, 0) then
      perform code.queue_retry(run.job_id, run.scheduled_for, run.attempt + 1);
    end if;
    perform code.count_failure(run);
  elsif run.status = 'succeeded' then
    -- Written only when there is a count to reset: most runs succeed after successes.
    update data.jobs j set consecutive_failures = 0 where j.id = run.job_id and j.consecutive_failures > 0;
  end if;
  perform code.log_run_event(run.id, run.job_id, run.status);  -- announced by the executor after the commit
end;
$$;

-- Records a run whose transaction failed outside the job's own error handling (a cancel that
-- came between the job and its record, say): `cancelled` if it was asked to stop, else `failed`.
-- Decided by the run's state, never by the error's SQLSTATE. `started_at`: when the executor sent
-- the run (its own record of the start was rolled back with the rest). Only this claim of the
-- run (its token) is recorded: HC302 otherwise.
create or replace function code.finish_interrupted(run_id bigint, claim_token uuid, started_at timestamptz,
                                                   error_sqlstate text, error_message text)
  returns text
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  status text := case when code.cancel_requested(run_id) then 'cancelled' else 'failed' end;
  ours   boolean;
begin
  -- By id, planned with it (code.start_run).
  execute 'select exists (select from data.job_runs r where r.id = $1 and r.claim_token = $2)' into ours
    using finish_interrupted.run_id, finish_interrupted.claim_token;
  if claim_token is null or not ours then
    perform code.fail('HC302', format('run %s is not this claim of it: nothing recorded', run_id));
  end if;
  perform code.finish_run(run_id, status, started_at, error_sqlstate => error_sqlstate, error_message => error_message);
  return status;
end;
$$;

-- Counts a failed (or timed out) run against its job, and pauses the job when the count reaches
-- its max_consecutive_failures: no retry or occurrence is left due, and the job says why.
create or replace function code.count_failure(run data.job_runs)
  returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  job record;
begin
  update data.jobs j set consecutive_failures = j.consecutive_failures + 1
   where j.id = run.job_id
  returning j.consecutive_failures as failures, (j.options->>'max_consecutive_failures')::integer as most, j.enabled into job;
  if job.most is not null and job.failures >= job.most and job.enabled then
    update data.jobs j
       set enabled = false, next_run_at = null, extra_run_at = null, retry_at = null, retry_scheduled_for = null,
           retry_attempt = null, updated_at = now(),
           paused_reason = format('paused after %s failures in a row (max_consecutive_failures); the last: run %s, %s',
                                  job.failures, run.id, coalesce(run.error_sqlstate, run.status))
     where j.id = run.job_id;
  end if;
end;
$$;

-- Queue the next attempt of an occurrence, after exponential backoff, if the job has none queued.
-- The next attempt waits its delay from now, when the failure is recorded: not from the start of
-- the transaction that ran the attempt, which would shorten the delay by the attempt's duration.
create or replace function code.queue_retry(job_id bigint, scheduled_for timestamptz, next_attempt integer,
                                            lost boolean default false)
  returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  update data.jobs j
     set retry_at = clock_timestamp() + make_interval(secs => (j.options->>'retry_delay_seconds')::numeric * 2 ^ (next_attempt - 2)),
         retry_scheduled_for = scheduled_for,
         retry_attempt = next_attempt,
         retry_lost = lost
   where j.id = job_id and j.retry_at is null and (j.enabled or j.schedule is null);
  select code.notify_jobs_changed();
$$;

-- Whether the run is still running: read under the row's lock, in the caller's transaction, so
-- a concurrent expiry of the lease (which marks it lost) is seen.
create or replace function code.run_is_running(run_id bigint)
  returns boolean
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  running boolean;
begin
  -- By id, planned with it (code.start_run).
  execute 'select r.status = $2 from data.job_runs r where r.id = $1 for update' into running using run_is_running.run_id, 'running';
  return coalesce(running, false);
end;
$$;

-- Pausing or unscheduling a job cancels its running runs: a request per run, which a run not
-- yet started finds in code.start_run, and a notification (empty, like every other) on which
-- executors cancel the backends running them (executor.cancel_requested_runs).
create or replace function code.request_cancel(job_id bigint)
  returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
  set plan_cache_mode = force_custom_plan  -- the partitions from code.running_floor() on
as $$
declare
  floor constant bigint := code.running_floor();
begin
  insert into data.cancel_requests (run_id)
  select r.id from data.job_runs r where r.job_id = request_cancel.job_id and r.status = 'running' and r.id >= floor
  on conflict do nothing;
  if found then
    perform pg_notify('hardcron_runs_cancelled', '');
  end if;
end;
$$;

-- Whether the run was asked to stop: its cancel then reads `cancelled`, not `timed_out`.
create or replace function code.cancel_requested(run_id bigint)
  returns boolean
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select exists (select from data.cancel_requests c where c.run_id = cancel_requested.run_id) $$;

-- The transactions running this executor's runs that were asked to stop and not yet signalled:
-- the transaction ids holding their rows (code.start_run locks a run's row for its whole
-- transaction). A backend is then found by the transaction it is in, never by a connection that
-- may have moved on to another run.
create or replace function code.cancel_targets(executor_id text)
  returns table (run_id bigint, locker xid)
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
  set plan_cache_mode = force_custom_plan  -- the partitions from code.running_floor() on
as $$
declare
  floor constant bigint := code.running_floor();
begin
  return query
  select r.id, r.xmax
    from data.cancel_requests c join data.job_runs r on r.id = c.run_id
   where r.executor_id = cancel_targets.executor_id and r.status = 'running' and c.signalled_at is null and r.id >= floor;
end;
$$;

-- Records that the backend running the run is being signalled (see data.cancel_requests).
create or replace function code.cancel_signalled(run_id bigint)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ update data.cancel_requests c set signalled_at = now() where c.run_id = cancel_signalled.run_id $$;

-- Cancels one running run (api.cancel_run), by the rule of code.job_to_change: the caller may
-- when it has the run's owner (the job's), and sees it when it has that or its function's owner.
-- Another owner's run and a missing one fail alike, after the same statements and calls: the
-- caller's roles are computed before the run is looked up, and the lookup compares names only.
-- The run ends `cancelled` and is not retried, as when its job is paused (code.request_cancel).
create or replace function code.request_cancel_run(run_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  roles constant text[] := code.caller_roles();
  run data.job_runs;
begin
  -- Never locked: a running run's own transaction holds its row until the run ends.
  -- (Security definer and planned once: the lookup by id reads one partition's index per
  -- partition; a user's cancel is rare, and its cost does not depend on what the caller sees.)
  select * into run from data.job_runs r
   where r.id = request_cancel_run.run_id and array[r.owner, r.function_owner] && roles;
  if run.id is null then
    perform code.fail('HC211', format('run %s not found', coalesce(request_cancel_run.run_id::text, 'NULL')));
  end if;
  if not run.owner = any (roles) then
    perform code.fail('HC212', format('run %s belongs to %s: only its owner and members of that role may cancel it',
                                      run.id, quote_ident(run.owner)));
  end if;
  if run.status <> 'running' then
    perform code.fail('HC217', format('run %s is not running: it is %s', run.id, run.status),
                      'Only a running run can be cancelled; pause the job (api.pause_job) to stop its next runs.');
  end if;
  -- If the run ends meanwhile, the request is left unused, like those of code.request_cancel.
  insert into data.cancel_requests (run_id) values (run.id) on conflict do nothing;
  if found then
    perform pg_notify('hardcron_runs_cancelled', '');
  end if;
  return run.id;
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.start_run(bigint,text,uuid) to %I', db || '$api');
  execute format('grant execute on function code.finish_run(bigint,text,timestamp with time zone,bigint,bigint,text,text,text,text,text,text) to %I', db || '$api');
  execute format('grant execute on function code.run_is_running(bigint) to %I', db || '$api');
  execute format('grant execute on function code.finish_interrupted(bigint,uuid,timestamp with time zone,text,text) to %I', db || '$api');
  execute format('grant execute on function code.cancel_requested(bigint) to %I', db || '$api');
  execute format('grant execute on function code.cancel_targets(text) to %I', db || '$api');
  execute format('grant execute on function code.cancel_signalled(bigint) to %I', db || '$api');
  execute format('grant execute on function code.request_cancel_run(bigint) to %I', db || '$api');
end;
$grants$;
