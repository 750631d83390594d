import { useSubscription } from '@urql/preact';
import { useEffect, useRef } from 'preact/hooks';
import { RunEventsSubscription } from './operations.ts';

/**
 * Calls `refresh` when a run the user may see changes state (one of a job's runs, with jobId):
 * the page then fetches what it shows again, so new runs appear and change status without a
 * reload. Events coming in bursts (a per-second schedule, a catch-up) cause one fetch per
 * quarter second at most.
 */
export function useRunEvents(jobId: string | null, refresh: () => void): { lastEventId: string | null; error: string | null } {
  const refreshRef = useRef(refresh);
  refreshRef.current = refresh;
  const timer = useRef<number | null>(null);
  const [result] = useSubscription({ query: RunEventsSubscription, variables: jobId ? { jobId } : {} });
  const eventId = result.data?.jobRunEvents?.id ?? null;
  useEffect(() => {
    if (eventId === null || timer.current !== null) return;
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
