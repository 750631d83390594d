-- A job may pause itself after a number of failures in a row (option max_consecutive_failures):
-- the job counts the runs that ended failed or timed out since its last success, and says why it
-- is paused (by whom, or after how many failures). Resuming resets both.

select set_config('role', current_database() || '$data', true);
alter table data.jobs
  add column consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
  add column paused_reason text;
reset role;
