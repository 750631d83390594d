-- The executor process's API (schema executor, owned by $api, usable by $executor only):
-- claiming due runs, and how long to sleep until the next one is due.

create or replace function executor.claim_runs(executor_id text, max_runs integer, owners text[] default '{}',
                                               room integer[] default '{}', per_owner integer default 10000)
  returns table (run_id bigint, job_id bigint, timeout_ms integer, owner text, claim_token uuid)
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from code.claim_runs(executor_id, max_runs, owners, room, per_owner) $$;

create or replace function executor.next_due_at()
  returns timestamptz
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.next_due_at() $$;

create or replace function executor.due_backlog()
  returns bigint
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select code.due_backlog() $$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function executor.claim_runs(text,integer,text[],integer[],integer) to %I', db || '$executor');
  execute format('grant execute on function executor.next_due_at() to %I', db || '$executor');
  execute format('grant execute on function executor.due_backlog() to %I', db || '$executor');
end;
$grants$;
