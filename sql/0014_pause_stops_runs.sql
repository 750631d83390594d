-- A paused job does not run, not even on request.
--
-- Pausing cleared the schedule and any queued retry but kept a pending run-now request, and
-- run_job_now accepted a paused job: a job whose function asks to run itself again (THREATS 19)
-- could then not be stopped by pausing it. Now pausing drops a pending request too, and asking a
-- paused job to run now is refused (HC216) with the way out in the hint.

select set_config('role', current_database() || '$data', true);

-- Requests left on jobs paused before this file.
update data.jobs set extra_run_at = null where not enabled and extra_run_at is not null;

select set_config('role', current_database() || '$code', true);

create or replace function code.pause_job(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  update data.jobs j
     set enabled = false, next_run_at = null, extra_run_at = null, retry_at = null, retry_scheduled_for = null,
         retry_attempt = null, updated_at = now()
   where j.id = job.id;
  return job.id;
end;
$$;

create or replace function code.run_job_now(job_id bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  job data.jobs := code.job_to_change(job_id);
begin
  if not job.enabled then
    perform code.fail('HC216', format('job %s is paused', job.id), format('resume it first: api.resume_job(%s)', job.id));
  end if;
  update data.jobs j set extra_run_at = coalesce(least(j.extra_run_at, now()), now()), updated_at = now()
   where j.id = job.id;
  perform code.notify_jobs_changed();
  return job.id;
end;
$$;

reset role;
