-- A one-off job can be scheduled to run now: schedule_job with neither a schedule nor a run_at
-- schedules one run, due at once (run_at is the time of scheduling).
--
-- Before, "neither" was refused (HC208) and a newcomer who wanted to try a function once had to
-- invent a future time and then ask for an extra run by hand. No new parameter: an omitted
-- run_at already meant "no time given", and a one-off needs some time, so "now" is the only
-- reading that adds nothing to learn. Giving both is still refused (HC208). update_job keeps
-- its meaning for nulls ("keep as it is"), so it does not change.
--
-- The job keeps its row after the run: it has nothing more to run (next_run_at is null), and it
-- stays listed with its run history until it is unscheduled, like every one-off job.

select set_config('role', current_database() || '$code', true);

create or replace function code.schedule_job(
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
  -- Neither a schedule nor a time: one run, due now (the transaction's time, never in the past
  -- for first_run_at, which compares with the same now()).
  if schedule is null and run_at is null then
    run_at := now();
  end if;
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

select set_config('role', current_database() || '$api', true);

comment on function api.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb) is
  E'@resultFieldName job\nSchedules a call of a security definer function: on a cron schedule, once at run_at, or (neither given) once, now. A one-off job stays listed with its runs after it ran.';

reset role;
