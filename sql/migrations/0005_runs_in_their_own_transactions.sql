-- Each run is its own transaction, and a claimed run that nobody is running is found without
-- waiting on anyone's locks (sql/routines/code/leases.sql, code.sweep_runs).
--
-- A run's transaction locks its row from its first statement to its commit. A `running` run
-- whose row nobody holds, and that was claimed longer ago than a claim takes to reach its
-- connection, is therefore not being run by anyone (its executor died, lost its connection or
-- never read the claim's answer): it is declared lost and retried. `claimed_at` says how long ago.
--
-- The claim takes the executor's per-owner room (code.claim_runs), so its signature changes;
-- code.expire_leases, which waited on the row locks of a cut-off executor's open batch, gives
-- way to code.sweep_runs.

select set_config('role', current_database() || '$data', true);
alter table data.job_runs add column claimed_at timestamptz not null default now();
reset role;

-- IF EXISTS: on a fresh install the routines come after the migrations, so these never existed.
drop function if exists executor.claim_runs(text, integer);
drop function if exists code.claim_runs(text, integer);
drop function if exists code.expire_leases();
-- Catching up finds the newest occurrence directly (sql/routines/code/claim.sql): new arguments.
drop function if exists code.catch_up(code.cron_spec, text, timestamptz, timestamptz);

-- Pausing or unscheduling a job cancels its running run, which is recorded `cancelled`. The
-- request is a row (code.request_cancel), so that it reaches a run that has been claimed but not
-- started as well as one that is running, and survives a missed notification.
select set_config('role', current_database() || '$data', true);
alter table data.job_runs drop constraint job_runs_status_check;
alter table data.job_runs add constraint job_runs_status_check
  check (status in ('running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost', 'cancelled'));
create table data.cancel_requests (
  run_id       bigint      primary key,
  requested_at timestamptz not null default now(),
  -- When the backend running it was signalled: once only, or a second cancel could interrupt
  -- the run while it records that it was cancelled.
  signalled_at timestamptz
);
do $grants$
begin
  execute format('grant select, insert, update, delete on data.cancel_requests to %I', current_database() || '$code');
end;
$grants$;
reset role;
