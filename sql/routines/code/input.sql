-- Validation of what callers send: every entry point checks its input, raises an HC2xx error a
-- person can act on (docs/errors.md), and leaves no row behind when it refuses.

create or replace function code.fail(sqlstate text, message text, hint text default null)
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

create or replace function code.require_time_zone(zone text)
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
create or replace function code.job_options(options jsonb)
  returns jsonb
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  defaults constant jsonb := '{"overlap": "skip", "missed": "latest", "max_missed": 100,
                               "timeout_seconds": 300, "retries": 0, "retry_delay_seconds": 10,
                               "max_consecutive_failures": null,
                               "keep_days": null, "keep_failed_days": null, "keep_last_runs": null}';
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
  -- null: never pause by itself.
  if jsonb_typeof(result->'max_consecutive_failures') <> 'null' then
    perform code.require_number(result, 'max_consecutive_failures', 1, 1000, true);
  end if;
  -- Retention of the job's runs (code/retention.sql); null: the installation's default.
  if jsonb_typeof(result->'keep_days') <> 'null' then
    perform code.require_number(result, 'keep_days', 1, 36500, true);
  end if;
  if jsonb_typeof(result->'keep_failed_days') <> 'null' then
    perform code.require_number(result, 'keep_failed_days', 1, 36500, true);
  end if;
  if jsonb_typeof(result->'keep_last_runs') <> 'null' then
    perform code.require_number(result, 'keep_last_runs', 0, 10000, true);
  end if;
  return result;
end;
$$;

create or replace function code.require_number(options jsonb, key text, low numeric, high numeric, whole boolean)
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

create or replace function code.require_valid_name(name text)
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

create or replace function code.require_valid_arguments(arguments jsonb)
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
