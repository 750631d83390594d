-- The partitions of the run history (data.job_runs, partitioned by range of id: migration 0015).
-- These functions belong to $data, which owns the table: only the owner of a table may attach
-- and truncate its partitions. $code calls them (code/retention.sql); nobody else may.
--
-- None of them takes a lock on data.job_runs itself that a run, a claim or a reader would wait
-- for, except data.drop_run_partition (see there): a new partition is created on its own and
-- attached (SHARE UPDATE EXCLUSIVE on the parent, which inserts, updates and reads do not
-- conflict with), and old rows go by TRUNCATE of their partition (a lock on that partition only,
-- which runs and claims never touch once it is settled). Each waits at most `lock_timeout` for
-- the locks it needs and fails rather than queue the work of others behind it.

-- Creates the partition after the newest one, not yet opened (claims do not insert into it until
-- data.open_run_partition moves the sequence to it). Nothing is done when one is waiting already.
-- Returns the first id of the waiting partition.
create or replace function data.create_run_partition()
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  set lock_timeout = '1s'
as $$
declare
  waiting bigint := (select p.first_id from data.run_partitions p where p.opened_at is null order by p.first_id limit 1);
  first   bigint;
  name    text;
begin
  if waiting is not null then
    return waiting;
  end if;
  first := (select max(p.first_id) from data.run_partitions p) + 4294967296;
  name := 'job_runs_' || (first >> 32);
  -- On its own first, with the range as a constraint: attaching then checks the constraint
  -- instead of reading the table, and takes no lock that the work on data.job_runs waits for.
  execute format('create table data.%I (like data.job_runs including defaults including constraints)', name);
  execute format('alter table data.%I add constraint %I check (id >= %s and id < %s)',
                 name, name || '_range', first, first + 4294967296);
  execute format('alter table data.job_runs attach partition data.%I for values from (%s) to (%s)',
                 name, first, first + 4294967296);
  execute format('alter table data.%I drop constraint %I', name, name || '_range');
  -- The key of an occurrence, within the partition (see migration 0015).
  execute format('create unique index %I on data.%I (job_id, scheduled_for, attempt)', name || '_one_per_occurrence', name);
  insert into data.run_partitions (first_id, name) values (first, name);
  return first;
end;
$$;

-- Opens the waiting partition: from now on claims insert into it. The sequence is moved forward
-- only (setval is not undone by a rollback: if this transaction failed after it, the next call
-- finds the sequence already there and only records the opening). Returns the partition's first
-- id, or null when none was waiting.
create or replace function data.open_run_partition(at timestamptz)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  first bigint := (select p.first_id from data.run_partitions p where p.opened_at is null order by p.first_id limit 1 for update);
  seq   constant text := pg_get_serial_sequence('data.job_runs', 'id');
  last  bigint;
begin
  if first is null then
    return null;
  end if;
  execute format('select case when is_called then last_value else last_value - 1 end from %s', seq) into last;
  if last < first then
    perform setval(seq, first, false);
  end if;
  update data.run_partitions p set opened_at = at where p.first_id = first;
  return first;
end;
$$;

-- Empties an old partition but for the rows `keep` names: they are copied aside, the partition
-- is truncated, and they are put back with their ids (the kept rows are few: the last runs of
-- each job and the recent failures, see code/retention.sql). One transaction: a reader sees the
-- partition before or after, never without its kept rows. `judged`: how many rows the caller
-- judged. Under the lock the partition must still hold exactly those, none running; otherwise a
-- row came after the judgement (a claim that took its id before the partition was closed) and
-- nothing is done: null is returned, and the next pass judges again. Returns the rows kept.
create or replace function data.empty_run_partition(first_id bigint, keep bigint[], judged bigint)
  returns bigint
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  set lock_timeout = '200ms'
as $$
declare
  name constant text := (select p.name from data.run_partitions p where p.first_id = empty_run_partition.first_id);
  rows    data.job_runs[];
  kept    bigint;
  present bigint;
  running boolean;
begin
  if name is null then
    raise exception using errcode = 'HC301', message = format('no run partition starts at %s', first_id);
  end if;
  -- The lock first (TRUNCATE's): no row can come or change between the check and the truncation.
  execute format('lock table data.%I in access exclusive mode', name);
  execute format('select count(*), coalesce(bool_or(r.status = %L), false) from data.%I r', 'running', name) into present, running;
  if present <> judged or running then
    return null;
  end if;
  execute format('select array_agg(r) from data.%I r where r.id = any ($1)', name) into rows using keep;
  execute format('truncate data.%I', name);
  execute format('insert into data.%I overriding system value select * from unnest($1)', name) using rows;
  get diagnostics kept = row_count;
  return kept;
end;
$$;

-- Drops an empty old partition. Detaching or dropping a partition takes ACCESS EXCLUSIVE on
-- data.job_runs, which every run and claim in flight holds a lock on: so it waits at most 20 ms
-- (runs and claims that come meanwhile wait behind it for that long, at most once per retention
-- pass) and gives up rather than queue everyone behind a long run. Empty partitions cost
-- nothing but a little planning; the next pass tries again. Returns whether it was dropped.
create or replace function data.drop_run_partition(first_id bigint)
  returns boolean
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
  set lock_timeout = '20ms'
as $$
declare
  name constant text := (select p.name from data.run_partitions p where p.first_id = drop_run_partition.first_id);
  newest constant bigint := (select max(p.first_id) from data.run_partitions p where p.opened_at is not null);
  rows_left boolean;
begin
  if name is null or first_id >= newest then
    return false;
  end if;
  begin
    execute format('lock table data.job_runs, data.%I in access exclusive mode', name);
    execute format('select exists (select from data.%I)', name) into rows_left;
    if rows_left then
      return false;
    end if;
    execute format('drop table data.%I', name);
    delete from data.run_partitions p where p.first_id = drop_run_partition.first_id;
    return true;
  exception when lock_not_available then
    return false;
  end;
end;
$$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('revoke all on function data.create_run_partition() from public');
  execute format('revoke all on function data.open_run_partition(timestamptz) from public');
  execute format('revoke all on function data.empty_run_partition(bigint, bigint[], bigint) from public');
  execute format('revoke all on function data.drop_run_partition(bigint) from public');
  execute format('grant execute on function data.create_run_partition() to %I', db || '$code');
  execute format('grant execute on function data.open_run_partition(timestamptz) to %I', db || '$code');
  execute format('grant execute on function data.empty_run_partition(bigint, bigint[], bigint) to %I', db || '$code');
  execute format('grant execute on function data.drop_run_partition(bigint) to %I', db || '$code');
end;
$grants$;
