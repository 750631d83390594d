-- The roles that have ever owned a job or its function: the runs a caller may see are those of
-- these roles, so a caller who has none of them sees no run, which code.caller_sees_runs tells
-- with an index probe per role instead of a probe of every partition's owner indexes. Rows are
-- added when a job is scheduled or changed (code/jobs.sql) and never removed: a role in it may
-- have no run left, and the view then reads on and finds none.

select set_config('role', current_database() || '$data', true);
create table data.history_roles (
  role text primary key check (char_length(role) between 1 and 63)
);
insert into data.history_roles (role)
select owner from data.jobs union select function_owner from data.jobs
union select owner from data.job_runs union select function_owner from data.job_runs;
reset role;

do $grants$
begin
  execute format('grant select, insert on data.history_roles to %I', current_database() || '$code');
end;
$grants$;
