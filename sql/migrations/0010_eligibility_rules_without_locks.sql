-- The eligibility rules are asked without locking (code.eligibility_verdict), so that a caller
-- can list what it may schedule; code.check_eligibility takes the locks, the owner's frame's
-- among them, before asking. The frame's rule therefore takes the frame's oid, as locked, and
-- reads only: code.frame_problem(oid, oid) replaces the one that looked the frame up by the
-- owner's name and locked it itself.

-- IF EXISTS: on a fresh install the routines come after the migrations, so it never existed.
drop function if exists code.frame_problem(text, oid);
