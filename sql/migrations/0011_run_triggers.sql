-- Each run says what made it: `trigger` is `schedule` (its schedule, or a one-off's time),
-- `run_now` (a run-now request), `retry` (after a failure or timeout), `lost_retry` (after its
-- executor lost it) or `catch_up` (a claim that found the job behind its schedule). Rows before
-- this migration have none.

select set_config('role', current_database() || '$data', true);
alter table data.job_runs add column trigger text
  check (trigger in ('schedule', 'run_now', 'retry', 'lost_retry', 'catch_up'));
reset role;

select set_config('role', current_database() || '$code', true);
alter type code.claim_plan add attribute trigger text;
reset role;
