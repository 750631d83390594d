-- The run event log: announcing what the executor's transactions logged, and pruning it in
-- bounded chunks.

-- Sent on the control connection once some of the executor's run or claim transactions have
-- committed (they log their events without notifying: see code.log_run_event). The payload is
-- empty, like every other notification on the channel.
create or replace function executor.announce_run_events()
  returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$ select pg_notify('hardcron_run_events', '') $$;

create or replace function executor.prune_run_events(max_rows integer)
  returns integer
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.prune_run_events(max_rows) $$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function executor.announce_run_events() to %I', db || '$executor');
  execute format('grant execute on function executor.prune_run_events(integer) to %I', db || '$executor');
end;
$grants$;
