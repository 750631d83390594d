-- Scheduling logic (security definer functions owned by $code). Every entry point validates its
-- input, raises an HC2xx error a person can act on, and leaves no row behind when it refuses.
--
--   HC201 function not found       HC202 function name ambiguous   HC203 function not eligible
--   HC204 caller not eligible      HC205 arguments invalid         HC206 cron expression invalid
--   HC207 time zone unknown        HC208 schedule/run_at invalid   HC209 value too large
--   HC210 options invalid          HC211 job not found             HC212 job not yours to change
--   HC214 name invalid             HC215 too many jobs for one owner

select set_config('role', current_database() || '$code', true);

create function code.fail(sqlstate text, message text, hint text default null)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  if hint is null then
    raise exception using errcode = sqlstate, message = message;
  end if;
  raise exception using errcode = sqlstate, message = message, hint = hint;
end;
$$;

-- A user-given function reference -> its canonical signature (code.function_signature).
-- Accepts 'schema.name(argument types)', with type names as PostgreSQL spells them or as
-- aliases (int, timestamptz, …), or 'schema.name' when the name is not overloaded.
create function code.canonical_signature(reference text)
  returns text
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  parts       text[];
  arg_list    text;
  given_types text[];
  matches     oid[];
begin
  if reference is null or btrim(reference) = '' then
    perform code.fail('HC201', 'function_signature is required, e.g. ''billing.close_day(date)''');
  end if;
  if char_length(reference) > 1000 then
    perform code.fail('HC209', 'function_signature is longer than 1000 characters');
  end if;
  begin
    parts := parse_ident(btrim(split_part(reference, '(', 1)));
  exception when others then
    parts := null;
  end;
  if parts is null or cardinality(parts) <> 2 then
    perform code.fail('HC201', format('function %s not found: give it as schema.name(argument types)', quote_literal(left(reference, 200))),
                      'Functions are never looked up through a search_path; qualify the name with its schema.');
  end if;

  if position('(' in reference) = 0 then
    matches := array(select p.oid from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                      where n.nspname = parts[1] and p.proname = parts[2]);
    if cardinality(matches) > 1 then
      perform code.fail('HC202', format('function name %s is ambiguous: %s functions have it', quote_literal(left(reference, 200)), cardinality(matches)),
                        'Add the argument types, e.g. ' || code.function_signature(matches[1]) || '.');
    end if;
  else
    arg_list := substring(reference from '\((.*)\)\s*$');
    given_types := case when arg_list is null then null
                        when btrim(arg_list) = '' then '{}'
                        else array(select btrim(t) from unnest(regexp_split_to_array(arg_list, ',(?![^(]*\))')) t) end;
    -- The same function: same schema and name, and each given type names its parameter type.
    matches := array(
      select p.oid from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = parts[1] and p.proname = parts[2]
         and (code.function_signature(p.oid) = btrim(reference)
              or (cardinality(given_types) = p.pronargs
                  and not exists (select from unnest(given_types, p.proargtypes::oid[]) as g(given, actual)
                                   where code.type_oid(g.given) is distinct from g.actual))));
  end if;
  if cardinality(matches) = 0 then
    perform code.fail('HC201', format('function %s not found', quote_literal(left(reference, 200))));
  end if;
  return code.function_signature(matches[1]);
end;
$$;

-- A type name as a user wrote it -> its oid, or null (never raises).
create function code.type_oid(type_name text)
  returns oid
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  return to_regtype(type_name);
exception when others then
  return null;
end;
$$;

-- Raises the scheduling error for a refusing verdict.
create function code.require_eligible(verdict code.verdict, function_signature text)
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

create function code.require_time_zone(zone text)
  returns text
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  -- IANA names only (PostgreSQL would also take POSIX specs such as 'UTC+3' or 'Foo/Bar+3').
  if zone is not null and char_length(zone) <= 64 then
    if exists (select from data.time_zones z where z.name = zone) then
      return zone;
    end if;
    if exists (select from pg_timezone_names n where n.name = zone) then  -- from a newer tzdata
      insert into data.time_zones (name) values (zone) on conflict do nothing;
      return zone;
    end if;
  end if;
  perform code.fail('HC207', format('unknown time zone %s', coalesce(quote_literal(left(zone, 100)), 'NULL')),
                    'Use an IANA time zone name such as ''Europe/Amsterdam'' or ''UTC''.');
end;
$$;

-- Options with every default filled in; unknown keys and bad values refused.
create function code.job_options(options jsonb)
  returns jsonb
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  defaults constant jsonb := '{"overlap": "skip", "missed": "latest", "max_missed": 100,
                               "timeout_seconds": 300, "retries": 0, "retry_delay_seconds": 10}';
  result  jsonb;
  key     text;
begin
  if options is null or jsonb_typeof(options) <> 'object' then
    perform code.fail('HC210', 'options must be a JSON object, e.g. {"overlap": "skip", "timeout_seconds": 60}');
  end if;
  for key in select jsonb_object_keys(options) loop
    if not defaults ? key then
      perform code.fail('HC210', format('unknown option %s', quote_literal(left(key, 100))),
                        'Options: ' || (select string_agg(k, ', ') from jsonb_object_keys(defaults) k) || '.');
    end if;
  end loop;
  result := defaults || options;
  if not (result->'overlap') <@ '["skip", "queue", "allow"]'::jsonb or jsonb_typeof(result->'overlap') <> 'string' then
    perform code.fail('HC210', 'option overlap must be "skip", "queue" or "allow"');
  end if;
  if not (result->'missed') <@ '["latest", "all", "none"]'::jsonb or jsonb_typeof(result->'missed') <> 'string' then
    perform code.fail('HC210', 'option missed must be "latest", "all" or "none"');
  end if;
  perform code.require_number(result, 'max_missed', 1, 1000, true);
  perform code.require_number(result, 'timeout_seconds', 0.001, 86400, false);
  perform code.require_number(result, 'retries', 0, 10, true);
  perform code.require_number(result, 'retry_delay_seconds', 0.001, 86400, false);
  return result;
end;
$$;

create function code.require_number(options jsonb, key text, low numeric, high numeric, whole boolean)
  returns void
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  value numeric;
begin
  if jsonb_typeof(options->key) = 'number' then
    value := (options->>key)::numeric;
    if value between low and high and (not whole or value = trunc(value)) then
      return;
    end if;
  end if;
  perform code.fail('HC210', format('option %s must be %s from %s to %s', key,
                                    case when whole then 'a whole number' else 'a number' end, low, high));
end;
$$;

create function code.require_valid_name(name text)
  returns void
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if name is null then
    return;
  end if;
  if char_length(name) > 200 then
    perform code.fail('HC209', 'name is longer than 200 characters');
  end if;
  if btrim(name) = '' or name ~ '[[:cntrl:]]' then
    perform code.fail('HC214', 'name must not be blank or contain control characters');
  end if;
end;
$$;

create function code.require_valid_arguments(arguments jsonb)
  returns void
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if arguments is null or jsonb_typeof(arguments) <> 'array' then
    perform code.fail('HC205', 'arguments must be a JSON array, e.g. ''["2026-01-01"]''');
  end if;
  if octet_length(arguments::text) > 65536 then
    perform code.fail('HC209', 'arguments are larger than 64 KiB');
  end if;
end;
$$;

-- Wakes idle executors: a job's due time may have moved (they re-read the earliest due time).
create function code.notify_jobs_changed()
  returns void
  language sql
  set search_path = pg_catalog, pg_temp
as $$ select pg_notify('hardcron_jobs_changed', '') $$;

-- The first occurrence of a job's timing after `after`: the cron's next instant, or run_at.
create function code.first_run_at(schedule text, run_at timestamptz, time_zone text, after timestamptz)
  returns timestamptz
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  next_at timestamptz;
begin
  if (schedule is null) = (run_at is null) then
    perform code.fail('HC208', 'give exactly one of schedule (a cron expression) and run_at (a time)');
  end if;
  if run_at is not null then
    if run_at < after then
      perform code.fail('HC208', format('run_at %s is in the past', run_at));
    end if;
    return run_at;
  end if;
  next_at := code.cron_next(code.parse_cron(schedule), time_zone, after);
  if next_at is null then
    perform code.cron_error(schedule, 'it never fires');
  end if;
  return next_at;
end;
$$;

-- The caller's job, locked for a change. Another owner's job and a missing one fail alike.
create function code.job_to_change(job_id bigint)
  returns data.jobs
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs;
begin
  select * into job from data.jobs j
   where j.id = job_id and (code.caller_has_role(j.owner) or code.caller_has_role(j.function_owner));
  if job.id is null then
    perform code.fail('HC211', format('job %s not found', coalesce(job_id::text, 'NULL')));
  end if;
  if not code.caller_has_role(job.owner) then
    perform code.fail('HC212', format('job %s belongs to %s: only its owner and members of that role may change it',
                                      job_id, quote_ident(job.owner)));
  end if;
  select * into job from data.jobs j where j.id = job_id for update;
  return job;
end;
$$;

-- One role owns at most 10,000 jobs: a job that schedules jobs (as its owner may) cannot grow
-- without bound. Serialised per owner, so concurrent calls cannot overshoot.
create function code.require_room_for_job(owner text)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  most constant integer := 10000;
begin
  perform pg_advisory_xact_lock(hashtext('hardcron jobs of ' || owner));
  if (select count(*) from (select from data.jobs j where j.owner = require_room_for_job.owner limit most) x) >= most then
    perform code.fail('HC215', format('role %s already owns %s jobs, the most one role may own', quote_ident(owner), most),
                      'Unschedule jobs that are no longer needed.');
  end if;
end;
$$;

create function code.schedule_job(
  function_signature text, arguments jsonb, schedule text, run_at timestamptz,
  name text, time_zone text, options jsonb)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  caller    constant text := code.caller();
  signature text;
  verdict   code.verdict;
  zone      text;
  next_at   timestamptz;
  job_id    bigint;
begin
  perform code.require_valid_name(name);
  perform code.require_valid_arguments(arguments);
  signature := code.canonical_signature(function_signature);
  verdict := code.check_eligibility(caller, signature, arguments);
  perform code.require_eligible(verdict, signature);
  zone := code.require_time_zone(time_zone);
  next_at := code.first_run_at(schedule, run_at, zone, now());
  perform code.require_room_for_job(caller);

  insert into data.jobs (name, owner, function_signature, function_owner, arguments, schedule, run_at,
                         time_zone, options, next_run_at)
  values (name, caller, signature, verdict.function_owner, arguments, btrim(schedule), run_at,
          zone, code.job_options(coalesce(options, '{}')), next_at)
  returning id into job_id;
  perform code.notify_jobs_changed();
  return job_id;
end;
$$;

-- Changes the given fields (null: keep), re-checking everything as scheduling does. Giving
-- schedule switches a one-off job to cron and back for run_at.
create function code.update_job(
  job_id bigint, function_signature text, arguments jsonb, schedule text, run_at timestamptz,
  name text, time_zone text, options jsonb)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job       data.jobs := code.job_to_change(job_id);
  verdict   code.verdict;
begin
  if schedule is not null and run_at is not null then
    perform code.fail('HC208', 'give exactly one of schedule (a cron expression) and run_at (a time)');
  end if;
  perform code.require_valid_name(name);
  if arguments is not null then
    perform code.require_valid_arguments(arguments);
  end if;
  if function_signature is not null then
    job.function_signature := code.canonical_signature(function_signature);
  end if;
  job.arguments := coalesce(arguments, job.arguments);
  if schedule is not null then
    job.schedule := btrim(schedule);
    job.run_at := null;
  elsif run_at is not null then
    job.run_at := run_at;
    job.schedule := null;
  end if;
  job.name := coalesce(name, job.name);
  job.time_zone := code.require_time_zone(coalesce(time_zone, job.time_zone));
  job.options := code.job_options(coalesce(job.options || options, job.options));

  -- The job keeps running as its owner, so the owner must be eligible for it now.
  verdict := code.check_eligibility(job.owner, job.function_signature, job.arguments);
  perform code.require_eligible(verdict, job.function_signature);

  update data.jobs j
     set function_signature = job.function_signature,
         function_owner     = verdict.function_owner,
         arguments          = job.arguments,
         schedule           = job.schedule,
         run_at             = job.run_at,
         name               = job.name,
         time_zone          = job.time_zone,
         options            = job.options,
         next_run_at        = case when job.enabled
                                   then code.first_run_at(job.schedule, job.run_at, job.time_zone, now()) end,
         updated_at         = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

create function code.pause_job(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  update data.jobs j
     set enabled = false, next_run_at = null, retry_at = null, retry_scheduled_for = null, retry_attempt = null,
         updated_at = now()
   where j.id = job.id;
  return job.id;
end;
$$;

-- Resuming starts from now: occurrences missed while paused are not made up.
create function code.resume_job(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  update data.jobs j
     set enabled = true,
         next_run_at = case
           when job.enabled then j.next_run_at
           when job.schedule is not null then code.cron_next(code.parse_cron(job.schedule), job.time_zone, now())
           when not exists (select from data.job_runs r where r.job_id = job.id) then greatest(job.run_at, now())
         end,
         updated_at = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

-- One extra occurrence, due now; the schedule is unaffected. Requests before it runs coalesce.
create function code.run_job_now(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  update data.jobs j set extra_run_at = coalesce(least(j.extra_run_at, now()), now()), updated_at = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

-- Removes the job; its runs stay in the history.
create function code.unschedule_job(job_id bigint)
  returns boolean
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  delete from data.jobs j where j.id = job.id;
  return true;
end;
$$;

do $grants$
begin
  execute format('grant execute on function
      code.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb),
      code.update_job(bigint, text, jsonb, text, timestamptz, text, text, jsonb),
      code.pause_job(bigint), code.resume_job(bigint), code.run_job_now(bigint), code.unschedule_job(bigint)
    to %I', current_database() || '$api');
end;
$grants$;

reset role;
