-- Enumerations of the API: the closed sets of values that api's views show as text so far, as
-- enum types of schema api (owned by $api), so that a client is told the set, not a sentence
-- listing it. PostGraphile turns each into a GraphQL enum with the same labels (JobRunStatus:
-- running, succeeded, …), and condition arguments take them: filtering stays a comparison.
--
-- The tables keep text with their check constraints: the views cast (r.status::api.job_run_status).
-- So the set is written twice, in a table's check constraint and here; test/api/enums.test.ts
-- fails when they differ. A new value needs both: `alter type … add value` here, in the
-- migration that widens the constraint (PostgreSQL 12+ allows it in a transaction; the new
-- label cannot be used as a literal until it commits, and the views only cast).
--
-- No USAGE is granted on these types: selecting, filtering and casting need none, and without it
-- no user can make a table or function of its own depend on them (which would block a later
-- migration from changing them).
--
-- A view's column cannot change type in place (CREATE OR REPLACE VIEW refuses), so the views
-- whose columns become enums are dropped here with the shims that return their rows; the routine
-- files create them again, with their grants, after this migration (all routine files are
-- applied after any migration). IF EXISTS: on a fresh install the routines come after the
-- migrations, so none exists yet. No CASCADE: should anything else depend on them, this fails
-- naming it instead of dropping it silently.

select set_config('role', current_database() || '$api', true);

create type api.job_run_status as enum
  ('running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost', 'cancelled', 'missed');
comment on type api.job_run_status is
  'Where a run is: running, or how it ended. succeeded, failed (it raised an error), rejected (a check before the call refused it), timed_out, skipped (an overlapping run was going on), lost (its executor was lost), cancelled (pausing, unscheduling or cancel_run stopped it), missed (occurrences passed over: see missed_before).';

create type api.job_run_trigger as enum ('schedule', 'run_now', 'retry', 'lost_retry', 'catch_up');
comment on type api.job_run_trigger is
  'What made a run: schedule (its schedule, or a one-off''s time), run_now, retry (after a failure or timeout), lost_retry (after its executor lost it) or catch_up (the job was behind its schedule).';

create type api.job_run_reject_reason as enum ('owner_not_eligible', 'function_not_eligible', 'arguments_not_eligible');
comment on type api.job_run_reject_reason is
  'Why the executor refused to call a job''s function (the checks of scheduling, made again at the run): its owner, its function or its arguments no longer pass.';

create type api.job_overlap_policy as enum ('skip', 'queue', 'allow');
comment on type api.job_overlap_policy is
  'The option overlap: what happens to an occurrence that comes due while the job''s previous run is still going: skip it (a skipped run is recorded), queue it until that run ends, or allow both to run.';

create type api.job_missed_policy as enum ('latest', 'all', 'none');
comment on type api.job_missed_policy is
  'The option missed: which occurrences a job that is behind its schedule runs: the latest only, all of them (at most max_missed), or none that is over a minute old; the others are recorded as one missed run.';

drop function if exists api.schedule_job(text, jsonb, text, timestamptz, text, text, jsonb);
drop function if exists api.update_job(bigint, text, jsonb, text, timestamptz, text, text, jsonb);
drop function if exists api.pause_job(bigint);
drop function if exists api.resume_job(bigint);
drop function if exists api.run_job_now(bigint);
drop function if exists api.cancel_run(bigint);
drop view if exists api.job_run_events;
drop view if exists api.job_runs;
drop view if exists api.jobs;

reset role;
