-- Run history in partitions: data.job_runs is partitioned by range of id, one partition per
-- period of claims (a week by default: every partition costs each read of the history a little
-- planning, so a year of daily partitions would slow every page; see docs/performance.md), so that retention empties whole partitions and never runs
-- a long DELETE (sql/routines/data/run_partitions.sql, code/retention.sql).
--
-- Why by id: every operation on a run names it by id (start, finish, sweep, cancel), and every
-- page of history is ordered by id. With id as the partition key, a lookup by id reads one
-- partition, and "the newest runs of a job" reads the partitions newest first and stops when it
-- has its page (an ordered Append), however many partitions there are. Ids come from one
-- sequence; opening a partition moves the sequence to the partition's first id, so a claim
-- always inserts into the newest partition, and an id tells which partition holds its run.
--
-- A unique key on a partitioned table must contain the partition key, so the key of an
-- occurrence, (job_id, scheduled_for, attempt), is unique within each partition (an index per
-- partition), not across them. Exactly-once never rested on it alone: see DESIGN.md, "Exactly
-- once across partitions".
--
-- The partitions are named job_runs_<n>, where n is the first id >> 32: 2^32 ids per partition.
-- The rows recorded so far are moved into partition 0 (ids from 1 to 2^32 - 1).

select set_config('role', current_database() || '$data', true);

alter table data.job_runs rename to job_runs_before_partitioning;
alter index data.job_runs_pkey rename to job_runs_before_partitioning_pkey;
alter index data.job_runs_one_per_occurrence rename to job_runs_before_partitioning_one_per_occurrence;
alter index data.job_runs_by_job rename to job_runs_before_partitioning_by_job;
alter index data.job_runs_running rename to job_runs_before_partitioning_running;

create table data.job_runs (
  id              bigint      generated always as identity,
  -- No foreign key: unscheduling a job keeps its history.
  job_id          bigint      not null,
  owner           text        not null,
  function_owner  text        not null,
  scheduled_for   timestamptz not null,
  started_at      timestamptz,
  finished_at     timestamptz,
  status          text        not null,
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
  claimed_at      timestamptz not null default now(),
  missed_before   timestamptz,
  claim_token     uuid,
  trigger         text        check (trigger in ('schedule', 'run_now', 'retry', 'lost_retry', 'catch_up')),
  constraint job_runs_pkey primary key (id),
  constraint job_runs_status_check
    check (status in ('running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost', 'cancelled', 'missed')),
  constraint job_runs_reject_reason check ((status = 'rejected') = (reject_reason is not null)),
  constraint job_runs_finished check ((status = 'running') = (finished_at is null)),
  constraint job_runs_missed check ((status = 'missed') = (missed_before is not null)
                                    and (missed_before is null or missed_before > scheduled_for))
) partition by range (id);

-- Runs of a job, newest first (an index on each partition).
create index job_runs_by_job on data.job_runs (job_id, id desc);

-- Running runs: overlap checks per job, and the sweep for runs of dead executors.
create index job_runs_running on data.job_runs (job_id) where status = 'running';

-- The partitions. A partition is created ahead (opened_at null), opened when claims start to
-- insert into it (the sequence moves to its first id), settled when no run in it is running any
-- more (claims insert only into the newest partition, so a settled partition never gets a
-- running run again: claims, sweeps and cancels no longer read it), and pruned by retention.
create table data.run_partitions (
  first_id   bigint      primary key check (first_id >= 0 and first_id % 4294967296 = 0),
  name       text        not null unique check (name = 'job_runs_' || (first_id >> 32)),
  opened_at  timestamptz,
  settled_at timestamptz,
  -- When retention last looked at it (null: never).
  pruned_at  timestamptz,
  constraint run_partitions_settled_after_opened check (settled_at is null or opened_at is not null)
);

create table data.job_runs_0 partition of data.job_runs for values from (0) to (4294967296);
create unique index job_runs_0_one_per_occurrence on data.job_runs_0 (job_id, scheduled_for, attempt);
-- The history so far, moved (in a block: its statements name a table that is gone afterwards).
do $move$
begin
  insert into data.run_partitions (first_id, name, opened_at)
  values (0, 'job_runs_0', coalesce((select min(claimed_at) from data.job_runs_before_partitioning), now()));
  insert into data.job_runs overriding system value select * from data.job_runs_before_partitioning;
  perform setval(pg_get_serial_sequence('data.job_runs', 'id'),
                 coalesce((select max(id) from data.job_runs_before_partitioning), 0) + 1, false);
end;
$move$;

-- Settings of the whole installation, one row: the default retention of run history, which a
-- job's options may override (code/retention.sql).
create table data.history_settings (
  singleton          boolean primary key default true check (singleton),
  keep_days          integer not null default 30 check (keep_days between 1 and 36500),
  keep_failed_days   integer not null default 90 check (keep_failed_days between 1 and 36500),
  keep_last_runs     integer not null default 10 check (keep_last_runs between 0 and 10000),
  partition_seconds  integer not null default 604800 check (partition_seconds between 60 and 31622400)
);
insert into data.history_settings default values;

-- Whether the queued retry follows a lost attempt (trigger lost_retry) rather than a failed one:
-- kept on the job, so that a claim need not look the attempt before up among the partitions.
alter table data.jobs add column retry_lost boolean not null default false;
reset role;

-- New arguments (IF EXISTS: on a fresh install the routines come after the migrations).
drop function if exists code.queue_retry(bigint, timestamptz, integer);

-- The views and functions that rested on the old table (their routine files create them again,
-- after every migration); the old table goes with them.
drop table data.job_runs_before_partitioning cascade;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('grant select, insert, update, delete on data.job_runs, data.run_partitions, data.history_settings to %I', db || '$code');
  execute format('grant select on data.job_runs to %I', db || '$api');
end;
$grants$;
