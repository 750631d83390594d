-- Schedule preview (schema api, owned by $api): the next occurrences of a schedule (a cron
-- expression or an interval) in a time zone, before any job is scheduled with it. It reads no job and no role, so it tells a
-- caller nothing about anyone: every client may call it.
--
-- STABLE, so that PostGraphile offers it as a Query field (a VOLATILE function becomes a
-- mutation). Its one write is the time zone check's cache of a name from a newer tzdata
-- (code.require_time_zone, shared with scheduling), made in that VOLATILE function's own calls.
create or replace function api.preview_schedule(
  schedule  text,
  time_zone text    default 'UTC',
  count     integer default 10)
  returns table (occurs_at timestamptz, local_time text, shifted boolean, repeated boolean)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$ select p.occurs_at, p.local_time, p.shifted, p.repeated from code.preview_schedule(schedule, time_zone, count) p $$;

-- PostGraphile offers a set-returning function as a connection, Query.previewSchedule (a plain
-- list would be previewScheduleList under the simplified inflection).
comment on function api.preview_schedule(text, text, integer) is
  E'The next `count` (1-1000, default 10) occurrences after now of a schedule, a cron expression read in an IANA time zone (default UTC) or an interval (every N seconds, minutes, hours or days) counted from now, checked as scheduling checks them.';

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant execute on function api.preview_schedule(text,text,integer) to %I', db || '$client');
end;
$grants$;
