-- The executor's lease: renewed from a connection of its own, released on a clean stop.

create or replace function executor.renew_lease(executor_id text, lease_seconds numeric)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.renew_executor_lease(executor_id, make_interval(secs => lease_seconds)) $$;

create or replace function executor.release(executor_id text)
  returns void
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.release_executor(executor_id) $$;

-- Runs that nobody is running become lost (code.sweep_runs); an executor sweeps at each lease
-- renewal with a grace of a third of its lease, at its start for its own id, and for a run whose
-- connection broke once it has a new one.
create or replace function executor.sweep_runs(grace_seconds numeric, own text default null, only_run bigint default null,
                                               only_token uuid default null)
  returns integer
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.sweep_runs(make_interval(secs => grace_seconds), own, only_run, only_token) $$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function executor.renew_lease(text,numeric) to %I', db || '$executor');
  execute format('grant execute on function executor.release(text) to %I', db || '$executor');
  execute format('grant execute on function executor.sweep_runs(numeric,text,bigint,uuid) to %I', db || '$executor');
end;
$grants$;
