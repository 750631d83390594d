-- Run history upkeep (code/retention.sql): partitions opened and created ahead, retention
-- applied. The executor calls it every HARDCRON_EXECUTOR_HISTORY_SECONDS on a connection of its
-- own; one executor at a time does the work.

create or replace function executor.maintain_run_history()
  returns table (action text, partition_name text, rows_before bigint, rows_kept bigint)
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from code.maintain_run_history(now()) $$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function executor.maintain_run_history() to %I', db || '$executor');
end;
$grants$;
