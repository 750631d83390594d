-- Another owner's job or run id takes the same path as a missing one, in every api function and
-- view.
--
-- The messages were the same (HC211 "job N not found"), but not the work behind them: a row that
-- existed was checked for visibility (two calls of code.caller_has_role, each a security definer
-- call of code.caller()) and a missing one was not. Over a few thousand calls of
-- api.run_job_now, a foreign id took ~74 µs and a missing one ~21 µs, with no overlap: anyone
-- could tell which ids belong to other owners, and probe whether a given one still exists. The
-- views did the same per row.
--
-- Now visibility is decided against the caller's identity, which always exists: the names of
-- the roles whose privileges the caller has (code.caller_roles()) are computed once per
-- statement, before any job or run is read, whatever the id; a row is visible when its owner or
-- function owner is among them, a comparison with no call in it. job_to_change decides once,
-- after the one lookup. A job that is visible but not the caller's (HC212) may still take its
-- own path: that it exists is no secret to the caller.

select set_config('role', current_database() || '$code', true);

-- The roles whose privileges the caller has: those for which pg_has_role(caller, role, 'USAGE')
-- is true, as code.caller_has_role tells it for one role (the caller itself included; a role
-- that no longer exists is in no list). A superuser has every role. For anyone else the
-- candidates are the roles the caller belongs to through any chain of grants (whatever their
-- INHERIT) and pg_database_owner (implied for the database's owner); pg_has_role keeps those
-- PostgreSQL says the caller has. So the cost follows the caller's memberships, not the number
-- of roles on the server (~20 µs, against ~12 µs for one caller_has_role).
create function code.caller_roles()
  returns text[]
  language plpgsql
  stable
  security definer  -- so that it may name code.caller(); the caller is not current_user anyway
  set search_path = pg_catalog, pg_temp
as $$
declare
  me constant oid := to_regrole(quote_ident(code.caller()));
begin
  if (select r.rolsuper from pg_roles r where r.oid = me) then
    return array(select r.rolname::text from pg_roles r);
  end if;
  return array(
    with recursive reach(oid) as (
      values (me), ('pg_database_owner'::regrole::oid)
      union
      select m.roleid from pg_auth_members m join reach r on m.member = r.oid
    )
    select pg_get_userbyid(r.oid)::text from reach r where pg_has_role(me, r.oid, 'USAGE'));
end;
$$;

-- The caller's job, locked for a change. Another owner's job and a missing one fail alike, after
-- the same statements and calls: the caller's roles are computed before the job is looked up,
-- and the lookup compares names only.
create or replace function code.job_to_change(job_id bigint)
  returns data.jobs
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  roles constant text[] := code.caller_roles();
  job data.jobs;
begin
  -- No lock yet: a lock on another owner's row could wait for that owner's transaction.
  select * into job from data.jobs j
   where j.id = job_id and array[j.owner, j.function_owner] && roles;
  if job.id is null then
    perform code.fail('HC211', format('job %s not found', coalesce(job_id::text, 'NULL')));
  end if;
  if not job.owner = any (roles) then
    perform code.fail('HC212', format('job %s belongs to %s: only its owner and members of that role may change it',
                                      job_id, quote_ident(job.owner)));
  end if;
  select * into job from data.jobs j where j.id = job_id for update;
  if job.id is null then  -- unscheduled since the lookup
    perform code.fail('HC211', format('job %s not found', job_id));
  end if;
  return job;
end;
$$;

-- Used inside the views, so checked as the querying role (see code.caller_has_role in 0005).
do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.caller_roles() to %I, %I, %I, %I, %I',
                 db || '$api', db || '$client', db || '$executor', db || '$authenticator', db || '$anonymous');
end;
$grants$;

select set_config('role', current_database() || '$api', true);

-- The views: the caller's roles in a materialized CTE, read by initplans. The first condition
-- has no column in it, so PostgreSQL evaluates it once, before it reads any row ("One-Time
-- Filter"): the roles are computed whether or not a row matches, and each row is then compared
-- with the same list (an initplan reading the CTE again calls nothing). Only a caller with no
-- role at all, whose view is empty anyway, stops there. This holds where the view is read
-- first; a view that reads one of these only for rows it has found (an EXISTS per row of a
-- table) must compare with code.caller_roles() itself, or its work depends on those rows.
create or replace view api.jobs with (security_barrier) as
  with seen as materialized (select code.caller_roles() as roles)
  select j.id, j.name, j.owner, j.function_signature, j.arguments, j.schedule, j.run_at, j.time_zone,
         j.options, j.enabled, least(j.next_run_at, j.extra_run_at, j.retry_at) as next_run_at,
         last.started_at as last_run_at, last.status as last_status, j.created_at, j.updated_at
    from data.jobs j
    left join lateral (
      -- The newest run (index job_runs_by_job); a skipped or lost run may not have started.
      select r.status, coalesce(r.started_at, r.finished_at) as started_at
        from data.job_runs r where r.job_id = j.id order by r.id desc limit 1
    ) last on true
   where cardinality((select s.roles from seen s)) > 0
     and array[j.owner, j.function_owner] && (select s.roles from seen s);

create or replace view api.job_runs with (security_barrier) as
  with seen as materialized (select code.caller_roles() as roles)
  select r.id, r.job_id, r.owner, r.scheduled_for, r.started_at, r.finished_at, r.status, r.attempt,
         r.rows_returned, r.rows_affected, r.error_sqlstate, r.error_message, r.error_detail, r.error_hint,
         r.error_context, r.reject_reason, r.executor_id
    from data.job_runs r
   where cardinality((select s.roles from seen s)) > 0
     and array[r.owner, r.function_owner] && (select s.roles from seen s);

reset role;
