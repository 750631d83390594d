-- The GraphQL server's own API (schema server, owned by $api, usable by $authenticator only):
-- which run events exist past a cursor. It returns event ids only; subscribers then read the
-- events through api.job_run_events as themselves.

create or replace function server.run_events_bounds(out oldest bigint, out newest bigint)
  language sql
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select * from code.run_events_bounds() $$;

create or replace function server.run_events_since(after bigint, missing bigint[], max_rows integer)
  returns table (id bigint)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return query select s.id from code.run_events_since(after, missing, max_rows) s;
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function server.run_events_bounds() to %I', db || '$authenticator');
  execute format('grant execute on function server.run_events_since(bigint,bigint[],integer) to %I', db || '$authenticator');
end;
$grants$;
