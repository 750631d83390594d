-- Occurrences that were never run are recorded: one `missed` row per gap.
--
-- When a job is claimed behind its schedule (the executors were down, or busy), its missed-run
-- policy runs the newest occurrence (`latest`), the last `max_missed` (`all`) or none that is
-- over a minute old (`none`). The occurrences it passes over used to leave no row, so that a
-- missed occurrence could not be told from one whose run vanished (in a failover, say). Now the
-- claim that passes over them inserts one `missed` row: `scheduled_for` is the first occurrence
-- passed over and `missed_before` the occurrence the job went on with, so every occurrence of
-- the schedule in [scheduled_for, missed_before) was missed. One row whatever the gap: catching
-- up still costs the same after a minute or a year.

select set_config('role', current_database() || '$data', true);
alter table data.job_runs add column missed_before timestamptz;
alter table data.job_runs drop constraint job_runs_status_check;
alter table data.job_runs add constraint job_runs_status_check
  check (status in ('running', 'succeeded', 'failed', 'rejected', 'timed_out', 'skipped', 'lost', 'cancelled', 'missed'));
alter table data.job_runs add constraint job_runs_missed
  check ((status = 'missed') = (missed_before is not null) and (missed_before is null or missed_before > scheduled_for));
reset role;

-- What a claim decides for a job now includes the gap it passes over.
select set_config('role', current_database() || '$code', true);
alter type code.claim_plan add attribute missed_from timestamptz;  -- the first occurrence passed over, if any
reset role;
