-- Each claim of a run gets a token of its own, and the executor names a run by its id and that
-- token from then on.
--
-- After an asynchronous failover the new primary hands out run ids again that the old one had
-- already used: an executor still holding a run id from before the switch could otherwise start,
-- record or declare lost a different run that now has the same id. A random token, made by the
-- claim and checked by every later step (start, record after an interruption, the sweep of one
-- run), names the claim itself: no other claim, on any server, has it.

select set_config('role', current_database() || '$data', true);
alter table data.job_runs add column claim_token uuid;
reset role;

-- IF EXISTS: on a fresh install the routines come after the migrations, so these never existed.
drop function if exists executor.claim_runs(text, integer, text[], integer[], integer);
drop function if exists code.claim_runs(text, integer, text[], integer[], integer);
drop function if exists executor.run(bigint, text);
drop function if exists executor.start_run(bigint, text);
drop function if exists code.start_run(bigint, text);
drop function if exists executor.finish_interrupted(bigint, timestamptz, text, text);
drop function if exists executor.sweep_runs(numeric, text, bigint);
drop function if exists code.sweep_runs(interval, text, bigint);
