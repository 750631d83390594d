-- data.history_roles (migration 0017) kept by a trigger on data.jobs: whatever writes a job
-- (scheduling, an update that changes its function's owner, a restore or a hand fix as the
-- administrator), its owner and its function's owner are recorded, so that no run of theirs is
-- hidden by code.caller_sees_runs. Runs take their roles from their job.

create or replace function data.remember_history_roles()
  returns trigger
  language plpgsql
  security definer  -- as $data: whoever writes a job need not write this table
  set search_path = pg_catalog, pg_temp
as $$
begin
  insert into data.history_roles (role) values (new.owner), (new.function_owner) on conflict do nothing;
  return null;
end;
$$;

create or replace trigger jobs_remember_roles
  after insert or update of owner, function_owner on data.jobs
  for each row execute function data.remember_history_roles();

do $grants$
begin
  execute 'revoke all on function data.remember_history_roles() from public';
end;
$grants$;
