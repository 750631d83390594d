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
-- ALTER FUNCTION by anybody else waits), else what is wrong with it. owner_oid: the owner's
-- role, as the eligibility check has already looked it up.
create function code.frame_problem(job_owner text, owner_oid oid)
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
  select p.proowner = owner_oid as owned, p.prosecdef,
         p.proconfig is not distinct from array['search_path=pg_catalog, pg_temp'] as pinned,  -- a reset one is null
         p.prosrc = mgr.frame_body() as body,
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

-- The eligibility check as in sql/0013, with the frame as part of rule 1: checked at scheduling
-- and before every call alike, and remembered with the verdict for the rest of a transaction
-- (its row is locked, and altering it writes to pg_proc, which makes the check run in full).
create or replace function code.check_eligibility(job_owner text, function_signature text, arguments jsonb)
  returns code.verdict
  language plpgsql
  volatile  -- it locks, and must read the catalog with a fresh snapshot after locking
  set search_path = pg_catalog, pg_temp
as $$
declare
  writes    constant bigint := code.catalog_writes();
  cached    record;
  fn_oid    oid;
  owner_oid oid;
  sched_oid oid;
  f         record;
  problem text;
  n_args  integer;
  i       integer;
begin
  -- A positive verdict this transaction reached before stands while everything it rests on is
  -- locked by this transaction and unchanged by it (see code.remember_verdict).
  select v.function_oid, v.function_owner into cached
    from data.verdicts v
   where v.xact = pg_current_xact_id_if_assigned()
     and v.key = code.verdict_key(check_eligibility.job_owner, check_eligibility.function_signature, check_eligibility.arguments)
     and v.job_owner = check_eligibility.job_owner and v.function_signature = check_eligibility.function_signature
     and v.arguments = check_eligibility.arguments and v.catalog_writes = writes;
  if found then
    return row(null, null, null, cached.function_oid, cached.function_owner)::code.verdict;
  end if;

  fn_oid := code.resolve_function(function_signature);
  -- Looked up once, before the query: as expressions inside it they were evaluated for every
  -- role scanned (its cost grew with the number of roles in the cluster).
  owner_oid := to_regrole(quote_ident(job_owner));
  sched_oid := to_regrole(quote_ident(current_database() || '$job_scheduler'));

  -- Lock first, then read: DDL on the function, and on the owner's roles and memberships, now
  -- waits for this transaction, so the call that follows a positive verdict runs what was
  -- checked, as the role that was checked.
  if fn_oid is not null and not mgr.lock_function_definition(fn_oid) then
    fn_oid := null;  -- dropped in the meantime
  end if;
  if owner_oid is not null then
    perform mgr.lock_role_facts(owner_oid, sched_oid);
  end if;

  -- Every fact the rules need, in one read.
  select o.oid as owner_oid, o.rolsuper as owner_super,
         pg_has_role(o.oid, sched.oid, 'USAGE') as owner_schedules,
         p.oid as fn_oid, p.prokind, p.prosecdef, p.proconfig, p.proowner, p.provariadic, p.pronargs,
         p.pronargdefaults, p.proargtypes,
         fo.rolname as fn_owner_name, fo.rolsuper as fn_owner_super,
         p.pronamespace in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
           or exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
           as fn_system,
         pg_has_role(o.oid, p.proowner, 'USAGE') as owner_has_fn_owner
    into f
    from (select) one
    left join pg_roles o on o.oid = owner_oid
    left join pg_roles sched on sched.oid = sched_oid
    left join pg_proc p on p.oid = fn_oid
    left join pg_roles fo on fo.oid = p.proowner;

  -- Rules 1 and 4, for the job owner.
  if f.owner_oid is null then
    return code.refuse('owner_not_eligible', 1, format('role %s does not exist', quote_ident(job_owner)));
  end if;
  if f.owner_super then
    return code.refuse('owner_not_eligible', 4, 'a superuser cannot own jobs');
  end if;
  if not f.owner_schedules then
    return code.refuse('owner_not_eligible', 1, format('role %s is not a member of %s', quote_ident(job_owner),
                                                       quote_ident(current_database() || '$job_scheduler')));
  end if;
  -- Rule 1 also needs somewhere safe to run the owner's jobs: its frame, locked like the function.
  problem := code.frame_problem(job_owner, f.owner_oid);
  if problem is not null then
    return code.refuse('owner_not_eligible', 1, format('role %s has no intact frame to run jobs in (%s): an administrator can call mgr.create_frame(%L)',
                                                       quote_ident(job_owner), problem, job_owner));
  end if;
  if f.fn_oid is null then
    return code.refuse('function_not_eligible', 0, format('function %s does not exist', function_signature));
  end if;
  -- Rules 3 and 4 on facts any role can read in the catalog.
  if f.fn_system then
    return code.refuse('function_not_eligible', 3, format('%s belongs to PostgreSQL or to an extension', function_signature));
  end if;
  if f.fn_owner_super then
    return code.refuse('function_not_eligible', 4, format('%s is owned by a superuser', function_signature));
  end if;
  -- Rule 2: membership with the owner's privileges. Nothing more is said about other roles' functions.
  if not f.owner_has_fn_owner then
    return code.refuse('function_not_eligible', 2,
                       format('you are not a member of %s, which owns %s', quote_ident(f.fn_owner_name), function_signature));
  end if;
  -- Rule 3.
  if f.prokind <> 'f' then
    return code.refuse('function_not_eligible', 3, format('%s is %s, not a function', function_signature,
                       case f.prokind when 'p' then 'a procedure' when 'a' then 'an aggregate' when 'w' then 'a window function' else 'a routine' end));
  end if;
  if not f.prosecdef then
    return code.refuse('function_not_eligible', 3, format('%s is not SECURITY DEFINER', function_signature));
  end if;
  -- Rule 5.
  problem := code.search_path_problem(f.proconfig, f.proowner);
  if problem is not null then
    return code.refuse('function_not_eligible', 5, format('%s is not safe: %s', function_signature, problem));
  end if;
  -- Rule 6.
  if f.provariadic <> 0 then
    return code.refuse('function_not_eligible', 6, format('%s is variadic, which jobs do not support', function_signature));
  end if;
  if arguments is null or jsonb_typeof(arguments) <> 'array' then
    return code.refuse('arguments_not_eligible', 6, 'arguments must be a JSON array');
  end if;
  n_args := jsonb_array_length(arguments);
  if n_args > f.pronargs or n_args < f.pronargs - f.pronargdefaults then
    return code.refuse('arguments_not_eligible', 6, format('%s takes %s argument%s, %s given', function_signature,
      case when f.pronargdefaults = 0 then f.pronargs::text
           else format('%s to %s', f.pronargs - f.pronargdefaults, f.pronargs) end,
      case when f.pronargs = 1 then '' else 's' end, n_args));
  end if;
  for i in 0 .. n_args - 1 loop
    problem := code.argument_problem(arguments -> i, f.proargtypes[i]);
    if problem is not null then
      return code.refuse('arguments_not_eligible', 6, format('argument %s: %s', i + 1, problem));
    end if;
  end loop;

  perform code.remember_verdict(job_owner, function_signature, arguments, f.fn_oid, f.fn_owner_name, f.proconfig, writes);
  return row(null, null, null, f.fn_oid, f.fn_owner_name)::code.verdict;
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
