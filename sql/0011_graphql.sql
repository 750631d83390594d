-- What the GraphQL server needs from the database: smart tags and descriptions on the api
-- objects (PostGraphile reads comments), made by their owner, $api.
--
-- Views have no primary or foreign keys of their own; the tags declare them so that the
-- schema has job(id) and the job -> runs relation. The views are read-only to clients (no
-- INSERT/UPDATE/DELETE privileges); the behavior tags keep the schema from offering
-- mutations that could only fail. The server builds its schema as $client sees it, so nothing
-- outside api ever appears in it.

select set_config('role', current_database() || '$api', true);

comment on view api.jobs is
$$@primaryKey id
@behavior -insert -update -delete
A scheduled call of a security definer function. You see the jobs whose owner role (or whose function's owner role) you have.$$;

comment on column api.jobs.id is 'The job''s id.';
comment on column api.jobs.name is 'A name for people; not unique.';
comment on column api.jobs.owner is 'The role the function runs as: the owner of the function when the job was scheduled.';
comment on column api.jobs.function_signature is 'The function called, schema-qualified with argument types, e.g. billing.close_day(date).';
comment on column api.jobs.arguments is 'The arguments of the call, a JSON array with one element per parameter.';
comment on column api.jobs.schedule is 'A cron expression (5 fields, or 6 with seconds first); null for a one-off job.';
comment on column api.jobs.run_at is 'When a one-off job runs; null for a cron job.';
comment on column api.jobs.time_zone is 'The IANA time zone the cron expression is read in.';
comment on column api.jobs.options is 'overlap, missed, max_missed, timeout_seconds, retries, retry_delay_seconds.';
comment on column api.jobs.enabled is 'False while paused.';
comment on column api.jobs.next_run_at is 'The next due occurrence (or retry); null when nothing is due.';
comment on column api.jobs.last_run_at is 'When the newest run started.';
comment on column api.jobs.last_status is 'The status of the newest run.';

comment on view api.job_runs is
$$@primaryKey id
@foreignKey (job_id) references api.jobs (id)|@fieldName job|@foreignFieldName runs
@behavior -insert -update -delete
One run of a job: an occurrence the executor took, with its outcome.$$;

comment on column api.job_runs.scheduled_for is 'The occurrence this run is for.';
comment on column api.job_runs.status is 'running, succeeded, failed, rejected, timed_out, skipped or lost.';
comment on column api.job_runs.attempt is '0 for the occurrence itself, 1 and up for retries.';
comment on column api.job_runs.rows_returned is 'Rows the call returned (the output itself is never stored).';
comment on column api.job_runs.rows_affected is 'Tuples the run inserted, updated and deleted.';
comment on column api.job_runs.error_sqlstate is 'The SQLSTATE of a failed run.';
comment on column api.job_runs.reject_reason is 'Why the executor refused to call the function (a generic reason code).';
comment on column api.job_runs.executor_id is 'The executor that ran it.';

comment on function api.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb) is
  E'@resultFieldName job\nSchedules a call of a security definer function: a cron schedule or a one-off run_at, exactly one of them.';
comment on function api.update_job(bigint, text, jsonb, text, timestamptz, text, text, jsonb) is
  E'@resultFieldName job\nChanges a job; null fields stay as they are. Checked like scheduling.';
comment on function api.pause_job(bigint) is E'@resultFieldName job\nStops a job from running until it is resumed.';
comment on function api.resume_job(bigint) is E'@resultFieldName job\nLets a paused job run again from its next occurrence.';
comment on function api.run_job_now(bigint) is E'@resultFieldName job\nAdds one extra occurrence, due now.';
comment on function api.unschedule_job(bigint) is E'@resultFieldName unscheduled\nDeletes a job; its run history stays.';

reset role;

-- The server builds its schema as $client sees it (SET ROLE $client while introspecting), so
-- $authenticator must be able to become $client. It is NOINHERIT: the grant gives it no
-- privileges of its own, only the SET ROLE that any end user's session has anyway. Tokens can
-- never name $client (reserved nickname).
do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant %I to %I', db || '$client', db || '$authenticator');
end;
$grants$;
