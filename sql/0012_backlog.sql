-- How many occurrences are due and not yet claimed: the executor's backlog, for its metrics.
-- Index-backed (jobs_due) and bounded, so a scrape costs little even with a large backlog.

select set_config('role', current_database() || '$code', true);

create function code.due_backlog()
  returns bigint
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select count(*) from (
    select from data.jobs j
     where least(j.next_run_at, j.extra_run_at, j.retry_at) <= now()
     limit 1000000
  ) due
$$;

do $grants$
begin
  execute format('grant execute on function code.due_backlog() to %I', current_database() || '$api');
end;
$grants$;

select set_config('role', current_database() || '$api', true);

create function executor.due_backlog()
  returns bigint
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.due_backlog() $$;

do $grants$
begin
  execute format('grant execute on function executor.due_backlog() to %I', current_database() || '$executor');
end;
$grants$;

reset role;
