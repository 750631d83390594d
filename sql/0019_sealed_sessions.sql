-- Sealed sessions: nothing a user plants runs inside hardcron's own connections, and no error a
-- job raises can steer the executor.
--
-- 1. The two login roles carry the pinned search_path, so that a session that did not pin it in
--    its startup packet (a connection pooler that drops startup options, say) still never looks
--    in a schema a user can create: `public` (which any role with CREATE on the database can make
--    again) or one named after the role (the "$user" entry of PostgreSQL's default path).
-- 2. executor.run decides what follows a job's error by re-reading the run's state, never by its
--    SQLSTATE: a job that raised HC303 ("no longer running") left its run running for ever.

do $roles$
declare
  db constant text := current_database();
begin
  execute format('alter role %I set search_path = pg_catalog, pg_temp', db || '$authenticator');
  execute format('alter role %I set search_path = pg_catalog, pg_temp', db || '$executor');
end;
$roles$;

select set_config('role', current_database() || '$code', true);

-- Whether the run is still running: read under the row's lock, in the caller's transaction, so
-- a concurrent expiry of the lease (which marks it lost) is seen.
create function code.run_is_running(run_id bigint)
  returns boolean
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select coalesce((select r.status = 'running' from data.job_runs r where r.id = run_is_running.run_id for update), false)
$$;

do $grants$
begin
  execute format('grant execute on function code.run_is_running(bigint) to %I', current_database() || '$api');
end;
$grants$;

reset role;
select set_config('role', current_database() || '$api', true);

create function executor.run_is_running(run_id bigint)
  returns boolean
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.run_is_running(run_id) $$;

-- executor.run as in sql/0015, but an error's SQLSTATE no longer decides whether the run is
-- still this executor's.
create or replace function executor.run(run_id bigint, executor_id text)
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
      -- In the owner's frame (sql/0015): the call, its casts and defaults, and its deferred
      -- triggers, where no code can change roles.
      execute format('select frames.%I($1, $2)', plan.owner) into returned using plan.call_sql, plan.arguments;
      perform set_config('role', 'none', true);
      status := 'succeeded';
      after := executor.tuples_changed();
      perform executor.finish_run(run_id, status, plan.started_at, returned, after - before);
    exception
      -- Whatever the error, its SQLSTATE decides nothing: the job may raise any code, hardcron's
      -- own included. What happens next is decided by the run's state, re-read under lock.
      when others or assert_failure or query_canceled then
        get stacked diagnostics state = returned_sqlstate, msg = message_text, detail = pg_exception_detail,
                                hint = pg_exception_hint, context = pg_exception_context;
        if executor.run_is_running(run_id) then
          -- A cancel (the run's statement_timeout, or the executor's watchdog) is labelled
          -- timed_out; the label changes nothing else (both outcomes follow the retry policy).
          status := case when state = '57014' then 'timed_out' else 'failed' end;
          perform executor.finish_run(run_id, status, plan.started_at, error_sqlstate => state, error_message => msg,
                                      error_detail => nullif(detail, ''), error_hint => nullif(hint, ''),
                                      error_context => nullif(context, ''));
        else
          status := 'lost';  -- no longer ours: the job's effects were rolled back with the subtransaction
        end if;
    end;
  end if;
  lateness_ms := extract(epoch from plan.started_at - plan.scheduled_for) * 1000;
  duration_ms := extract(epoch from clock_timestamp() - plan.started_at) * 1000;
  -- Nothing the job did to the session reaches the next run on this connection, and no cursor
  -- it declared WITH HOLD is left to run its query at COMMIT, as the executor.
  execute 'close all';
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
begin
  execute format('grant execute on function executor.run_is_running(bigint) to %I', current_database() || '$executor');
end;
$grants$;

reset role;
