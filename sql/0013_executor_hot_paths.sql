-- The executor's hot paths, at any number of due and running runs.
--
-- Claiming read every due job and sorted them (the due index had no tie-breaker for the claim's
-- ORDER BY), and starting and finishing a run could be planned as a scan of every running run
-- (the partial index job_runs_running matches their `status = 'running'`): both grew with the
-- backlog, making a batch quadratic. Claims now walk the index in order and stop at the batch
-- size; a run is found by its primary key alone, its status checked afterwards.

select set_config('role', current_database() || '$data', true);

drop index data.jobs_due;
create index jobs_due on data.jobs ((least(next_run_at, extra_run_at, retry_at)), id)
  where next_run_at is not null or extra_run_at is not null or retry_at is not null;

reset role;

-- Holds share locks, until the end of the transaction, on what a role's eligibility rests on:
-- its pg_authid row and those of every role it belongs to, directly or not, their memberships
-- (pg_auth_members rows whose member is one of them), and `also` (another role's row). ALTER
-- ROLE, RENAME, DROP ROLE and REVOKE on any of them wait for the transaction. Row locks on
-- these catalogs need a superuser, hence in mgr; it takes oids and does nothing else.
create function mgr.lock_role_facts(role_oid oid, also oid)
  returns void
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  roles oid[];
begin
  with recursive belongs(oid) as (
    select role_oid
    union
    select m.roleid from pg_catalog.pg_auth_members m join belongs b on m.member = b.oid
  )
  select array_agg(b.oid) into roles from belongs b;
  perform from pg_catalog.pg_authid a where a.oid = any(roles) or a.oid = also for share;
  perform from pg_catalog.pg_auth_members m where m.member = any(roles) for share;
end;
$body$;
call mgr.revoke_all_from_public('function', 'mgr.lock_role_facts(oid, oid)');
do $grants$
begin
  execute format('grant execute on function mgr.lock_role_facts(oid, oid) to %I', current_database() || '$code');
end;
$grants$;

-- Positive verdicts of the eligibility check, for the rest of the transaction that reached them
-- (see code.check_eligibility). Unlogged: nothing here outlives its transaction's purpose, and
-- rows of finished transactions are deleted by the next claim.
select set_config('role', current_database() || '$data', true);

create unlogged table data.verdicts (
  xact               xid8   not null,
  key                text   not null,  -- md5 of owner, signature and arguments (these can be long)
  job_owner          text   not null,
  function_signature text   not null,
  arguments          jsonb  not null,
  function_oid       oid    not null,
  function_owner     text   not null,
  catalog_writes     bigint not null,  -- code.catalog_writes() when the verdict was reached
  primary key (xact, key)
);

do $grants$
begin
  execute format('grant select, insert, delete on data.verdicts to %I', current_database() || '$code');
end;
$grants$;

reset role;

select set_config('role', current_database() || '$code', true);

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

create or replace function code.finish_run(
  run_id bigint, status text, started_at timestamptz, rows_returned bigint default null, rows_affected bigint default null,
  error_sqlstate text default null, error_message text default null, error_detail text default null,
  error_hint text default null, error_context text default null, reject_reason text default null)
  returns void
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  run            data.job_runs;
  retries        integer;
  current_status text;
begin
  -- By primary key only, the status checked here (see the top of this file).
  select r.status into current_status from data.job_runs r where r.id = finish_run.run_id for update;
  if current_status is distinct from 'running' then
    perform code.fail('HC303', format('run %s is no longer running here (its lease expired)', finish_run.run_id));
  end if;
  update data.job_runs r
     set status = finish_run.status, started_at = finish_run.started_at, finished_at = clock_timestamp(),
         rows_returned = finish_run.rows_returned, rows_affected = finish_run.rows_affected,
         error_sqlstate = finish_run.error_sqlstate, error_message = left(finish_run.error_message, 10000),
         error_detail = left(finish_run.error_detail, 10000), error_hint = left(finish_run.error_hint, 10000),
         error_context = left(finish_run.error_context, 10000), reject_reason = finish_run.reject_reason
   where r.id = finish_run.run_id
  returning * into run;
  if run.status in ('failed', 'timed_out') then
    select (j.options->>'retries')::integer into retries from data.jobs j where j.id = run.job_id;
    if run.attempt <= coalesce(retries, 0) then
      perform code.queue_retry(run.job_id, run.scheduled_for, run.attempt + 1);
    end if;
  end if;
  perform code.notify_run(run.id, run.job_id, run.status);
end;
$$;

-- Catalog rows this transaction has written so far (inserted, updated, deleted) in the catalogs
-- a verdict rests on. It only grows, rolled-back subtransactions included.
create function code.catalog_writes()
  returns bigint
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- One expression, no query: this runs at every check.
  return pg_stat_get_xact_tuples_inserted('pg_proc'::regclass) + pg_stat_get_xact_tuples_updated('pg_proc'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_proc'::regclass)
       + pg_stat_get_xact_tuples_inserted('pg_namespace'::regclass) + pg_stat_get_xact_tuples_updated('pg_namespace'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_namespace'::regclass)
       + pg_stat_get_xact_tuples_inserted('pg_authid'::regclass) + pg_stat_get_xact_tuples_updated('pg_authid'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_authid'::regclass)
       + pg_stat_get_xact_tuples_inserted('pg_auth_members'::regclass) + pg_stat_get_xact_tuples_updated('pg_auth_members'::regclass)
       + pg_stat_get_xact_tuples_deleted('pg_auth_members'::regclass);
end;
$$;

create function code.verdict_key(job_owner text, function_signature text, arguments jsonb)
  returns text
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
begin
  return md5(job_owner || chr(10) || function_signature || chr(10) || arguments::text);
end;
$$;

-- Remembers a positive verdict for the rest of this transaction, if the function's search_path
-- is the one whose safety rests on nothing but the (locked) function row.
create function code.remember_verdict(job_owner text, function_signature text, arguments jsonb,
                                      function_oid oid, function_owner text, config text[], writes bigint)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  if exists (select from unnest(config) c where c in ('search_path=pg_catalog, pg_temp', 'search_path=pg_catalog')) then
    insert into data.verdicts (xact, key, job_owner, function_signature, arguments, function_oid, function_owner, catalog_writes)
    values (pg_current_xact_id(), code.verdict_key(job_owner, function_signature, arguments), job_owner,
            function_signature, arguments, function_oid, function_owner, writes)
    on conflict (xact, key) do nothing;
  end if;
end;
$$;

-- The eligibility check, with what it rests on locked and a positive verdict remembered for
-- the rest of the transaction.
--
-- A batch of runs is one transaction; the check is repeated for every run in it, and used to
-- cost a third of a run. It now locks, before reading, the function's catalog row (as before)
-- and the owner's role facts: the pg_authid rows of the owner, of every role it belongs to and
-- of $job_scheduler, and the pg_auth_members rows of those memberships. DROP/ALTER/RENAME ROLE,
-- REVOKE and ALTER/DROP FUNCTION on them wait until the transaction ends. So a positive verdict
-- cannot be made stale by anybody else before the transaction ends, and is remembered
-- (data.verdicts, keyed by transaction); a later check of the same (owner, function, arguments)
-- in the same transaction answers from it, unless this transaction itself wrote to pg_proc,
-- pg_namespace, pg_authid or pg_auth_members since (a job can alter its own function or roles:
-- our locks do not stop our own transaction), in which case it checks again in full. Only
-- functions whose search_path is pg_catalog (and pg_temp) are remembered: the safety of other
-- paths depends on schema privileges and their grantees' memberships, which are not locked.
-- Is a job owned by `job_owner` calling `function_signature` with `arguments` eligible now?
-- function_signature is a canonical signature (code.function_signature): it resolves to that
-- schema and name or to nothing, never through anybody's search_path.
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


-- The backlog gauge: its query did not state the due index's predicate, so it read every job.
create or replace function code.due_backlog()
  returns bigint
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select count(*) from (
    select from data.jobs j
     where (j.next_run_at is not null or j.extra_run_at is not null or j.retry_at is not null)
       and least(j.next_run_at, j.extra_run_at, j.retry_at) <= now()
     limit 1000000
  ) due
$$;

-- Rule 5's common case, answered before parsing the setting (every execution asks).
create or replace function code.search_path_problem(config text[], owner_oid oid)
  returns text
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  setting     text;
  path        text[];
  schema_name text;
  position    integer := 0;
  schema_oid  oid;
begin
  if exists (select from unnest(config) c where c ~* '^(role|session_authorization|statement_timeout)=') then
    return 'it sets role, session_authorization or statement_timeout';
  end if;
  select c into setting from unnest(config) c where c ~* '^search_path=' limit 1;
  if setting is null then
    return 'it does not pin search_path (add SET search_path = <schemas>, pg_temp)';
  end if;
  if setting in ('search_path=pg_catalog, pg_temp', 'search_path=pg_catalog') then
    return null;  -- the common, safe case, as PostgreSQL stores it: no parsing, no catalog reads
  end if;
  path := code.search_path_schemas(substr(setting, 13));
  if path = array['pg_catalog', 'pg_temp'] or path = array['pg_catalog'] then
    return null;  -- the common, safe case, without catalog reads
  end if;
  foreach schema_name in array path loop
    position := position + 1;
    if schema_name ~ '^pg_temp' then
      if position < cardinality(path) then
        return 'pg_temp is in its search_path before other schemas (put it last)';
      end if;
      continue;
    end if;
    continue when schema_name in ('pg_catalog', '');
    if schema_name = '$user' then
      schema_name := (select rolname from pg_roles where oid = owner_oid);
    end if;
    schema_oid := (select n.oid from pg_namespace n where n.nspname = schema_name);
    if schema_oid is null then
      return format('schema %s in its search_path does not exist (whoever creates it could plant objects there)',
                    quote_ident(schema_name));
    end if;
    if exists (
      select
        from pg_namespace n,
             aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
       where n.oid = schema_oid
         and a.privilege_type = 'CREATE'
         and a.grantee <> owner_oid
         and (a.grantee = 0 or not pg_has_role(a.grantee, owner_oid, 'USAGE'))
    ) or exists (
      select from pg_namespace n
       where n.oid = schema_oid and n.nspowner <> owner_oid and not pg_has_role(n.nspowner, owner_oid, 'USAGE')
    ) then
      return format('schema %s in its search_path can be written by roles other than its owner', quote_ident(schema_name));
    end if;
  end loop;
  return null;
end;
$$;

reset role;

-- Claiming, set-based: one statement locks the due jobs, advances them and inserts their runs,
-- instead of three statements per job. What a claim means for one job (which occurrence,
-- which attempt, the job's next state, skip or run) is decided by code.plan_claim, per row.
select set_config('role', current_database() || '$code', true);

create type code.claim_plan as (
  occurrence          timestamptz,  -- the run's scheduled_for
  attempt             integer,
  next_run_at         timestamptz,  -- the job's new state
  extra_run_at        timestamptz,
  retry_at            timestamptz,
  retry_scheduled_for timestamptz,
  retry_attempt       integer,
  status              text,         -- running | skipped
  timeout_ms          integer
);

-- The policies of SPEC section 4 for one due job, as of now: retries first, then a run-now
-- request, then the schedule with its missed-run policy; overlap decides between run and skip.
create function code.plan_claim(job data.jobs, overlapping boolean)
  returns code.claim_plan
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  due_at constant timestamptz := least(job.next_run_at, job.extra_run_at, job.retry_at);
  plan   code.claim_plan;
  catch  record;
  spec   code.cron_spec;
  skip   boolean := false;
begin
  plan := row(null, 1, job.next_run_at, job.extra_run_at, job.retry_at, job.retry_scheduled_for, job.retry_attempt,
              null, ceil((job.options->>'timeout_seconds')::numeric * 1000)::integer)::code.claim_plan;
  if job.retry_at = due_at then
    plan.occurrence := job.retry_scheduled_for;
    plan.attempt := job.retry_attempt;
    plan.retry_at := null; plan.retry_scheduled_for := null; plan.retry_attempt := null;
  elsif job.extra_run_at = due_at then
    plan.occurrence := job.extra_run_at;
    plan.extra_run_at := null;
  elsif job.schedule is null then
    plan.occurrence := job.next_run_at;
    plan.next_run_at := null;  -- a one-off job has run
  else
    spec := code.parse_cron(job.schedule);
    catch := code.catch_up(spec, job.time_zone, job.next_run_at, now());
    plan.occurrence := catch.newest;
    plan.next_run_at := catch.following;
    case job.options->>'missed'
      when 'latest' then
        null;
      when 'none' then
        skip := plan.occurrence < now() - interval '1 minute';
      else  -- 'all': oldest first, keeping at most max_missed of the occurrences due
        plan.occurrence := job.next_run_at;
        for i in 1 .. catch.missed + 1 - (job.options->>'max_missed')::integer loop
          plan.occurrence := code.cron_next(spec, job.time_zone, plan.occurrence);
        end loop;
        plan.next_run_at := code.cron_next(spec, job.time_zone, plan.occurrence);
    end case;
  end if;
  skip := skip or (overlapping and job.options->>'overlap' = 'skip');
  plan.status := case when skip then 'skipped' else 'running' end;
  return plan;
end;
$$;

create or replace function code.claim_runs(executor_id text, max_runs integer)
  returns table (run_id bigint, job_id bigint, timeout_ms integer)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if max_runs is null or max_runs < 1 or max_runs > 10000 then
    perform code.fail('HC301', 'max_runs must be from 1 to 10000');
  end if;
  if not exists (select from data.executors e where e.id = claim_runs.executor_id and e.lease_expires_at > now()) then
    perform code.fail('HC302', format('executor %s has no live lease: renew it before claiming', claim_runs.executor_id));
  end if;
  perform code.expire_leases();
  -- Verdicts of transactions that have ended (this one's snapshot sees them as finished).
  delete from data.verdicts v where v.xact < pg_snapshot_xmin(pg_current_snapshot());

  return query
  with due as materialized (
    select j from data.jobs j
     where (j.next_run_at is not null or j.extra_run_at is not null or j.retry_at is not null)
       and least(j.next_run_at, j.extra_run_at, j.retry_at) <= now()
       -- overlap 'queue': not while a run is running (and not taking a place in the batch)
       and not (j.options->>'overlap' = 'queue'
                and exists (select from data.job_runs r where r.job_id = j.id and r.status = 'running'))
     order by least(j.next_run_at, j.extra_run_at, j.retry_at), j.id
     limit max_runs
     for update skip locked
  ), planned as materialized (
    select (d.j).id as job_id, (d.j).owner, (d.j).function_owner, p.*,
           row_number() over (order by least((d.j).next_run_at, (d.j).extra_run_at, (d.j).retry_at), (d.j).id) as position
      from due d,
           code.plan_claim(d.j, exists (select from data.job_runs r where r.job_id = (d.j).id and r.status = 'running')) p
  ), advanced as (
    update data.jobs j
       set next_run_at = p.next_run_at, extra_run_at = p.extra_run_at, retry_at = p.retry_at,
           retry_scheduled_for = p.retry_scheduled_for, retry_attempt = p.retry_attempt
      from planned p
     where j.id = p.job_id
  ), inserted as (
    insert into data.job_runs as r (job_id, owner, function_owner, scheduled_for, status, attempt, executor_id, finished_at)
    select p.job_id, p.owner, p.function_owner, p.occurrence, p.status, p.attempt, claim_runs.executor_id,
           case when p.status = 'skipped' then now() end
      from planned p
    on conflict on constraint job_runs_one_per_occurrence do nothing  -- this occurrence already has its run
    returning r.id, r.job_id, r.status
  ), announced as materialized (
    select i.*, code.notify_run(i.id, i.job_id, i.status) from inserted i
  )
  select a.id, a.job_id, p.timeout_ms
    from announced a join planned p on p.job_id = a.job_id
   where a.status = 'running'
   order by p.position;
end;
$$;

reset role;
