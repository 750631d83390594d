-- Visibility by row security: data.jobs and data.job_runs show $api (the owner of the views)
-- only the rows the calling user may see (the policies are in sql/routines/data/row_security.sql,
-- after the functions they call). Until now each view filtered its rows itself, as a
-- security_barrier view; PostgreSQL never merges such a view into the query that reads it, so
-- the query's ORDER BY and LIMIT could not reach the tables: a page of 20 cost as much as
-- every row the caller could see (and the newest run of each). A policy protects the rows the
-- same way (a caller's own conditions, leaky functions included, are applied after it), and the
-- views, no longer barriers, are merged: a page reads an index in order and stops.

select set_config('role', current_database() || '$data', true);

-- The jobs a caller sees by its function owner's role (code.visible_job_ids): the owner's is jobs_owner.
create index jobs_function_owner on data.jobs (function_owner);

alter table data.jobs enable row level security;
alter table data.job_runs enable row level security;
reset role;

-- The policies name code.caller_roles(), and naming a function needs USAGE on its schema (they
-- are evaluated as $api, which may execute it).
do $grants$
begin
  execute format('grant usage on schema code to %I', current_database() || '$data');
end;
$grants$;
