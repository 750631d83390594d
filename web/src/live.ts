import { useSubscription } from '@urql/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { RunEventsSubscription } from './operations.ts';

/** The newest run event this tab has received, from any page's subscription. */
let lastSeenEventId: string | null = null;

/**
 * Calls `refresh` when a run the user may see changes state (one of a job's runs, with jobId):
 * the page then fetches what it shows again, so new runs appear and change status without a
 * reload. Events coming in bursts (a per-second schedule, a catch-up) cause one fetch per
 * quarter second at most.
 *
 * A subscription without `after` starts where the server's log stands when it registers, which
 * may be after the page's first query ran: an event in between would be missed, and a run that
 * started then would show only when it ends. So the subscription resumes after the newest event
 * this tab has seen; a job page opened first replays its job's logged events (`after: 0`, the
 * last hour of that job only), which costs a few refetches at most. graphql-ws re-subscribes
 * with the same `after` after a reconnection, so nothing in an outage is missed either.
 */
export function useRunEvents(jobId: string | null, refresh: () => void): { lastEventId: string | null; error: string | null } {
  const refreshRef = useRef(refresh);
  refreshRef.current = refresh;
  const timer = useRef<number | null>(null);
  // Fixed for the life of the page: new variables would start a new subscription.
  const [variables] = useState(() => {
    const after = lastSeenEventId ?? (jobId ? '0' : null);
    return { ...(jobId ? { jobId } : {}), ...(after ? { after } : {}) };
  });
  const [result] = useSubscription({ query: RunEventsSubscription, variables });
  const eventId = result.data?.jobRunEvents?.id ?? null;
  useEffect(() => {
    if (eventId === null) return;
    if (lastSeenEventId === null || BigInt(eventId) > BigInt(lastSeenEventId)) lastSeenEventId = eventId;
    if (timer.current !== null) return;
    timer.current = window.setTimeout(() => {
      timer.current = null;
      refreshRef.current();
    }, 250);
  }, [eventId]);
  useEffect(
    () => () => {
      if (timer.current !== null) window.clearTimeout(timer.current);
    },
    [],
  );
  return { lastEventId: eventId, error: result.error ? result.error.message : null };
}
