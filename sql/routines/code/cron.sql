-- Schedules in SQL, so that next_run_at is right the moment schedule_job returns: cron
-- expressions, and interval schedules (below, before the preview).
--
-- The dialect and its semantics are those of cron-parser, which a test compares with this code
-- on many expressions, zones and instants:
--   * 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first);
--   * values, ranges a-b, lists, steps (*/n, a-b/n, a/n), month names jan-dec, weekday names
--     sun-sat, 0 or 7 for Sunday, ? as * in the day fields, @yearly @annually @monthly @weekly
--     @daily @midnight @hourly;
--   * L in day-of-month, a list item of its own (1,15,L): the last day of the month;
--   * nL in day-of-week, n one weekday (5L, friL): the last weekday n of the month; a list item
--     of its own (1,5L), never in a range or step;
--   * n#k in day-of-week, the whole field (1#2, mon#2): the k-th (1-5) weekday n of the month,
--     that is weekday n on day 7(k-1)+1 to 7k; *#k is any weekday in that span. cron-parser
--     refuses # with a list, range, step or L, and so does this code;
--   * L, nL and n#k restrict their field: with a restricted other day field, either matches;
--   * refused, as by cron-parser: W, lower-case l, L in other fields or ranges; refused here
--     though cron-parser takes it: H (a hashed, random value);
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
  -- An empty field is one empty item (string_to_array would make it no item at all): L, alone
  -- with a comma, leaves one.
  foreach part in array case when field = '' then array[''] else string_to_array(field, ',') end loop
    m := regexp_match(lower(part), '^(?:(\*|\?)|' || value_pattern || '(?:-' || value_pattern || ')?)(?:/([0-9]{1,3}))?$');
    if m is null then
      perform code.cron_error(expression, code.cron_refusal(what, part));
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

-- Why one list item (or, for #, a whole day-of-week field) is not a value, range, list or step:
-- the special characters get a reason of their own, in the words of docs/operations.md.
create or replace function code.cron_refusal(what text, part text)
  returns text
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  -- The item without month and weekday names (JUL has an L of its own).
  bare constant text := regexp_replace(part, '(sun|mon|tue|wed|thu|fri|sat|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)', '', 'gi');
begin
  -- cron-parser's forms: H, H/n, H(a-b), H(a-b)/n; W, nW, LW. An h or w inside a word is a typo.
  if part ~* '(^|[^a-z])h([^a-z]|$)' then
    return 'H (a hashed value) is not supported';
  elsif part ~* '^(l|[0-9]{1,2})?w$' then
    return 'W (the nearest weekday) is not supported';
  elsif part ~ '#' then
    if what <> 'day-of-week' then
      return format('# is allowed only in day-of-week, not in %s', what);
    elsif part ~ '^[^,/L#-]*#[0-9]*$' then
      return format('%s: the week of n#k is 1-5', quote_literal(part));
    end if;
    return format('%s: n#k is the whole day-of-week field, one weekday and a week 1-5 (1#2: the second Monday), without a list, range, step or L',
                  quote_literal(part));
  elsif part ~ '^([0-9]{1,2}|[a-zA-Z]{3})?l$' then
    return format('%s: write L in upper case', quote_literal(part));
  elsif bare ~ 'L' then
    if what = 'day-of-month' then
      if part ~ '^[0-9]+L$' then
        return format('%s: nL is for day-of-week (the last weekday n of the month); in day-of-month L stands alone for the last day', quote_literal(part));
      end if;
      return format('%s: L (the last day) is a list item of its own, not part of a range or step', quote_literal(part));
    elsif what = 'day-of-week' then
      if part = 'L' then
        return 'L in day-of-week needs one weekday before it: 5L is the last Friday of the month';
      end if;
      return format('%s: nL takes one weekday, 0-7 or a name (5L, friL), and is not part of a range or step', quote_literal(part));
    end if;
    return format('L is allowed only in day-of-month (L) and day-of-week (nL), not in %s', what);
  end if;
  return format('%s field %s is not a value, range, list or step', what, quote_literal(part));
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
  items   text[];
  item    text;
  m       text[];
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
  if cardinality(fields) = 5 then
    fields := '0'::text || fields;
  elsif cardinality(fields) <> 6 then
    perform code.cron_error(expression, format('it has %s fields; use 5, or 6 with seconds first', cardinality(fields)));
  end if;
  spec.seconds  := code.parse_cron_field(expression, fields[1], 'second', 0, 59, null);
  spec.minutes  := code.parse_cron_field(expression, fields[2], 'minute', 0, 59, null);
  spec.hours    := code.parse_cron_field(expression, fields[3], 'hour', 0, 23, null);
  spec.months   := code.parse_cron_field(expression, fields[5], 'month', 1, 12, months);

  -- Day of month: L, an item of its own, is the last day; the other items are values as usual.
  items := string_to_array(fields[4], ',');
  spec.last_day := 'L' = any (items);
  items := array_remove(items, 'L');
  spec.days := case when cardinality(items) = 0 then '{}'
                    else code.parse_cron_field(expression, array_to_string(items, ','), 'day-of-month', 1, 31, null) end;

  -- Day of week: n#k is the whole field; nL items name weekdays whose last one in the month matches.
  spec.nth_week := 0;
  spec.last_weekdays := '{}';
  if fields[6] ~ '#' then
    m := regexp_match(fields[6], '^([0-9]{1,2}|[a-zA-Z]{3}|\*|\?)#([1-5])$');
    if m is null then
      perform code.cron_error(expression, code.cron_refusal('day-of-week', fields[6]));
    end if;
    spec.nth_week := m[2]::integer;
    items := array[m[1]];
  else
    items := '{}';
    foreach item in array string_to_array(fields[6], ',') loop
      if item ~ '^([0-9]|[a-zA-Z]{3})L$' then
        spec.last_weekdays := spec.last_weekdays
          || code.cron_value(expression, lower(left(item, -1)), 'day-of-week', 0, 7, days) % 7;
      else
        items := items || item;
      end if;
    end loop;
  end if;
  spec.weekdays := case when cardinality(items) = 0 then '{}' else array(select distinct v % 7 from unnest(
                     code.parse_cron_field(expression, array_to_string(items, ','), 'day-of-week', 0, 7, days)) v order by 1) end;
  spec.any_day     := fields[4] in ('*', '?');
  spec.any_weekday := fields[6] in ('*', '?');
  return spec;
end;
$$;

-- Whether `spec` fires on local day `day`, by its day-of-month, day-of-week and month fields.
create or replace function code.cron_day_matches(spec code.cron_spec, day date)
  returns boolean
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  dom        constant integer := extract(day from day)::integer;
  dow        constant integer := extract(dow from day)::integer;
  month_days constant integer := extract(day from date_trunc('month', day::timestamp) + interval '1 month - 1 day')::integer;
  dom_ok boolean;
  dow_ok boolean;
begin
  if not (extract(month from day)::integer = any (spec.months)) then
    return false;
  end if;
  if spec.any_day and spec.any_weekday then
    return true;
  end if;
  dom_ok := dom = any (spec.days) or (coalesce(spec.last_day, false) and dom = month_days);
  -- n#k: day 7(k-1)+1 to 7k holds the k-th of each weekday; nL: the last 7 days hold the last.
  dow_ok := (dow = any (spec.weekdays) and coalesce(spec.nth_week, 0) in (0, (dom + 6) / 7))
            or (dow = any (spec.last_weekdays) and dom > month_days - 7);
  return case
    when spec.any_day then dow_ok
    when spec.any_weekday then dom_ok
    else dom_ok or dow_ok
  end;
end;
$$;

-- Whether `spec` names the local time that `instant` has in `zone` (false for an occurrence
-- that a spring-forward gap shifted: its local time is the one after the gap).
create or replace function code.cron_matches(spec code.cron_spec, zone text, instant timestamptz)
  returns boolean
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  local_time constant timestamp := instant at time zone zone;
begin
  return floor(extract(second from local_time))::integer = any (spec.seconds)
     and extract(minute from local_time)::integer = any (spec.minutes)
     and extract(hour from local_time)::integer = any (spec.hours)
     and code.cron_day_matches(spec, local_time::date);
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
-- eight years (forty for n#5; e.g. 31 February), which is how scheduling detects expressions
-- that never fire.
create or replace function code.cron_next(spec code.cron_spec, zone text, after timestamptz)
  returns timestamptz
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  day  date := (after at time zone zone)::date - 1;
  -- A fifth weekday (n#5) restricted to February comes only in leap years whose February starts
  -- on that weekday: every 28 years, 40 across 2100 (2072, then 2112).
  stop constant date := day + case when spec.nth_week = 5 then 40 else 8 end * 366 + 2;
  found timestamptz;
begin
  while day <= stop loop
    if not (extract(month from day)::integer = any (spec.months)) then
      day := (date_trunc('month', day) + interval '1 month')::date;
      continue;
    end if;
    if code.cron_day_matches(spec, day) then
      found := code.cron_next_on_day(spec, zone, day, after);
      if found is not null then return found; end if;
    end if;
    day := day + 1;
  end loop;
  return null;
end;
$$;

-- Interval schedules (fixed rate): `every N seconds|minutes|hours|days`, N a whole number from 1
-- (`every 90 seconds`, `every 1 minute`, `every 12 hours`), or `every second|minute|hour|day` for
-- N = 1; the unit singular or plural, words separated by spaces, case ignored; the period from
-- 1 second to 366 days. Occurrences are anchor + k·period, k >= 1 (code.next_occurrence): a
-- number of seconds, so time zones and DST play no part.

create or replace function code.interval_error(schedule text, problem text)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
begin
  raise exception using
    errcode = 'HC206',
    message = format('invalid interval schedule %s: %s', quote_literal(left(schedule, 200)), problem),
    hint    = 'Write every N seconds, minutes, hours or days (N a whole number from 1; a period of 1 second to 366 days), e.g. ''every 90 seconds'' or ''every 5 minutes''.';
end;
$$;

-- The period of an interval schedule, in seconds.
create or replace function code.parse_interval(schedule text)
  returns integer
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
declare
  words   constant text[] := regexp_split_to_array(lower(btrim(schedule, E' \t')), ' +');
  longest constant integer := 366 * 86400;
  unit    text;
  count   numeric := 1;
  seconds integer;
begin
  if char_length(schedule) > 200 then
    perform code.interval_error(schedule, 'it is longer than 200 characters');
  end if;
  if words[1] <> 'every' or cardinality(words) not in (2, 3) then
    perform code.interval_error(schedule, 'it is not every N seconds, minutes, hours or days');
  end if;
  unit := words[cardinality(words)];
  seconds := case rtrim(unit, 's') when 'second' then 1 when 'minute' then 60 when 'hour' then 3600 when 'day' then 86400 end;
  if seconds is null or unit ~ 'ss$' then
    perform code.interval_error(schedule, case when unit ~ '^[0-9+.-]+$' and cardinality(words) = 2
      then 'the unit is missing: seconds, minutes, hours or days'
      else format('%s is not a unit: use seconds, minutes, hours or days', quote_literal(unit)) end);
  end if;
  if cardinality(words) = 2 then
    if unit ~ 's$' then  -- `every minutes`: how many?
      perform code.interval_error(schedule, format('the number is missing: every N %s, or every %s', unit, rtrim(unit, 's')));
    end if;
  else
    if words[2] !~ '^[0-9]+$' then
      perform code.interval_error(schedule, format('%s is not a whole number', quote_literal(words[2])));
    end if;
    count := words[2]::numeric;
    if count < 1 then
      perform code.interval_error(schedule, 'the number must be at least 1');
    end if;
  end if;
  if count * seconds > longest then
    perform code.interval_error(schedule, 'the period is longer than 366 days');
  end if;
  return count * seconds;
end;
$$;

-- A schedule of either kind, parsed: `every ...` is an interval, anything else a cron expression.
create or replace function code.parse_schedule(schedule text)
  returns code.schedule_spec
  language plpgsql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
begin
  if lower(btrim(schedule, E' \t')) like 'every%' then
    return row(null, code.parse_interval(schedule))::code.schedule_spec;
  end if;
  return row(code.parse_cron(schedule), null)::code.schedule_spec;
end;
$$;

-- The first occurrence of a schedule strictly after `after`: every next occurrence (scheduling,
-- claims, resuming, preview) is computed here. A cron expression's, in `zone` (null if none
-- within the search, see code.cron_next); an interval's, anchor + k·period (k >= 1) for the
-- smallest such k, in constant time however far `after` is from the anchor.
create or replace function code.next_occurrence(spec code.schedule_spec, zone text, anchor timestamptz, after timestamptz)
  returns timestamptz
  language plpgsql
  stable
  set search_path = pg_catalog, pg_temp
as $$
declare
  k numeric;
begin
  if spec.period_seconds is null then
    return code.cron_next(spec.cron, zone, after);
  end if;
  -- Epoch seconds (numeric, exact to the microsecond): an interval such as after - anchor would
  -- count days, which AT TIME ZONE arithmetic could stretch across a DST change.
  k := greatest(floor((extract(epoch from after) - extract(epoch from anchor)) / spec.period_seconds) + 1, 1);
  return anchor + interval '1 second' * (k * spec.period_seconds)::float8;
end;
$$;

-- The next `count` occurrences of a schedule after now, as api.preview_schedule shows them:
-- checked as scheduling checks a schedule and a zone (code.require_time_zone, code.parse_schedule,
-- code.first_run_at: same errors, same codes), and the count bounded, before anything is done.
-- An interval schedule is anchored now, as scheduling it now would anchor it.
-- `shifted`: a cron expression names a local time that a spring-forward gap skips, which fires at
-- the offset before the gap, so its local time is one the expression does not name.
-- `repeated`: the local time occurs twice (fall back); local_time's offset tells which copy.
create or replace function code.preview_schedule(schedule text, time_zone text, count integer)
  returns table (occurs_at timestamptz, local_time text, shifted boolean, repeated boolean)
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  zone    text;
  spec    code.schedule_spec;
  anchor  constant timestamptz := date_trunc('second', now());
  instant timestamptz;
  here    timestamp;
  t       record;
begin
  if count is null or count < 1 or count > 1000 then
    perform code.fail('HC210', format('count must be from 1 to 1000, not %s', coalesce(count::text, 'NULL')));
  end if;
  zone := code.require_time_zone(time_zone);
  spec := code.parse_schedule(schedule);  -- first_run_at would take a null schedule for a one-off job
  instant := code.first_run_at(schedule, null, zone, anchor, now());  -- refuses an expression that never fires
  for i in 1 .. count loop
    exit when instant is null;
    here := instant at time zone zone;
    t := code.local_instants(here, zone);
    occurs_at := instant;
    local_time := to_char(here, 'YYYY-MM-DD"T"HH24:MI:SS') || code.utc_offset(here - (instant at time zone 'UTC'));
    shifted := spec.period_seconds is null and not code.cron_matches(spec.cron, zone, instant);  -- an interval names no local time
    repeated := t.earliest <> t.latest;
    return next;
    instant := code.next_occurrence(spec, zone, anchor, instant);
  end loop;
end;
$$;

-- An offset from UTC as ISO 8601 writes it: +02:00, -03:30, +05:45.
create or replace function code.utc_offset(offset_interval interval)
  returns text
  language sql
  immutable
  set search_path = pg_catalog, pg_temp
as $$
  select case when offset_interval < interval '0' then '-' || to_char(-offset_interval, 'HH24:MI')
              else '+' || to_char(offset_interval, 'HH24:MI') end
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function code.preview_schedule(text,text,integer) to %I', db || '$api');
end;
$grants$;
