-- A job's code never runs where it could change roles.
--
-- The executor becomes a job's owner with SET LOCAL ROLE, so $executor is a member of every
-- scheduler, and PostgreSQL checks SET ROLE against the session user's memberships. Code of the
-- job that ran outside its SECURITY DEFINER function — a cast or a domain CHECK of an argument,
-- a parameter default, a deferred trigger fired by SET CONSTRAINTS, the query of a WITH HOLD
-- cursor materialised at COMMIT — could RESET ROLE (back to $executor) and then SET ROLE to any
-- other scheduler: one user could act as every other. (Found by a test: a domain CHECK that
-- unscheduled another user's job as that user.)
--
-- Now every statement of a run that can reach user code runs inside a frame: a SECURITY DEFINER
-- function owned by the job's owner, `frames."<owner role>"(call_sql, arguments)`, entered after
-- SET LOCAL ROLE <owner>. Inside a SECURITY DEFINER function PostgreSQL refuses any change of
-- role or session authorization, whatever is called from it; the code still runs as the owner,
-- and current_setting('role') still names the owner (the caller identity, code.caller()). The
-- frame executes the call and fires the deferred triggers; the run's clean-up closes every
-- cursor (CLOSE ALL) before anything can materialise one. mgr creates a frame for every
-- scheduler (add_user); its owner may alter it (it owns it) but not replace it (no CREATE on
-- schema frames), so the executor checks it, under a lock, before every call.

create schema frames;
revoke all on schema frames from public;

-- The body of every frame; code.frame_problem compares against it.
create function mgr.frame_body()
  returns text
  language sql
  immutable
  set search_path = pg_catalog, pg_temp
as $body$
  select $frame$
declare
  returned bigint;
begin
  execute call_sql into returned using arguments;
  -- Deferred triggers fire now, inside this frame, as the owner; not at COMMIT as the executor.
  set constraints all immediate;
  return returned;
end;
$frame$::text
$body$;
call mgr.revoke_all_from_public('function', 'mgr.frame_body()');

-- (Re)creates the frame of a scheduler role, owned by it and executable by it alone. Also the
-- way to mend a frame its owner altered.
create procedure mgr.create_frame(user_role in text)
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
begin
  if to_regrole(quote_ident(user_role)) is null then
    raise exception using errcode = 'HC104', message = format('role %L does not exist', user_role);
  end if;
  -- Dropped first: CREATE OR REPLACE would keep grants its owner may have made.
  execute format('drop function if exists frames.%I(text, text[])', user_role);
  execute format('create function frames.%I(call_sql text, arguments text[]) returns bigint
                    language plpgsql security definer set search_path = pg_catalog, pg_temp as %L',
                 user_role, mgr.frame_body());
  execute format('alter function frames.%I(text, text[]) owner to %I', user_role, user_role);
  execute format('revoke all on function frames.%I(text, text[]) from public', user_role);
end;
$body$;
call mgr.revoke_all_from_public('procedure', 'mgr.create_frame(text)');

-- add_user as in sql/0003, and a frame for a scheduler.
create or replace procedure mgr.add_user(
  nickname  in text,
  passwd    in text    default null,
  scheduler in boolean default false,
  member_of in text[]  default '{}')
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  db     constant text := current_database();
  r_name constant text not null := mgr.local_role_name(nickname);
  owner_nickname text;
  owner_role     text;
begin
  if to_regrole(quote_ident(r_name)) is not null then
    raise exception using errcode = 'HC103', message = format('user %L already exists', nickname);
  end if;
  if member_of is null or cardinality(member_of) > 100 then
    raise exception using errcode = 'HC101', message = 'member_of must be a list of at most 100 nicknames';
  end if;

  if passwd is null then
    execute format('create role %I nologin inherit', r_name);
  else
    execute format('create role %I login inherit password %L', r_name, passwd);
  end if;
  execute format('grant %I to %I', db || '$client', r_name);
  if scheduler then
    execute format('grant %I to %I', db || '$job_scheduler', r_name);
  end if;

  foreach owner_nickname in array member_of loop
    owner_role := mgr.local_role_name(owner_nickname);
    if to_regrole(quote_ident(owner_role)) is null then
      raise exception using errcode = 'HC104', message = format('role %L does not exist', owner_nickname);
    end if;
    execute format('grant %I to %I', owner_role, r_name);
  end loop;

  execute format('grant %I to %I', r_name, db || '$authenticator');
  if scheduler then
    execute format('grant %I to %I', r_name, db || '$executor');
    call mgr.create_frame(r_name);
  end if;
end;
$body$;

-- Frames for the schedulers that exist already (the roles granted to $executor).
do $frames$
declare
  user_role text;
begin
  for user_role in
    select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid
     where m.member = to_regrole(quote_ident(current_database() || '$executor'))
  loop
    call mgr.create_frame(user_role);
  end loop;
  -- Job owners reach their frame (after SET ROLE to them) through $job_scheduler; $code looks
  -- frames up to check them.
  execute format('grant usage on schema frames to %I, %I', current_database() || '$job_scheduler', current_database() || '$code');
end;
$frames$;

select set_config('role', current_database() || '$code', true);

-- Null when the job owner's frame is intact (locked until the end of the transaction, so that
-- ALTER FUNCTION by anybody else waits), else what is wrong with it.
create function code.frame_problem(job_owner text)
  returns text
  language plpgsql
  volatile  -- it locks, then reads the catalog with a fresh snapshot
  set search_path = pg_catalog, pg_temp
as $$
declare
  frame_oid oid := to_regprocedure(format('frames.%I(text, text[])', job_owner));
  f         record;
begin
  if frame_oid is null or not mgr.lock_function_definition(frame_oid) then
    return 'no frame';
  end if;
  select p.proowner = to_regrole(quote_ident(job_owner)) as owned, p.prosecdef,
         p.proconfig = array['search_path=pg_catalog, pg_temp'] as pinned, p.prosrc = mgr.frame_body() as body,
         -- Its owner may grant it (owners can), which would lend the owner's rights: refused.
         not exists (select from aclexplode(p.proacl) a where a.grantee <> p.proowner) as unshared
    into f
    from pg_proc p where p.oid = frame_oid;
  if not (f.owned and f.prosecdef and f.pinned and f.body and f.unshared) then
    return 'frame altered';
  end if;
  return null;
end;
$$;

-- start_run as in sql/0013, and the frame checked after the eligibility verdict.
create or replace function code.start_run(run_id bigint, executor_id text)
  returns table (job_id bigint, scheduled_for timestamptz, started_at timestamptz, done_status text,
                 owner text, call_sql text, arguments text[])
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run     data.job_runs;
  job     data.jobs;
  verdict code.verdict;
  fn      pg_proc;
begin
  select * into run from data.job_runs r where r.id = start_run.run_id;
  if run.id is null or run.status <> 'running' or run.executor_id is distinct from start_run.executor_id then
    perform code.fail('HC302', format('run %s is not a claimed run of this executor', start_run.run_id));
  end if;
  job_id := run.job_id;
  scheduled_for := run.scheduled_for;
  started_at := clock_timestamp();  -- recorded by finish_run: one write per run
  select * into job from data.jobs j where j.id = run.job_id;
  if job.id is null then  -- unscheduled since it was claimed
    done_status := 'skipped';
    perform code.finish_run(run.id, done_status, started_at);
    return next;
    return;
  end if;

  verdict := code.check_eligibility(run.owner, job.function_signature, job.arguments);
  if verdict.reason is null and code.frame_problem(run.owner) is not null then
    verdict.reason := 'owner_not_eligible';  -- no frame to run in: the owner cannot run jobs
  end if;
  if verdict.reason is not null then
    done_status := 'rejected';
    perform code.finish_run(run.id, done_status, started_at, reject_reason => verdict.reason);
    return next;
    return;
  end if;

  select * into strict fn from pg_proc where oid = verdict.function_oid;
  owner := run.owner;
  call_sql := format('select count(*) from %I.%I(%s)',
    (select nspname from pg_namespace where oid = fn.pronamespace), fn.proname,
    (select string_agg(format('($1)[%s]::%s', i, format_type(t, null)), ', ' order by i)
       from unnest(fn.proargtypes::oid[]) with ordinality a(t, i)
      where i <= jsonb_array_length(job.arguments)));
  arguments := array(select code.argument_text(job.arguments -> (i::integer - 1), t)
                       from unnest(fn.proargtypes::oid[]) with ordinality a(t, i)
                      where i <= jsonb_array_length(job.arguments) order by i);
  return next;
end;
$$;

reset role;

do $grants$
begin
  execute format('grant execute on function mgr.frame_body() to %I', current_database() || '$code');
end;
$grants$;

select set_config('role', current_database() || '$api', true);

-- executor.run as in sql/0010, with the call inside the owner's frame and CLOSE ALL in the
-- clean-up.
create or replace function executor.run(run_id bigint, executor_id text)
  returns table (job_id bigint, status text, lateness_ms double precision, duration_ms double precision)
  language plpgsql
  security invoker
  set search_path = pg_catalog, pg_temp
as $$
declare
  plan     record;
  returned bigint;
  before   bigint;
  after    bigint;
  state    text; msg text; detail text; hint text; context text;
begin
  select * into strict plan from executor.start_run(run_id, executor_id) p;
  job_id := plan.job_id;
  status := plan.done_status;
  if status is null then
    begin
      -- The previous run of this transaction left its "after" here (see below); else measure.
      before := coalesce(nullif(current_setting('hardcron.tuples_changed', true), '')::bigint, executor.tuples_changed());
      perform set_config('role', plan.owner, true);  -- SET LOCAL ROLE, without building SQL
      -- In the owner's frame (sql/0015): the call, its casts and defaults, and its deferred
      -- triggers, where no code can change roles.
      execute format('select frames.%I($1, $2)', plan.owner) into returned using plan.call_sql, plan.arguments;
      perform set_config('role', 'none', true);
      status := 'succeeded';
      after := executor.tuples_changed();
      perform executor.finish_run(run_id, status, plan.started_at, returned, after - before);
    exception
      when query_canceled then
        status := 'timed_out';
        get stacked diagnostics msg = message_text;
        perform executor.finish_run(run_id, status, plan.started_at, error_sqlstate => '57014', error_message => msg);
      when others then
        get stacked diagnostics state = returned_sqlstate, msg = message_text, detail = pg_exception_detail,
                                hint = pg_exception_hint, context = pg_exception_context;
        if state = 'HC303' then
          status := 'lost';  -- no longer ours: the job's effects were rolled back with the subtransaction
        else
          status := 'failed';
          perform executor.finish_run(run_id, status, plan.started_at, error_sqlstate => state, error_message => msg,
                                      error_detail => nullif(detail, ''), error_hint => nullif(hint, ''),
                                      error_context => nullif(context, ''));
        end if;
    end;
  end if;
  lateness_ms := extract(epoch from plan.started_at - plan.scheduled_for) * 1000;
  duration_ms := extract(epoch from clock_timestamp() - plan.started_at) * 1000;
  -- Nothing the job did to the session reaches the next run on this connection, and no cursor
  -- it declared WITH HOLD is left to run its query at COMMIT, as the executor.
  execute 'close all';
  reset all;
  perform pg_advisory_unlock_all();
  unlisten *;
  discard temp;
  deallocate all;
  -- Set after the job and the reset, so the job cannot have changed it; transaction-local.
  -- Empty after a failed run: its rolled-back tuples still count, so the next run measures anew.
  perform set_config('hardcron.tuples_changed', coalesce(after::text, ''), true);
  return next;
end;
$$;

reset role;
