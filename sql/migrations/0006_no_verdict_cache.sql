-- The eligibility check no longer remembers its verdicts for the rest of a transaction.
--
-- They were kept for the runs that followed in the same transaction, back when a batch of runs
-- shared one. Each run is now its own transaction (0005), so a remembered verdict was never
-- used again: writing it and clearing it out cost each run an insert and each claim a delete,
-- and concurrent claims waited on each other's deletes. The check runs in full before every call,
-- and its locks still hold what it checked until the run commits.

-- IF EXISTS: on a fresh install the routines come after the migrations, so these never existed.
drop function if exists code.remember_verdict(text, text, jsonb, oid, text, text[], bigint);
drop function if exists code.verdict_key(text, text, jsonb);
drop function if exists code.catalog_writes();

select set_config('role', current_database() || '$data', true);
drop table data.verdicts;
reset role;
