-- The tables (owned by $data). Roles and functions are stored by name, not oid: every
-- execution resolves them again, so a dropped and re-created function or role is never run by
-- a stale reference. $code reads and writes; $api reads what its views show; nobody else has
-- any privilege on them.

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

-- Due jobs, earliest first: a claim walks this index in order and stops at its batch size (the
-- id breaks ties, so the claim's ORDER BY needs no sort). Jobs with nothing due are not in it.
create index jobs_due on data.jobs ((least(next_run_at, extra_run_at, retry_at)), id)
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

-- Running runs: overlap checks per job, and the sweep for runs of dead executors. Starting and
-- finishing a run find it by its primary key alone and check its status afterwards, so that
-- they are never planned as a scan of this index.
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

-- Positive verdicts of the eligibility check, for the rest of the transaction that reached them
-- (see code.check_eligibility). Unlogged: nothing here outlives its transaction's purpose, and
-- rows of finished transactions are deleted by the next claim.
create unlogged table data.verdicts (
  xact               xid8   not null,
  key                text   not null,  -- md5 of owner, signature and arguments (these can be long)
  job_owner          text   not null,
  function_signature text   not null,
  arguments          jsonb  not null,
  function_oid       oid    not null,
  function_owner     text   not null,
  catalog_writes     bigint not null,  -- code.catalog_writes() when the verdict was reached
  primary key (xact, key)
);

-- Run events: every state change of a run, read through api.job_run_events, which shows a
-- caller the events of the runs api.job_runs shows it. Notifications carry an empty payload:
-- any session may LISTEN on any channel, so the log, not the channel, says what happened.
--
-- Append-only. Only the primary key: every reader walks it (past a cursor, or a handful of ids),
-- and pruning walks it from the oldest; each run adds two rows, so no other index is paid for.
-- No foreign key to the run: a log row costs one insert and nothing else.
create table data.job_run_events (
  id     bigint      generated always as identity primary key,
  run_id bigint      not null,
  job_id bigint      not null,
  status text        not null,
  at     timestamptz not null
);

-- Scheduling is serialised per owner by a lock that users cannot take: a row of this table, one
-- per owner, made on first use. Locking a row needs UPDATE on its table, which only $data (the
-- owner) and $code have; an advisory key, which any session may take, let anyone stall another
-- owner's scheduling. The row is updated, not just locked: a concurrent REPEATABLE READ or
-- SERIALIZABLE transaction that counted the owner's jobs before the holder committed then fails
-- with a serialization error (40001) instead of counting from a stale snapshot and overshooting
-- the bound.
create table data.owner_locks (
  owner             text        primary key check (char_length(owner) between 1 and 63),
  -- When the owner last passed the per-owner bound; written so that the lock is a write (above).
  last_scheduled_at timestamptz not null default now()
);

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select, insert, update, delete on data.jobs, data.job_runs, data.executors to %I', db || '$code');
  execute format('grant select, insert on data.time_zones to %I', db || '$code');
  execute format('grant select, insert, delete on data.verdicts, data.job_run_events to %I', db || '$code');
  -- The starting point of an empty log is the identity's last value (code.run_events_bounds).
  execute format('grant select on sequence data.job_run_events_id_seq to %I', db || '$code');
  -- UPDATE is what a row lock needs.
  execute format('grant select, insert, update on data.owner_locks to %I', db || '$code');
  -- The api views read the tables as their owner; $api gets nothing but SELECT.
  execute format('grant select on data.jobs, data.job_runs, data.job_run_events to %I', db || '$api');
end;
$grants$;

reset role;
