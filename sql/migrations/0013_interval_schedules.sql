-- Interval schedules (fixed rate): besides a cron expression, a job's schedule may be
-- `every N seconds|minutes|hours|days`. Its occurrences are anchor + k·period (k >= 1), where the
-- anchor is the whole second at which the schedule was set: scheduled, or updated to a different
-- schedule. Pausing, resuming and other updates keep it, so the job keeps its phase. Time zones
-- and DST play no part: the period is a number of seconds.
--
-- Every job with a schedule has an anchor (a cron schedule ignores it), so that no code path can
-- set a schedule and forget the anchor. Jobs scheduled before this have cron schedules only;
-- their anchor is the last time they changed.

select set_config('role', current_database() || '$data', true);
alter table data.jobs add column schedule_anchor timestamptz;
update data.jobs set schedule_anchor = date_trunc('second', updated_at) where schedule is not null;
alter table data.jobs add constraint jobs_schedule_anchor check ((schedule is null) = (schedule_anchor is null));
reset role;

-- A parsed schedule of either kind (see sql/routines/code/cron.sql, code.parse_schedule): a cron
-- expression (period_seconds null) or a fixed period (cron null).
select set_config('role', current_database() || '$code', true);
create type code.schedule_spec as (
  cron           code.cron_spec,
  period_seconds integer
);
reset role;

-- The first occurrence now counts from an anchor as well as from a time: new arguments.
-- IF EXISTS: on a fresh install the routines come after the migrations, so it never existed.
drop function if exists code.first_run_at(text, timestamptz, text, timestamptz);
