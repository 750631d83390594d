-- The eligibility check: the one function that scheduling, updating and every execution use to
-- decide whether a job may run (its rules are numbered in code.eligibility_verdict, which
-- code.check_eligibility asks after locking, and which lists what a caller may schedule).
--
-- It returns a verdict rather than raising, so that the executor can record a generic reason
-- (the same whatever exists elsewhere: the run log must not become an oracle) while scheduling
-- can tell its caller which rule failed, about the caller's own function only.
--
-- It never evaluates anything a user defined: argument values are test-cast only to built-in
-- types, whose input functions are PostgreSQL's own (a domain's CHECK or a composite's column
-- types could run user code here, as $code). Other types are cast at execution, as the owner.

create or replace function code.refuse(reason text, rule integer, message text, function_oid oid default null, function_owner text default null)
  returns code.verdict
  language sql
  immutable
  set search_path = pg_catalog, pg_temp
as $$ select row(reason, rule, message, function_oid, function_owner)::code.verdict $$;

-- A search_path setting's value as PostgreSQL reads it: a comma-separated list of identifiers,
-- double-quoted ones taken as written ("" for a quote), unquoted ones trimmed and lower-cased.
-- ('victim, pg_temp' given as one quoted name is one schema, not two.)
create or replace function code.search_path_schemas(value text)
  returns text[]
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  path      text[] := '{}';
  token     text := '';
  quoted    boolean := false;
  in_quotes boolean := false;
  ch        text;
  i         integer := 1;
begin
  while i <= length(value) loop
    ch := substr(value, i, 1);
    if in_quotes then
      if ch = '"' and substr(value, i + 1, 1) = '"' then
        token := token || '"';
        i := i + 1;
      elsif ch = '"' then
        in_quotes := false;
      else
        token := token || ch;
      end if;
    elsif ch = '"' then
      in_quotes := true;
      quoted := true;
      token := '';
    elsif ch = ',' then
      path := path || case when quoted then token else lower(btrim(token)) end;
      token := '';
      quoted := false;
    elsif not (quoted and ch ~ '\s') then
      token := token || ch;
    end if;
    i := i + 1;
  end loop;
  return path || case when quoted then token else lower(btrim(token)) end;
end;
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

-- Rule 6, for one argument: the text form of a JSON value.
create or replace function code.argument_text(value jsonb, type_oid oid)
  returns text
  language sql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when jsonb_typeof(value) = 'null' then null
    when type_oid in ('json'::regtype, 'jsonb'::regtype) then value::text
    when jsonb_typeof(value) = 'string' then value #>> '{}'
    when jsonb_typeof(value) = 'array' then (select array_agg(e)::text from jsonb_array_elements_text(value) e)
    else value::text
  end
$$;

-- Rule 6, for one argument: null when castable to the parameter type (or only checkable at
-- execution), else what is wrong.
create or replace function code.argument_problem(value jsonb, type_oid oid)
  returns text
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  t pg_type;
  element pg_type;
begin
  select * into strict t from pg_type where oid = type_oid;
  if t.typtype = 'p' then
    return format('parameter type %s is a pseudo-type', format_type(type_oid, null));
  end if;
  if t.typelem <> 0 and t.typsubscript = 'array_subscript_handler'::regproc then
    select * into strict element from pg_type where oid = t.typelem;
  else
    element := t;
  end if;
  -- Only PostgreSQL's own base types and enums have input functions no user wrote.
  if element.typnamespace <> 'pg_catalog'::regnamespace or element.typtype not in ('b') then
    if element.typtype = 'e' then
      if jsonb_typeof(value) <> 'null'
         and not exists (select from pg_enum where enumtypid = element.oid and enumlabel = value #>> '{}') then
        return format('%s is not a value of %s', value::text, format_type(type_oid, null));
      end if;
    end if;
    return null;
  end if;
  if jsonb_typeof(value) in ('object') and type_oid not in ('json'::regtype, 'jsonb'::regtype) then
    return format('a JSON object cannot be a %s', format_type(type_oid, null));
  end if;
  if jsonb_typeof(value) = 'array' and t.oid = element.oid and type_oid not in ('json'::regtype, 'jsonb'::regtype) then
    return format('a JSON array cannot be a %s', format_type(type_oid, null));
  end if;
  begin
    execute format('select $1::%s', format_type(type_oid, null)) using code.argument_text(value, type_oid);
  exception when others then
    return format('%s is not a valid %s (%s)', left(value::text, 100), format_type(type_oid, null), sqlerrm);
  end;
  return null;
end;
$$;

-- Null when the job owner's frame (frame_oid, null for none) is intact, else what is wrong with
-- it. It only reads: code.check_eligibility has locked the frame's row before asking, so that
-- ALTER FUNCTION by anybody else waits. owner_oid: the owner's role, as already looked up.
create or replace function code.frame_problem(frame_oid oid, owner_oid oid)
  returns text
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  f record;
begin
  select p.proowner = owner_oid as owned, p.prosecdef,
         p.proconfig is not distinct from array['search_path=pg_catalog, pg_temp'] as pinned,  -- a reset one is null
         p.prosrc = mgr.frame_body() as body,
         -- Its owner may grant it (owners can), which would lend the owner's rights: refused.
         not exists (select from aclexplode(p.proacl) a where a.grantee <> p.proowner) as unshared
    into f
    from pg_proc p where p.oid = frame_oid;
  if not found then
    return 'no frame';
  end if;
  if not (f.owned and f.prosecdef and f.pinned and f.body and f.unshared) then
    return 'frame altered';
  end if;
  return null;
end;
$$;

-- The rules, numbered, on what the catalog says now: the one place they are written. It takes
-- no lock, so that listing what a caller may schedule (code.schedulable_functions) can ask it
-- about many functions without writing to the catalog or making DDL wait; code.check_eligibility
-- locks first, then asks it. The objects come as oids, resolved (and locked) by the caller:
-- job_owner's role (owner_oid), $job_scheduler (sched_oid), the owner's frame (frame_oid) and
-- the function (fn_oid); a null oid is one that does not exist. STABLE: it reads with the
-- snapshot of the statement that calls it, which in check_eligibility (VOLATILE) is taken after
-- the locks, so a change that a lock waited for is seen.
create or replace function code.eligibility_verdict(job_owner text, owner_oid oid, sched_oid oid, frame_oid oid,
                                                    fn_oid oid, function_signature text, arguments jsonb)
  returns code.verdict
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  f       record;
  problem text;
  n_args  integer;
  i       integer;
begin
  -- Every fact the rules need, in one read.
  select o.oid as owner_oid, o.rolsuper as owner_super,
         pg_has_role(o.oid, sched.oid, 'USAGE') as owner_schedules,
         p.oid as fn_oid, p.prokind, p.prosecdef, p.proconfig, p.proowner, p.provariadic, p.pronargs,
         p.pronargdefaults, p.proargtypes,
         fo.rolname as fn_owner_name, fo.rolsuper as fn_owner_super,
         p.pronamespace in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
           or exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
           as fn_system,
         pg_has_role(o.oid, p.proowner, 'USAGE') as owner_has_fn_owner,
         p.pronamespace = 'frames'::regnamespace as fn_frame
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
  -- Rule 1 also needs somewhere safe to run the owner's jobs: its frame.
  problem := code.frame_problem(frame_oid, f.owner_oid);
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
  -- A frame is hardcron's own (mgr/frames.sql): it runs whatever SQL it is given, and jobs are
  -- calls of functions that say what they do.
  if f.fn_frame then
    return code.refuse('function_not_eligible', 3, format('%s is a frame, which runs jobs; it is not a job function', function_signature));
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

  return row(null, null, null, f.fn_oid, f.fn_owner_name)::code.verdict;
end;
$$;

-- What a job owner's eligibility rests on besides the function, by oid (null for what does not
-- exist): the owner's role, $job_scheduler, and the owner's frame. Looked up once, before the
-- rules' query (as expressions inside it they were evaluated for every role scanned, and the
-- cost grew with the number of roles in the cluster), by the check and by the listing alike.
create or replace function code.owner_objects(job_owner text, out owner_oid oid, out sched_oid oid, out frame_oid oid)
  language sql
  stable
  set search_path = pg_catalog, pg_temp
as $$
  select to_regrole(quote_ident(job_owner)),
         to_regrole(quote_ident(current_database() || '$job_scheduler')),
         to_regprocedure(format('frames.%I(text, text[])', job_owner))
$$;

-- The eligibility check: checked at scheduling and in full before every call. It locks what the
-- verdict rests on, then asks code.eligibility_verdict; its locks hold what it checked until
-- the caller's transaction ends.
create or replace function code.check_eligibility(job_owner text, function_signature text, arguments jsonb)
  returns code.verdict
  language plpgsql
  volatile  -- it locks, and must read the catalog with a fresh snapshot after locking
  set search_path = pg_catalog, pg_temp
as $$
declare
  fn_oid    oid;
  owner_oid oid;
  sched_oid oid;
  frame_oid oid;
begin
  fn_oid := code.resolve_function(function_signature);
  select o.owner_oid, o.sched_oid, o.frame_oid into owner_oid, sched_oid, frame_oid from code.owner_objects(job_owner) o;

  -- Lock first, then read: DDL on the function and on the owner's frame, and on the owner's
  -- roles and memberships, now waits for this transaction, so the call that follows a positive
  -- verdict runs what was checked, in the frame that was checked, as the role that was checked.
  if fn_oid is not null and not mgr.lock_function_definition(fn_oid) then
    fn_oid := null;  -- dropped in the meantime
  end if;
  if owner_oid is not null then
    perform mgr.lock_role_facts(owner_oid, sched_oid);
  end if;
  if frame_oid is not null and not mgr.lock_function_definition(frame_oid) then
    frame_oid := null;
  end if;

  -- A new statement, so a new snapshot: what the locks waited for is seen.
  return code.eligibility_verdict(job_owner, owner_oid, sched_oid, frame_oid, fn_oid, function_signature, arguments);
end;
$$;

-- What the caller could schedule now: every function api.schedule_job would accept from it
-- (the caller owns the jobs it schedules), with some arguments. Only functions that can pass the
-- rules are judged, picked on catalog facts the rules require (each condition below is implied
-- by a rule, so nothing schedulable is left out): SECURITY DEFINER plain functions with settings,
-- not variadic, outside pg_catalog and information_schema, owned by a role the caller has
-- (rule 2: caller_roles lists exactly those). So the cost follows the functions of the caller's
-- roles, not the database's. Each is then judged by code.eligibility_verdict, the rules
-- themselves, with the fewest arguments it takes, all null: null is a value of every type the
-- check test-casts, so a function accepts some arguments exactly when it accepts these.
-- Nothing is locked: the list is a snapshot, and scheduling checks again, under its locks.
create or replace function code.schedulable_functions()
  returns table (function_signature text, function_owner text, argument_names text[], argument_types text[],
                 argument_defaults integer)
  language plpgsql
  stable
  security definer  -- so that it may name code.caller() and the rules; the caller is not current_user anyway
  set search_path = pg_catalog, pg_temp
as $$
declare
  job_owner constant text := code.caller();
  owner_oid oid;
  sched_oid oid;
  frame_oid oid;
  roles     oid[];
  candidate record;
  verdict   code.verdict;
begin
  select o.owner_oid, o.sched_oid, o.frame_oid into owner_oid, sched_oid, frame_oid from code.owner_objects(job_owner) o;
  -- The owner's rules (1 and 4) once: if they fail, every function fails them, and a superuser
  -- (who has every role) would otherwise have every function in the database judged.
  if (code.eligibility_verdict(job_owner, owner_oid, sched_oid, frame_oid, null, null, null)).reason = 'owner_not_eligible' then
    return;
  end if;
  roles := array(select to_regrole(quote_ident(r)) from unnest(code.caller_roles()) r);
  for candidate in
    select p.oid, code.function_signature(p.oid) as signature,
           (select coalesce(jsonb_agg(null::jsonb), '[]') from generate_series(1, p.pronargs - p.pronargdefaults)) as nulls,
           array(select nullif(p.proargnames[i], '')
                   from generate_subscripts(coalesce(p.proargmodes::text[], array_fill('i'::text, array[p.pronargs])), 1) i
                  where coalesce(p.proargmodes[i]::text, 'i') in ('i', 'b')
                  order by i) as names,
           array(select format_type(a.t, null) from unnest(p.proargtypes::oid[]) with ordinality a(t, i) order by a.i) as types,
           p.pronargdefaults::integer as defaults
      from pg_proc p
     where p.prosecdef and p.prokind = 'f' and p.provariadic = 0 and p.proconfig is not null
       and p.proowner = any (roles)
       and p.pronamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'frames'::regnamespace)
  loop
    verdict := code.eligibility_verdict(job_owner, owner_oid, sched_oid, frame_oid, candidate.oid, candidate.signature, candidate.nulls);
    if verdict.reason is null then
      function_signature := candidate.signature;
      function_owner := verdict.function_owner;
      argument_names := candidate.names;
      argument_types := candidate.types;
      argument_defaults := candidate.defaults;
      return next;
    end if;
  end loop;
end;
$$;

-- Raises the scheduling error for a refusing verdict.
create or replace function code.require_eligible(verdict code.verdict, function_signature text)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  if verdict.reason is null then
    return;
  end if;
  perform code.fail(
    case when verdict.reason = 'owner_not_eligible' then 'HC204'
         when verdict.reason = 'arguments_not_eligible' then 'HC205'
         when verdict.rule = 0 then 'HC201'
         else 'HC203' end,
    format('cannot schedule %s (rule %s): %s', function_signature, verdict.rule, verdict.message));
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  -- Called from the view api.schedulable_functions: checked as the role querying it.
  execute format('grant execute on function code.schedulable_functions() to %I', db || '$anonymous');
  execute format('grant execute on function code.schedulable_functions() to %I', db || '$client');
end;
$grants$;
