-- The executor's side of the database: claiming due occurrences, running one as its owner with
-- every check repeated, and recording the outcome in the same transaction as the job's effects.
--
-- Protocol (see DESIGN.md, "Executor protocol"):
--   1. executor.claim_runs(executor_id, n) — one short transaction: locks due jobs with
--      FOR UPDATE SKIP LOCKED, advances their schedule, and inserts `running` runs with a lease.
--   2. executor.run(run_id) — inside a batch transaction, one call per run: re-checks
--      eligibility, SET LOCAL ROLE <owner>, calls the function with its arguments as a
--      parameter, fires deferred constraints, and records the terminal status. A failing job
--      rolls back to the run's own subtransaction; its run record keeps the error.
--   3. Executors renew a lease (data.executors) from a connection of their own; the `running`
--      runs of an executor whose lease expired (it died) become `lost`, and are retried.
--
-- Every state change of a run sends NOTIFY hardcron_run_events with ids and status only.

select set_config('role', current_database() || '$code', true);

create function code.notify_run(run_id bigint, job_id bigint, status text)
  returns void
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- Built with format: ids are numbers and status one of a closed set, so no escaping is needed.
  perform pg_notify('hardcron_run_events', format('{"run_id": %s, "job_id": %s, "status": "%s"}', run_id, job_id, status));
end;
$$;

-- Queue the next attempt of an occurrence, after exponential backoff, if the job has none queued.
create function code.queue_retry(job_id bigint, scheduled_for timestamptz, next_attempt integer)
  returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$
  update data.jobs j
     set retry_at = now() + make_interval(secs => (j.options->>'retry_delay_seconds')::numeric * 2 ^ (next_attempt - 2)),
         retry_scheduled_for = scheduled_for,
         retry_attempt = next_attempt
   where j.id = job_id and j.retry_at is null and (j.enabled or j.schedule is null);
  select code.notify_jobs_changed();
$$;

-- An executor announces itself and renews its lease; `lease` is how long it may stay silent.
create function code.renew_executor_lease(executor_id text, lease interval)
  returns void
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if executor_id is null or executor_id !~ '^[A-Za-z0-9_.:-]{1,100}$' then
    perform code.fail('HC301', 'executor_id must be 1 to 100 letters, digits or _ . : -');
  end if;
  if lease is null or lease < interval '1 second' or lease > interval '1 hour' then
    perform code.fail('HC301', 'the executor lease must be from 1 second to 1 hour');
  end if;
  insert into data.executors as e (id, lease_expires_at) values (executor_id, now() + lease)
  on conflict (id) do update set lease_expires_at = excluded.lease_expires_at;
end;
$$;

-- Runs of executors that stopped renewing their lease become `lost`. A lost attempt is retried
-- (an executor's death is not the job's failure) up to three times beyond the job's own retries.
create function code.expire_leases()
  returns integer
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run record;
  n integer := 0;
begin
  delete from data.executors e where e.lease_expires_at < now();
  for run in
    update data.job_runs r set status = 'lost', finished_at = now()
     where r.status = 'running'
       and not exists (select from data.executors e where e.id = r.executor_id)
    returning r.id, r.job_id, r.scheduled_for, r.attempt
  loop
    n := n + 1;
    perform code.notify_run(run.id, run.job_id, 'lost');
    if run.attempt <= coalesce((select (j.options->>'retries')::integer from data.jobs j where j.id = run.job_id), 0) + 3 then
      perform code.queue_retry(run.job_id, run.scheduled_for, run.attempt + 1);
    end if;
  end loop;
  return n;
end;
$$;

-- A stopping executor leaves; its runs, if any are still running, are lost at once.
create function code.release_executor(executor_id text)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  delete from data.executors e where e.id = executor_id;
  select code.expire_leases();
$$;

-- The newest occurrence of a cron at or before `now`, starting from the due occurrence `due`
-- (bounded: at most 10,000 steps), and the one after it.
create function code.catch_up(spec code.cron_spec, zone text, due timestamptz, now_at timestamptz,
                              out newest timestamptz, out following timestamptz, out missed integer)
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  newest := due;
  missed := 0;
  following := code.cron_next(spec, zone, due);
  while following <= now_at and missed < 10000 loop
    newest := following;
    missed := missed + 1;
    following := code.cron_next(spec, zone, following);
  end loop;
end;
$$;

-- Claims up to max_runs due occurrences for an executor. Returns them in the order to run them,
-- with each run's timeout. Occurrences the policies skip are recorded as `skipped`, not returned.
create function code.claim_runs(executor_id text, max_runs integer)
  returns table (run_id bigint, job_id bigint, timeout_ms integer)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job         data.jobs;
  due_at      timestamptz;
  occurrence  timestamptz;
  attempt_no  integer;
  next_at     timestamptz;
  catch       record;
  spec        code.cron_spec;
  skip_reason text;
  status      text;
  new_run     bigint;
  timeout     interval;
begin
  if max_runs is null or max_runs < 1 or max_runs > 10000 then
    perform code.fail('HC301', 'max_runs must be from 1 to 10000');
  end if;
  if not exists (select from data.executors e where e.id = claim_runs.executor_id and e.lease_expires_at > now()) then
    perform code.fail('HC302', format('executor %s has no live lease: renew it before claiming', claim_runs.executor_id));
  end if;
  perform code.expire_leases();

  for job in
    select * from data.jobs j
     where (j.next_run_at is not null or j.extra_run_at is not null or j.retry_at is not null)
       and least(j.next_run_at, j.extra_run_at, j.retry_at) <= now()
       -- overlap 'queue': not while a run is running (and not taking a place in the batch)
       and not (j.options->>'overlap' = 'queue'
                and exists (select from data.job_runs r where r.job_id = j.id and r.status = 'running'))
     order by least(j.next_run_at, j.extra_run_at, j.retry_at), j.id
     limit max_runs
     for update skip locked
  loop
    due_at := least(job.next_run_at, job.extra_run_at, job.retry_at);
    attempt_no := 1;
    skip_reason := null;
    next_at := job.next_run_at;

    if job.retry_at = due_at then
      occurrence := job.retry_scheduled_for;
      attempt_no := job.retry_attempt;
      job.retry_at := null; job.retry_scheduled_for := null; job.retry_attempt := null;
    elsif job.extra_run_at = due_at then
      occurrence := job.extra_run_at;
      job.extra_run_at := null;
    else
      occurrence := job.next_run_at;
      if job.schedule is null then
        next_at := null;  -- a one-off job has run
      else
        spec := code.parse_cron(job.schedule);
        catch := code.catch_up(spec, job.time_zone, job.next_run_at, now());
        next_at := catch.following;
        case job.options->>'missed'
          when 'latest' then
            occurrence := catch.newest;
          when 'none' then
            occurrence := catch.newest;
            if occurrence < now() - interval '1 minute' then
              skip_reason := 'missed';
            end if;
          else  -- 'all': oldest first, keeping at most max_missed of the occurrences due
            for i in 1 .. catch.missed + 1 - (job.options->>'max_missed')::integer loop
              occurrence := code.cron_next(spec, job.time_zone, occurrence);
            end loop;
            next_at := code.cron_next(spec, job.time_zone, occurrence);
        end case;
      end if;
    end if;

    if skip_reason is null and job.options->>'overlap' = 'skip'
       and exists (select from data.job_runs r where r.job_id = job.id and r.status = 'running') then
      skip_reason := 'overlap';
    end if;

    update data.jobs j
       set next_run_at = next_at, extra_run_at = job.extra_run_at, retry_at = job.retry_at,
           retry_scheduled_for = job.retry_scheduled_for, retry_attempt = job.retry_attempt
     where j.id = job.id;

    timeout := make_interval(secs => (job.options->>'timeout_seconds')::numeric);
    status := case when skip_reason is null then 'running' else 'skipped' end;
    insert into data.job_runs as r (job_id, owner, function_owner, scheduled_for, status, attempt, executor_id, finished_at)
    values (job.id, job.owner, job.function_owner, occurrence, status, attempt_no, claim_runs.executor_id,
            case when status = 'skipped' then now() end)
    on conflict on constraint job_runs_one_per_occurrence do nothing
    returning r.id into new_run;
    continue when new_run is null;  -- this occurrence already has its run
    perform code.notify_run(new_run, job.id, status);
    if status = 'running' then
      run_id := new_run;
      job_id := job.id;
      timeout_ms := ceil(extract(epoch from timeout) * 1000)::integer;
      return next;
    end if;
  end loop;
end;
$$;

-- Starts a claimed run in the caller's (batch) transaction: re-checks eligibility now and
-- returns what the executor needs to make the call: the owner to become, the statement
-- (generated here from the catalog: qualified name, each argument cast to its parameter type
-- from a text[] parameter, so no argument text is ever part of SQL) and the arguments.
-- A refused run is recorded `rejected` with the generic reason, and nothing is returned.
create function code.start_run(run_id bigint, executor_id text)
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
  select * into run from data.job_runs r
   where r.id = start_run.run_id and r.status = 'running' and r.executor_id = start_run.executor_id;
  if run.id is null then
    perform code.fail('HC302', format('run %s is not a claimed run of this executor', start_run.run_id));
  end if;
  job_id := run.job_id;
  scheduled_for := run.scheduled_for;
  started_at := clock_timestamp();  -- recorded by finish_run: one write per run
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

-- Records the terminal status of a running run and what follows from it (job status, retry,
-- event). Raises HC303 if the run is no longer this executor's (its lease expired): the caller
-- then rolls back the job's effects.
create function code.finish_run(
  run_id bigint, status text, started_at timestamptz, rows_returned bigint default null, rows_affected bigint default null,
  error_sqlstate text default null, error_message text default null, error_detail text default null,
  error_hint text default null, error_context text default null, reject_reason text default null)
  returns void
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run     data.job_runs;
  retries integer;
begin
  update data.job_runs r
     set status = finish_run.status, started_at = finish_run.started_at, finished_at = clock_timestamp(),
         rows_returned = finish_run.rows_returned, rows_affected = finish_run.rows_affected,
         error_sqlstate = finish_run.error_sqlstate, error_message = left(finish_run.error_message, 10000),
         error_detail = left(finish_run.error_detail, 10000), error_hint = left(finish_run.error_hint, 10000),
         error_context = left(finish_run.error_context, 10000), reject_reason = finish_run.reject_reason
   where r.id = finish_run.run_id and r.status = 'running'
  returning * into run;
  if run.id is null then
    perform code.fail('HC303', format('run %s is no longer running here (its lease expired)', finish_run.run_id));
  end if;
  if run.status in ('failed', 'timed_out') then
    select (j.options->>'retries')::integer into retries from data.jobs j where j.id = run.job_id;
    if run.attempt <= coalesce(retries, 0) then
      perform code.queue_retry(run.job_id, run.scheduled_for, run.attempt + 1);
    end if;
  end if;
  perform code.notify_run(run.id, run.job_id, run.status);
end;
$$;

-- When is the next occurrence due? (index-backed; the executor sleeps until then)
create function code.next_due_at()
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

do $grants$
begin
  execute format('grant execute on function code.claim_runs(text, integer), code.expire_leases(), code.next_due_at(),
      code.renew_executor_lease(text, interval), code.release_executor(text),
      code.start_run(bigint, text), code.finish_run(bigint, text, timestamptz, bigint, bigint, text, text, text, text, text, text)
      to %I', current_database() || '$api');
end;
$grants$;

reset role;

-- Schema executor (owned by $api): the executor process's own API, and all it may execute.
select set_config('role', current_database() || '$api', true);
create schema executor;

create function executor.claim_runs(executor_id text, max_runs integer)
  returns table (run_id bigint, job_id bigint, timeout_ms integer)
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from code.claim_runs(executor_id, max_runs) $$;

create function executor.renew_lease(executor_id text, lease_seconds numeric)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.renew_executor_lease(executor_id, make_interval(secs => lease_seconds)) $$;

create function executor.release(executor_id text)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.release_executor(executor_id) $$;

create function executor.next_due_at()
  returns timestamptz
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.next_due_at() $$;

create function executor.start_run(run_id bigint, executor_id text)
  returns table (job_id bigint, scheduled_for timestamptz, started_at timestamptz, done_status text,
                 owner text, call_sql text, arguments text[])
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return query select * from code.start_run(run_id, executor_id);
end;
$$;

create function executor.finish_run(
  run_id bigint, status text, started_at timestamptz, rows_returned bigint default null, rows_affected bigint default null,
  error_sqlstate text default null, error_message text default null, error_detail text default null,
  error_hint text default null, error_context text default null)
  returns void
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  perform code.finish_run(run_id, status, started_at, rows_returned, rows_affected, error_sqlstate, error_message,
                          error_detail, error_hint, error_context);
end;
$$;

-- Tuples inserted, updated and deleted so far in this transaction in users' tables (oids from
-- FirstNormalObjectId on), hardcron's own tables excluded: their bookkeeping between two runs
-- does not move it, so one run's "after" is the next run's "before".
create function executor.tuples_changed()
  returns bigint
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  return (select coalesce(sum(pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid)
                              + pg_stat_get_xact_tuples_deleted(c.oid)), 0)::bigint
            from pg_class c
           where c.oid >= 16384 and c.relkind in ('r', 'p', 'm') and c.relnamespace <> 'data'::regnamespace);
end;
$$;

-- Runs one claimed run. SECURITY INVOKER on purpose: it executes as $executor and becomes the
-- job's owner for the call only (SET LOCAL ROLE is not allowed in security definer functions).
-- The call's effects and the run record share the subtransaction of the BEGIN … EXCEPTION block.
create function executor.run(run_id bigint, executor_id text)
  returns table (job_id bigint, status text, lateness_ms double precision, duration_ms double precision)
  language plpgsql
  security invoker
  set search_path = pg_catalog, pg_temp
as $$
declare
  plan     record;
  returned bigint;
  before   bigint;
  after    bigint;
  state    text; msg text; detail text; hint text; context text;
begin
  select * into strict plan from executor.start_run(run_id, executor_id) p;
  job_id := plan.job_id;
  status := plan.done_status;
  if status is null then
    begin
      -- The previous run of this transaction left its "after" here (see below); else measure.
      before := coalesce(nullif(current_setting('hardcron.tuples_changed', true), '')::bigint, executor.tuples_changed());
      perform set_config('role', plan.owner, true);  -- SET LOCAL ROLE, without building SQL
      execute plan.call_sql into returned using plan.arguments;
      -- Deferred triggers fire now, as the owner, not later at COMMIT as the executor.
      set constraints all immediate;
      perform set_config('role', 'none', true);
      status := 'succeeded';
      after := executor.tuples_changed();
      perform executor.finish_run(run_id, status, plan.started_at, returned, after - before);
    exception
      when query_canceled then
        status := 'timed_out';
        get stacked diagnostics msg = message_text;
        perform executor.finish_run(run_id, status, plan.started_at, error_sqlstate => '57014', error_message => msg);
      when others then
        get stacked diagnostics state = returned_sqlstate, msg = message_text, detail = pg_exception_detail,
                                hint = pg_exception_hint, context = pg_exception_context;
        if state = 'HC303' then
          status := 'lost';  -- no longer ours: the job's effects were rolled back with the subtransaction
        else
          status := 'failed';
          perform executor.finish_run(run_id, status, plan.started_at, error_sqlstate => state, error_message => msg,
                                      error_detail => nullif(detail, ''), error_hint => nullif(hint, ''),
                                      error_context => nullif(context, ''));
        end if;
    end;
  end if;
  lateness_ms := extract(epoch from plan.started_at - plan.scheduled_for) * 1000;
  duration_ms := extract(epoch from clock_timestamp() - plan.started_at) * 1000;
  -- Nothing the job did to the session reaches the next run on this connection.
  reset all;
  perform pg_advisory_unlock_all();
  unlisten *;
  discard temp;
  deallocate all;
  -- Set after the job and the reset, so the job cannot have changed it; transaction-local.
  -- Empty after a failed run: its rolled-back tuples still count, so the next run measures anew.
  perform set_config('hardcron.tuples_changed', coalesce(after::text, ''), true);
  return next;
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant usage on schema executor to %I', db || '$executor');
  execute format('grant execute on function executor.claim_runs(text, integer), executor.renew_lease(text, numeric),
      executor.release(text), executor.next_due_at(),
      executor.start_run(bigint, text), executor.finish_run(bigint, text, timestamptz, bigint, bigint, text, text, text, text, text),
      executor.tuples_changed(),
      executor.run(bigint, text) to %I', db || '$executor');
end;
$grants$;
reset role;
