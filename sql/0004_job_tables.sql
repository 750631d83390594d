-- Jobs and their runs (owned by $data). Roles and functions are stored by name, not oid
-- (seed decision: dynamic resolving); every execution resolves them again.

select set_config('role', current_database() || '$data', true);

create table data.jobs (
  id                 bigint generated always as identity primary key,
  name               text        check (char_length(name) between 1 and 200),
  -- The role the job runs as: whoever scheduled it (or last updated it).
  owner              text        not null check (char_length(owner) between 1 and 63),
  -- Canonical, schema-qualified signature: F::regprocedure::text under search_path pg_catalog.
  function_signature text        not null check (char_length(function_signature) between 1 and 1000),
  -- The role that owned F when the job was scheduled; its members may see the job.
  function_owner     text        not null check (char_length(function_owner) between 1 and 63),
  arguments          jsonb       not null default '[]'
                                 check (jsonb_typeof(arguments) = 'array' and octet_length(arguments::text) <= 65536),
  schedule           text        check (char_length(schedule) between 1 and 200),
  run_at             timestamptz,
  time_zone          text        not null default 'UTC' check (char_length(time_zone) between 1 and 64),
  options            jsonb       not null default '{}' check (jsonb_typeof(options) = 'object'),
  enabled            boolean     not null default true,
  -- Next occurrence of the schedule (null: paused, or a one-off that has run).
  next_run_at        timestamptz,
  -- One extra occurrence requested by run_job_now, independent of the schedule.
  extra_run_at       timestamptz,
  -- The next attempt of an occurrence that failed or was lost, when retries remain.
  retry_at           timestamptz,
  retry_scheduled_for timestamptz,
  retry_attempt      integer     check (retry_attempt between 2 and 1000),
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  constraint jobs_schedule_or_run_at check ((schedule is null) <> (run_at is null)),
  constraint jobs_paused_has_no_next_run check (enabled or next_run_at is null),
  constraint jobs_retry_complete check ((retry_at is null) = (retry_scheduled_for is null)
                                        and (retry_at is null) = (retry_attempt is null))
)
-- Each claim updates its job: room on the page keeps those updates HOT. (A job's last run is
-- not stored here but read from its newest run, so a run's end writes nothing to the job.)
with (fillfactor = 70);

-- Due jobs: the executor asks for the earliest due occurrences; jobs with nothing due are not in the index.
create index jobs_due on data.jobs ((least(next_run_at, extra_run_at, retry_at)))
  where next_run_at is not null or extra_run_at is not null or retry_at is not null;
create index jobs_owner on data.jobs (owner);

create table data.job_runs (
  id              bigint generated always as identity primary key,
  -- No foreign key: unscheduling a job keeps its history.
  job_id          bigint      not null,
  owner           text        not null,
  function_owner  text        not null,
  scheduled_for   timestamptz not null,
  started_at      timestamptz,
  finished_at     timestamptz,
  status          text        not null
                              check (status in ('running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost')),
  attempt         integer     not null default 1 check (attempt between 1 and 1000),
  rows_returned   bigint      check (rows_returned >= 0),
  rows_affected   bigint      check (rows_affected >= 0),
  error_sqlstate  text        check (error_sqlstate ~ '^[0-9A-Z]{5}$'),
  error_message   text,
  error_detail    text,
  error_hint      text,
  error_context   text,
  -- Generic on purpose: the same whatever else exists in the database (no oracle).
  reject_reason   text        check (reject_reason in ('owner_not_eligible', 'function_not_eligible', 'arguments_not_eligible')),
  executor_id     text,
  constraint job_runs_reject_reason check ((status = 'rejected') = (reject_reason is not null)),
  constraint job_runs_finished check ((status = 'running') = (finished_at is null)),
  -- One run record per attempt of an occurrence.
  constraint job_runs_one_per_occurrence unique (job_id, scheduled_for, attempt)
);

-- Runs of a job, newest first.
create index job_runs_by_job on data.job_runs (job_id, id desc);
-- Running runs: overlap checks per job, and the sweep for runs of dead executors.
create index job_runs_running on data.job_runs (job_id) where status = 'running';

-- Live executors. An executor renews its lease (heartbeat) from a connection of its own; the
-- `running` runs of an executor whose lease has expired become `lost`.
create table data.executors (
  id               text        primary key check (id ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  started_at       timestamptz not null default now(),
  lease_expires_at timestamptz not null
);

-- The IANA time zone names this server knows, for a fast check of job time zones (reading
-- pg_timezone_names costs tens of milliseconds). Names added by a newer tzdata are found in
-- pg_timezone_names and added here when first used.
create table data.time_zones (name text primary key);
insert into data.time_zones select name from pg_catalog.pg_timezone_names on conflict do nothing;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select, insert on data.time_zones to %I', db || '$code');
  execute format('grant select, insert, update, delete on data.jobs, data.job_runs, data.executors to %I', db || '$code');
  -- The api views read the tables as their owner; $api gets nothing but SELECT.
  execute format('grant usage on schema data to %I', db || '$api');
  execute format('grant select on data.jobs, data.job_runs to %I', db || '$api');
end;
$grants$;

reset role;
