-- Cron expressions in SQL, so that next_run_at is right the moment schedule_job returns.
--
-- The dialect and its semantics are those of cron-parser, which the executor uses, and a test
-- compares the two on many expressions, zones and instants:
--   * 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first);
--   * values, ranges a-b, lists, steps (*/n, a-b/n, a/n), month names jan-dec, weekday names
--     sun-sat, 0 or 7 for Sunday, ? as * in the day fields, @yearly @monthly @weekly @daily @hourly;
--   * day-of-month and day-of-week: when both are restricted (neither is * or ?), a day matches
--     either; otherwise both must match;
--   * evaluated in the job's IANA time zone. A local time that does not exist (spring forward)
--     fires at the same offset as before the gap (02:30 becomes 03:30). A local time that occurs
--     twice (fall back) fires once, at its first occurrence, unless the hour field covers all
--     24 hours: then it fires in both.

create or replace function code.cron_error(expression text, problem text)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception using
    errcode = 'HC206',
    message = format('invalid cron expression %s: %s', quote_literal(left(expression, 200)), problem),
    hint    = 'Use 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), e.g. ''0 3 * * mon-fri''.';
end;
$$;

-- One field of an expression: the sorted set of values it allows.
create or replace function code.parse_cron_field(expression text, field text, what text, lo integer, hi integer, names text[])
  returns integer[]
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  part   text;
  m      text[];
  first  integer;
  last   integer;
  step   integer;
  result integer[] := '{}';
  value_pattern constant text := '([0-9]{1,2}|[a-z]{3})';
begin
  foreach part in array string_to_array(lower(field), ',') loop
    m := regexp_match(part, '^(?:(\*|\?)|' || value_pattern || '(?:-' || value_pattern || ')?)(?:/([0-9]{1,3}))?$');
    if m is null then
      perform code.cron_error(expression, format('%s field %s is not a value, range, list or step', what, quote_literal(part)));
    end if;
    if m[1] = '?' and what not in ('day-of-month', 'day-of-week') then
      perform code.cron_error(expression, format('? is allowed only in the day fields, not in %s', what));
    end if;
    step := coalesce(m[4]::integer, 1);
    if step < 1 then
      perform code.cron_error(expression, format('%s step must be at least 1', what));
    end if;
    if m[1] is not null then
      first := lo;
      last  := hi;
    else
      first := code.cron_value(expression, m[2], what, lo, hi, names);
      last  := case when m[3] is not null then code.cron_value(expression, m[3], what, lo, hi, names)
                    when m[4] is not null then hi      -- a/n: from a to the end, every n
                    else first end;
      if first > last then
        perform code.cron_error(expression, format('%s range %s runs backwards', what, quote_literal(part)));
      end if;
    end if;
    result := result || array(select generate_series(first, last, step));
  end loop;
  return array(select distinct v from unnest(result) v order by v);
end;
$$;

create or replace function code.cron_value(expression text, token text, what text, lo integer, hi integer, names text[])
  returns integer
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  value integer;
begin
  if token ~ '^[0-9]+$' then
    value := token::integer;
  else
    value := array_position(names, token) - 1 + case when what = 'month' then 1 else 0 end;
    if value is null then
      perform code.cron_error(expression, case when names is null
        then format('%s field %s is not a number', what, quote_literal(token))
        else format('%s is not a %s name (%s)', quote_literal(token), what, array_to_string(names, ' ')) end);
    end if;
  end if;
  if value < lo or value > hi then
    perform code.cron_error(expression, format('%s %s is out of range %s-%s', what, value, lo, hi));
  end if;
  return value;
end;
$$;

create or replace function code.parse_cron(expression text)
  returns code.cron_spec
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  text_in constant text := btrim(expression, E' \t');
  fields  text[];
  spec    code.cron_spec;
  months  constant text[] := '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}';
  days    constant text[] := '{sun,mon,tue,wed,thu,fri,sat}';
begin
  if expression is null or text_in = '' then
    perform code.cron_error(coalesce(expression, ''), 'it is empty');
  end if;
  if char_length(expression) > 200 then
    perform code.cron_error(expression, 'it is longer than 200 characters');
  end if;
  fields := regexp_split_to_array(
    case lower(text_in)
      when '@yearly'   then '0 0 1 1 *'
      when '@annually' then '0 0 1 1 *'
      when '@monthly'  then '0 0 1 * *'
      when '@weekly'   then '0 0 * * 0'
      when '@daily'    then '0 0 * * *'
      when '@midnight' then '0 0 * * *'
      when '@hourly'   then '0 * * * *'
      else text_in
    end, ' +');
  if lower(text_in) ~ '#|(^|[ ,/-])(l|lw|w|h)($|[ ,/-])|[0-9][lw]($|[ ,])' then
    perform code.cron_error(expression, 'L, W, # and H are not supported');
  end if;
  if cardinality(fields) = 5 then
    fields := '0'::text || fields;
  elsif cardinality(fields) <> 6 then
    perform code.cron_error(expression, format('it has %s fields; use 5, or 6 with seconds first', cardinality(fields)));
  end if;
  spec.seconds  := code.parse_cron_field(expression, fields[1], 'second', 0, 59, null);
  spec.minutes  := code.parse_cron_field(expression, fields[2], 'minute', 0, 59, null);
  spec.hours    := code.parse_cron_field(expression, fields[3], 'hour', 0, 23, null);
  spec.days     := code.parse_cron_field(expression, fields[4], 'day-of-month', 1, 31, null);
  spec.months   := code.parse_cron_field(expression, fields[5], 'month', 1, 12, months);
  spec.weekdays := array(select distinct v % 7 from unnest(
                     code.parse_cron_field(expression, fields[6], 'day-of-week', 0, 7, days)) v order by 1);
  spec.any_day     := fields[4] in ('*', '?');
  spec.any_weekday := fields[6] in ('*', '?');
  return spec;
end;
$$;

-- The first and the last instant at which local time `local` occurs in `zone` (they differ
-- during a fall-back repeat). A local time in a spring-forward gap maps to the offset before it.
create or replace function code.local_instants(local timestamp, zone text, out earliest timestamptz, out latest timestamptz)
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  x constant timestamptz := local at time zone zone;
  shift interval;
begin
  earliest := x;
  latest := x;
  foreach shift in array array[interval '1 hour', interval '30 minutes', interval '2 hours'] loop
    if ((x - shift) at time zone zone) = local then earliest := least(earliest, x - shift); end if;
    if ((x + shift) at time zone zone) = local then latest := greatest(latest, x + shift); end if;
  end loop;
end;
$$;

-- The first instant after `after` at which `spec` fires on local day `day`, or null.
--
-- Local times in increasing order map to increasing instants, with two exceptions: a local
-- time in a spring-forward gap maps past the gap's end (02:20 in a 30-minute gap to 02:50), so
-- real times just after the gap can come first; and the second copy of a repeated hour, which
-- counts only when the hour field covers all hours.
create or replace function code.cron_next_on_day(spec code.cron_spec, zone text, day date, after timestamptz)
  returns timestamptz
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  all_hours constant boolean := cardinality(spec.hours) = 24;
  h integer;
  m integer;
  s integer;
  local_time timestamp;
  t record;
  best timestamptz;  -- the smallest candidate that later local times could still undercut
begin
  foreach h in array spec.hours loop
    t := code.local_instants(day + make_interval(hours => h, mins => 59, secs => 59), zone);
    continue when t.earliest <= after and (not all_hours or t.latest <= after);
    foreach m in array spec.minutes loop
      t := code.local_instants(day + make_interval(hours => h, mins => m, secs => 59), zone);
      continue when t.earliest <= after and (not all_hours or t.latest <= after);
      foreach s in array spec.seconds loop
        local_time := day + make_interval(hours => h, mins => m, secs => s);
        t := code.local_instants(local_time, zone);
        if t.earliest > after then
          if (t.earliest at time zone zone) = local_time then
            -- A real local time: no later local time maps earlier, except repeats already in best.
            return least(best, t.earliest);
          end if;
          best := least(best, t.earliest);  -- a time in a gap: the first real time after it may come first
        elsif all_hours and t.latest > after then
          best := least(best, t.latest);  -- the repeat of an hour that occurs twice
        end if;
      end loop;
    end loop;
  end loop;
  return best;
end;
$$;

-- The first instant strictly after `after` at which `spec` fires in `zone`; null if none within
-- eight years (e.g. 31 February), which is how scheduling detects expressions that never fire.
create or replace function code.cron_next(spec code.cron_spec, zone text, after timestamptz)
  returns timestamptz
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  day  date := (after at time zone zone)::date - 1;
  stop constant date := day + 8 * 366 + 2;
  dom integer;
  dow integer;
  found timestamptz;
begin
  while day <= stop loop
    if not (extract(month from day)::integer = any (spec.months)) then
      day := (date_trunc('month', day) + interval '1 month')::date;
      continue;
    end if;
    dom := extract(day from day)::integer;
    dow := extract(dow from day)::integer;
    if (case
          when spec.any_day and spec.any_weekday then true
          when spec.any_day then dow = any (spec.weekdays)
          when spec.any_weekday then dom = any (spec.days)
          else dom = any (spec.days) or dow = any (spec.weekdays)
        end) then
      found := code.cron_next_on_day(spec, zone, day, after);
      if found is not null then return found; end if;
    end if;
    day := day + 1;
  end loop;
  return null;
end;
$$;
