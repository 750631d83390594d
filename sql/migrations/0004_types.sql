-- Composite types of the logic in schema code (owned by $code), used between its functions.

select set_config('role', current_database() || '$code', true);

-- A parsed cron expression (see sql/routines/code/cron.sql): the values each field allows.
create type code.cron_spec as (
  seconds     integer[],
  minutes     integer[],
  hours       integer[],
  days        integer[],
  months      integer[],
  weekdays    integer[],
  any_day     boolean,   -- day-of-month field is * or ?
  any_weekday boolean    -- day-of-week field is * or ?
);

-- What the eligibility check decides (see sql/routines/code/eligibility.sql).
create type code.verdict as (
  reason         text,     -- null: eligible; else owner_not_eligible | function_not_eligible | arguments_not_eligible
  rule           integer,  -- the eligibility rule that failed, numbered as in code.check_eligibility
  message        text,     -- for the scheduling caller only
  function_oid   oid,      -- the resolved function
  function_owner text      -- its owner's role name
);

-- What a claim means for one job (see sql/routines/code/claim.sql): which occurrence, which
-- attempt, the job's next state, skip or run.
create type code.claim_plan as (
  occurrence          timestamptz,  -- the run's scheduled_for
  attempt             integer,
  next_run_at         timestamptz,  -- the job's new state
  extra_run_at        timestamptz,
  retry_at            timestamptz,
  retry_scheduled_for timestamptz,
  retry_attempt       integer,
  status              text,         -- running | skipped
  timeout_ms          integer
);

reset role;
