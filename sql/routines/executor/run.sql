-- Running one claimed run as its owner: every check repeated (code.start_run), the call made in
-- the owner's frame, and the outcome recorded in the same transaction as the job's effects.

create or replace function executor.start_run(run_id bigint, executor_id text, claim_token uuid)
  returns table (job_id bigint, scheduled_for timestamptz, started_at timestamptz, done_status text,
                 owner text, call_sql text, arguments text[])
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return query select * from code.start_run(run_id, executor_id, claim_token);
end;
$$;

create or replace function executor.finish_run(
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

-- Tuples inserted, updated and deleted in users' tables (oids from FirstNormalObjectId on),
-- hardcron's own tables excluded, as counted by this backend's statistics. These "xact" counters
-- can also hold what the backend's earlier transactions did and it has not reported yet (seen on
-- PostgreSQL 15), so a run's count is the difference between before and after its call.
create or replace function executor.tuples_changed()
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

create or replace function executor.run_is_running(run_id bigint)
  returns boolean
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.run_is_running(run_id) $$;

-- What follows a job's error is decided by re-reading the run's state (executor.run_is_running),
-- never by the error's SQLSTATE: a job can raise any SQLSTATE, hardcron's own included.
create or replace function executor.run(run_id bigint, executor_id text, claim_token uuid)
  returns table (job_id bigint, status text, lateness_ms double precision, duration_ms double precision)
  language plpgsql
  security invoker
  set search_path = pg_catalog, pg_temp
as $$
declare
  plan     record;
  returned bigint;
  before   bigint;
  state    text; msg text; detail text; hint text; context text;
begin
  select * into strict plan from executor.start_run(run_id, executor_id, claim_token) p;
  job_id := plan.job_id;
  status := plan.done_status;
  if status is null then
    begin
      before := executor.tuples_changed();
      perform set_config('role', plan.owner, true);  -- SET LOCAL ROLE, without building SQL
      -- In the owner's frame (mgr/frames.sql): the call, its casts and defaults, and its deferred
      -- triggers, where no code can change roles.
      execute format('select frames.%I($1, $2)', plan.owner) into returned using plan.call_sql, plan.arguments;
      perform set_config('role', 'none', true);
      status := 'succeeded';
      perform executor.finish_run(run_id, status, plan.started_at, returned, executor.tuples_changed() - before);
    exception
      -- Whatever the error, its SQLSTATE decides nothing: the job may raise any code, hardcron's
      -- own included. What happens next is decided by the run's state, re-read under lock.
      when others or assert_failure or query_canceled then
        get stacked diagnostics state = returned_sqlstate, msg = message_text, detail = pg_exception_detail,
                                hint = pg_exception_hint, context = pg_exception_context;
        if executor.run_is_running(run_id) then
          -- A cancel (the run's statement_timeout, or the executor's watchdog) is labelled
          -- timed_out; the label changes nothing else (both outcomes follow the retry policy).
          -- A run asked to stop (its job paused or unscheduled) is `cancelled`, and not retried.
          status := case when executor.cancel_requested(run_id) then 'cancelled' when state = '57014' then 'timed_out' else 'failed' end;
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
  -- Nothing the job did to the session reaches the next run on this connection (each run is its
  -- own transaction: transaction-scoped state such as large-object descriptors, SET CONSTRAINTS
  -- and pending notifications ends with it; this is the session-scoped rest, as DISCARD ALL,
  -- which cannot run inside a function, would do it), and no cursor it declared WITH HOLD is
  -- left to run its query at COMMIT, as the executor.
  execute 'close all';
  reset all;
  perform pg_advisory_unlock_all();
  unlisten *;
  discard temp;
  discard sequences;
  deallocate all;
  -- A seed the job set would make the next owner's random() predictable: reseed from the
  -- server's strong random source (gen_random_uuid), 52 bits mapped onto setseed's [-1, 1].
  perform setseed(((('x' || substr(md5(gen_random_uuid()::text), 1, 13))::bit(52)::bigint)::float8 / 4503599627370496.0) * 2 - 1);
  return next;
end;
$$;

-- Records a run whose transaction failed outside the job's own error handling (code.finish_interrupted).
create or replace function executor.finish_interrupted(run_id bigint, claim_token uuid, started_at timestamptz,
                                                       error_sqlstate text, error_message text)
  returns text
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.finish_interrupted(run_id, claim_token, started_at, error_sqlstate, error_message) $$;

create or replace function executor.cancel_requested(run_id bigint)
  returns boolean
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.cancel_requested(run_id) $$;

-- Cancels the backends running this executor's runs that were asked to stop, found by the
-- transaction holding each run's row. Security invoker: $executor signals its own backends.
create or replace function executor.cancel_requested_runs(executor_id text)
  returns integer
  language plpgsql
  security invoker
  set search_path = pg_catalog, pg_temp
as $$
declare
  target record;
  n integer := 0;
begin
  for target in
    select t.run_id, a.pid
      from executor.cancel_targets(executor_id) t
      join pg_stat_activity a on a.backend_xid = t.locker and a.usename = current_user
  loop
    perform executor.cancel_signalled(target.run_id);  -- first, so that no later call signals it again
    perform pg_cancel_backend(target.pid);
    n := n + 1;
  end loop;
  return n;
end;
$$;

create or replace function executor.cancel_signalled(run_id bigint)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.cancel_signalled(run_id) $$;

create or replace function executor.cancel_targets(executor_id text)
  returns table (run_id bigint, locker xid)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from code.cancel_targets(executor_id) $$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function executor.start_run(bigint,text,uuid) to %I', db || '$executor');
  execute format('grant execute on function executor.finish_run(bigint,text,timestamp with time zone,bigint,bigint,text,text,text,text,text) to %I', db || '$executor');
  execute format('grant execute on function executor.tuples_changed() to %I', db || '$executor');
  execute format('grant execute on function executor.run_is_running(bigint) to %I', db || '$executor');
  execute format('grant execute on function executor.run(bigint,text,uuid) to %I', db || '$executor');
  execute format('grant execute on function executor.cancel_requested(bigint) to %I', db || '$executor');
  execute format('grant execute on function executor.cancel_requested_runs(text) to %I', db || '$executor');
  execute format('grant execute on function executor.cancel_targets(text) to %I', db || '$executor');
  execute format('grant execute on function executor.cancel_signalled(bigint) to %I', db || '$executor');
  execute format('grant execute on function executor.finish_interrupted(bigint,uuid,timestamp with time zone,text,text) to %I', db || '$executor');
end;
$grants$;
