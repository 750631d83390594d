-- Scheduling is serialised per owner by a lock that users cannot take.
--
-- code.require_room_for_job serialised an owner's scheduling with
-- pg_advisory_xact_lock(hashtext('hardcron jobs of ' || owner)). Advisory keys belong to nobody:
-- any session of any role may take any key, and this one was easy to compute. Holding an owner's
-- key stalled every schedule_job of that owner, and each stalled GraphQL request held a
-- connection of the server's pool while it waited.
--
-- Now the lock is a row of data.owner_locks, one per owner, made on first use. Locking a row
-- needs UPDATE on its table, and only $data (the owner) and $code have it. The row is updated,
-- not just locked: a concurrent REPEATABLE READ or SERIALIZABLE transaction that counted the
-- owner's jobs before the holder committed then fails with a serialization error (40001)
-- instead of counting from a stale snapshot and overshooting the bound.

select set_config('role', current_database() || '$data', true);

create table data.owner_locks (
  owner             text        primary key check (char_length(owner) between 1 and 63),
  -- When the owner last passed the per-owner bound; written so that the lock is a write (above).
  last_scheduled_at timestamptz not null default now()
);

do $grants$
begin
  -- UPDATE is what a row lock needs; nobody else gets anything.
  execute format('grant select, insert, update on data.owner_locks to %I', current_database() || '$code');
end;
$grants$;

reset role;

select set_config('role', current_database() || '$code', true);

-- One role owns at most 10,000 jobs: a job that schedules jobs (as its owner may) cannot grow
-- without bound. Serialised per owner by the owner's row in data.owner_locks, held until the
-- calling transaction ends, so concurrent calls cannot overshoot.
create or replace function code.require_room_for_job(owner text)
  returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  most constant integer := 10000;
begin
  insert into data.owner_locks (owner) values (require_room_for_job.owner) on conflict do nothing;
  update data.owner_locks l set last_scheduled_at = now() where l.owner = require_room_for_job.owner;
  if (select count(*) from (select from data.jobs j where j.owner = require_room_for_job.owner limit most) x) >= most then
    perform code.fail('HC215', format('role %s already owns %s jobs, the most one role may own', quote_ident(owner), most),
                      'Unschedule jobs that are no longer needed.');
  end if;
end;
$$;

reset role;
