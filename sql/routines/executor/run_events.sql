-- Pruning the run event log, in bounded chunks.

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
  execute format('grant execute on function executor.prune_run_events(integer) to %I', db || '$executor');
end;
$grants$;
