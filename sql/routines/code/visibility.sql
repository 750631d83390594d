-- Pages that cost what they return. The views api.jobs and api.job_runs read their rows through
-- the row security policies of data/row_security.sql, and are merged into the query that reads
-- them: a page of 20 in primary key order reads the index in that order and stops after 20 rows
-- the caller sees. A caller who sees none would read every row to find that out; these
-- functions tell it once per statement, from the indexes on the owner columns (a probe per role
-- and index), and the views then read nothing at all ("One-Time Filter").
--
-- The same comparison as the policies: owner or function owner among code.caller_roles().

-- Whether the caller sees any job. Planned with the caller's roles each time: a cached generic
-- plan for `owner = any ($1)` is a sequential scan of every job (seen in bench:history), where the
-- roles' own statistics make it an index probe.
create or replace function code.caller_sees_jobs()
  returns boolean
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
  set plan_cache_mode = force_custom_plan
as $$
declare
  roles constant text[] := code.caller_roles();
begin
  return exists (select from data.jobs j where j.owner = any (roles))
      or exists (select from data.jobs j where j.function_owner = any (roles));
end;
$$;

-- Whether the caller may see any run: whether it has a role that ever owned a job or its
-- function (data.history_roles; runs outlive their jobs, so the jobs cannot tell). A probe per
-- role; probing the runs' owner indexes cost a probe per partition and index.
create or replace function code.caller_sees_runs()
  returns boolean
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  roles constant text[] := code.caller_roles();
begin
  return exists (select from data.history_roles h where h.role = any (roles));
end;
$$;


-- Called in the views, so executed as whoever reads them (like code.caller_roles).
do $grants$
declare
  db constant text := current_database();
  reader text;
begin
  foreach reader in array array['$anonymous', '$api', '$authenticator', '$client', '$executor'] loop
    execute format('grant execute on function code.caller_sees_jobs() to %I', db || reader);
    execute format('grant execute on function code.caller_sees_runs() to %I', db || reader);
  end loop;
end;
$grants$;
