-- Cron expressions take cron-parser's L (the last day of the month), nL (the last weekday n of the
-- month) and n#k (the k-th weekday n of the month). None of them is a set of field values, so the
-- parsed form (sql/routines/code/cron.sql) carries them beside the sets.

select set_config('role', current_database() || '$code', true);
alter type code.cron_spec
  add attribute last_day      boolean,    -- day-of-month lists L
  add attribute last_weekdays integer[],  -- day-of-week nL: the weekdays n (0-6) whose last one in the month matches
  add attribute nth_week      integer;    -- day-of-week n#k: k (1-5), with weekdays {n}; 0 when there is no #
reset role;
