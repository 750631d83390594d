-- Who sees which rows of data.jobs and data.job_runs (migration 0016): the row security
-- policies. $code, which owns the logic, reads and writes every row; $api, which owns the views,
-- sees the rows of the calling user: a job or run whose owner, or whose function's owner, it has
-- USAGE on (code.caller_may_see, inlined into the policy; a superuser has every role). That is
-- the one rule of visibility: every view of schema api that shows jobs or runs applies it
-- through these policies.

do $policies$
declare
  db constant text := current_database();
  tab text;
begin
  foreach tab in array array['jobs', 'job_runs'] loop
    execute format('drop policy if exists hardcron_code on data.%I', tab);
    execute format('create policy hardcron_code on data.%I to %I using (true) with check (true)', tab, db || '$code');
    execute format('drop policy if exists hardcron_visible on data.%I', tab);
    execute format('create policy hardcron_visible on data.%I for select to %I
                      using (code.caller_may_see(owner, function_owner))', tab, db || '$api');
  end loop;
end;
$policies$;
