-- Runs as clients see them: those whose owner, or whose function's owner, the caller has, by the
-- row security policy of data.job_runs, in the same form as api.jobs (see api/jobs.sql). The
-- history is partitioned by id: a page in id order reads the partitions newest first and stops.

create or replace view api.job_runs as
  select r.id, r.job_id, r.owner, r.scheduled_for, r.started_at, r.finished_at, r.status::api.job_run_status as status, r.attempt,
         r.rows_returned, r.rows_affected, r.error_sqlstate, r.error_message, r.error_detail, r.error_hint,
         r.error_context, r.reject_reason::api.job_run_reject_reason as reject_reason, r.executor_id, r.missed_before,
         r.trigger::api.job_run_trigger as trigger,
         (extract(epoch from r.started_at - r.scheduled_for) * 1000)::double precision as lateness_ms,
         (extract(epoch from r.finished_at - r.started_at) * 1000)::double precision as duration_ms
    from data.job_runs r
   where (select code.caller_sees_runs());
alter view api.job_runs reset (security_barrier);

comment on view api.job_runs is
$$@primaryKey id
@foreignKey (job_id) references api.jobs (id)|@fieldName job|@foreignFieldName runs
@behavior -insert -update -delete
One run of a job: an occurrence the executor took, with its outcome.$$;

comment on column api.job_runs.job_id is E'@notNull\nThe run''s job (which may have been unscheduled since: its runs stay).';

comment on column api.job_runs.owner is E'@notNull\nThe role the run ran as.';

comment on column api.job_runs.scheduled_for is E'@notNull\nThe occurrence this run is for.';

comment on column api.job_runs.started_at is 'When the run started. Recorded when it ends: null while it runs, and for a run that never started (skipped, missed; a lost one may have none).';

comment on column api.job_runs.finished_at is 'When the run ended; null while it runs.';

comment on column api.job_runs.status is E'@notNull\n@behavior +orderBy\nWhere the run is: running, or how it ended. Ordered as the enum is: running, succeeded, failed, …';

comment on column api.job_runs.attempt is E'@notNull\n1 for the occurrence itself, 2 and up for retries.';

comment on column api.job_runs.rows_returned is 'Rows the call returned (the output itself is never stored).';

comment on column api.job_runs.rows_affected is 'Tuples the run inserted, updated and deleted.';

comment on column api.job_runs.error_sqlstate is 'The SQLSTATE of a failed run.';

comment on column api.job_runs.reject_reason is E'@behavior +orderBy\nWhy the executor refused to call the function (a generic reason code); set for rejected runs only.';

comment on column api.job_runs.executor_id is 'The executor that ran it.';

comment on column api.job_runs.trigger is
E'@behavior +orderBy\nWhat made the run: schedule (its schedule, or a one-off''s time), run_now, retry (after a failure or timeout), lost_retry (after its executor lost it) or catch_up (the job was behind its schedule). None for missed rows.';

comment on column api.job_runs.lateness_ms is 'How late the run started, in milliseconds: its start minus its occurrence; null while it runs, and when it never started.';

comment on column api.job_runs.duration_ms is 'How long the run took, in milliseconds: its end minus its start; null while it runs, or when it never started.';

comment on column api.job_runs.missed_before is
'For a missed row: every occurrence of the schedule from scheduled_for up to, not including, this one was never run (the job''s missed-run policy passed over them when it was claimed behind its schedule).';

-- Like the job shims (api/jobs.sql): calls its code function exactly once and returns the run as
-- the caller sees it through api.job_runs.
create or replace function api.cancel_run(run_id bigint)
  returns api.job_runs
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  changed_id constant bigint := code.request_cancel_run(run_id);
  result api.job_runs;
begin
  select r.* into strict result from api.job_runs r where r.id = changed_id;
  return result;
end;
$$;

comment on function api.cancel_run(bigint) is
  E'@resultFieldName jobRun\nStops a running run: its executor cancels it, its effects are rolled back, and it ends cancelled, not retried (the job keeps its schedule). Returns the run as it is now, usually still running.';

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select on api.job_runs to %I', db || '$anonymous');
  execute format('grant select on api.job_runs to %I', db || '$authenticator');
  execute format('grant select on api.job_runs to %I', db || '$client');
  execute format('grant select on api.job_runs to %I', db || '$executor');
  execute format('grant execute on function api.cancel_run(bigint) to %I', db || '$client');
end;
$grants$;
