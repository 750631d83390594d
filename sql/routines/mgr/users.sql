-- End users: adding and removing them, as $mgr may (through these procedures only).

-- Adds an end user: a role that may log in (with a password) or not, optionally a scheduler,
-- member of the given roles; a scheduler gets its frame (mgr/frames.sql).
create or replace procedure mgr.add_user(
  nickname  in text,
  passwd    in text    default null,
  scheduler in boolean default false,
  member_of in text[]  default '{}')
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  db     constant text := current_database();
  r_name constant text not null := mgr.local_role_name(nickname);
  owner_nickname text;
  owner_role     text;
begin
  if to_regrole(quote_ident(r_name)) is not null then
    raise exception using errcode = 'HC103', message = format('user %L already exists', nickname);
  end if;
  if member_of is null or cardinality(member_of) > 100 then
    raise exception using errcode = 'HC101', message = 'member_of must be a list of at most 100 nicknames';
  end if;

  if passwd is null then
    execute format('create role %I nologin inherit', r_name);
  else
    execute format('create role %I login inherit password %L', r_name, passwd);
  end if;
  execute format('grant %I to %I', db || '$client', r_name);
  if scheduler then
    execute format('grant %I to %I', db || '$job_scheduler', r_name);
  end if;

  foreach owner_nickname in array member_of loop
    owner_role := mgr.local_role_name(owner_nickname);
    if to_regrole(quote_ident(owner_role)) is null then
      raise exception using errcode = 'HC104', message = format('role %L does not exist', owner_nickname);
    end if;
    execute format('grant %I to %I', owner_role, r_name);
  end loop;

  execute format('grant %I to %I', r_name, db || '$authenticator');
  if scheduler then
    execute format('grant %I to %I', r_name, db || '$executor');
    call mgr.create_frame(r_name);
  end if;
end;
$body$;

-- Remove an end user created by add_user, with everything it owns in this database.
create or replace procedure mgr.remove_user(nickname in text)
  security definer
  set search_path = pg_catalog, pg_temp
  language plpgsql
as $body$
declare
  r_name constant text not null := mgr.local_role_name(nickname);
begin
  if not exists (
    select from pg_auth_members m
    where m.member = to_regrole(quote_ident(r_name))
      and m.roleid = to_regrole(quote_ident(current_database() || '$client'))
  ) then
    raise exception using errcode = 'HC104', message = format('user %L does not exist', nickname);
  end if;
  execute format('drop owned by %I', r_name);
  execute format('drop role %I', r_name);
end;
$body$;

do $grants$
declare
  db constant text := current_database();
begin
  execute format('revoke all on procedure mgr.add_user(text,text,boolean,text[]) from public');
  execute format('grant execute on procedure mgr.add_user(text,text,boolean,text[]) to %I', db || '$mgr');
  execute format('revoke all on procedure mgr.remove_user(text) from public');
  execute format('grant execute on procedure mgr.remove_user(text) to %I', db || '$mgr');
end;
$grants$;
