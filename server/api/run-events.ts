import type { WithPgClient } from 'postgraphile/@dataplan/pg';
import { context, lambda, listen, type GrafastSubscriber } from 'postgraphile/grafast';
import { extendSchema } from 'postgraphile/utils';
import type { Identity } from './auth.ts';

/** The channel the executor notifies on (sql/0010_executor.sql, code.notify_run). */
export const RUN_EVENTS_CHANNEL = 'hardcron_run_events';

/** Runs whose last delivered status a subscription remembers (to drop repeats). */
const REMEMBERED_RUNS = 10_000;

type PgSettings = Record<string, string | undefined> | null | undefined;

/**
 * `jobRunEvents(jobId)`: the run of each event, read again through api.job_runs as the
 * subscriber. NOTIFY payloads are not trusted (anyone may notify on any channel): an event only
 * names a run; what the subscriber receives is the row as it may see it now, and nothing at all
 * when it may not see it. A status already delivered for a run is not delivered twice. The
 * subscription ends when the subscriber's token expires.
 */
export const RunEventsPlugin = extendSchema((build) => {
  const runs = build.pgResources.job_runs;
  if (!runs) throw new Error('api.job_runs is missing from the schema: is the database migrated?');
  return {
    typeDefs: /* GraphQL */ `
      extend type Subscription {
        """
        The runs of your jobs as they change state (running, then their outcome). With jobId, the
        runs of that job only. Ends when your token expires.
        """
        jobRunEvents(jobId: BigInt): JobRun
      }
    `,
    objects: {
      Subscription: {
        plans: {
          jobRunEvents: {
            subscribePlan(_$root, fieldArgs) {
              const $subscriber = lambda(
                [
                  context().get('pgSubscriber'),
                  context().get('withPgClient'),
                  context().get('pgSettings'),
                  context().get('hardcronIdentity'),
                  fieldArgs.getRaw('jobId'),
                ],
                ([source, withPgClient, pgSettings, identity, jobId]) =>
                  new VisibleRunEvents(
                    source as GrafastSubscriber,
                    withPgClient as WithPgClient,
                    pgSettings as PgSettings,
                    identity as Identity | undefined,
                    jobId == null ? null : String(jobId),
                  ),
                true,
              );
              return listen($subscriber, RUN_EVENTS_CHANNEL, ($runId) => $runId);
            },
            plan($runId) {
              return runs.get({ id: $runId });
            },
          },
        },
      },
    },
  };
});

/** A subscriber that turns raw run events into the ids of runs this caller may see. */
class VisibleRunEvents implements GrafastSubscriber {
  private readonly delivered = new Map<string, string>();

  constructor(
    private readonly source: GrafastSubscriber,
    private readonly withPgClient: WithPgClient,
    private readonly pgSettings: PgSettings,
    private readonly identity: Identity | undefined,
    private readonly jobId: string | null,
  ) {}

  async subscribe<TTopic extends string | number>(topic: TTopic): Promise<AsyncIterableIterator<string>> {
    const events = await this.source.subscribe(topic);
    return this.visibleRuns(events[Symbol.asyncIterator](), this.identity?.expiresAt ?? null);
  }

  private async *visibleRuns(events: AsyncIterator<unknown>, expiresAt: number | null): AsyncIterableIterator<string> {
    const expiry = expiresAt === null ? null : untilExpiry(expiresAt);
    try {
      for (;;) {
        const next = expiry ? await Promise.race([events.next(), expiry.promise]) : await events.next();
        if (next === EXPIRED || next.done) return;
        const runId = runIdOf(next.value);
        if (runId === null) continue;
        const status = await this.visibleStatus(runId);
        if (status === null || this.delivered.get(runId) === status) continue;
        this.remember(runId, status);
        yield runId;
      }
    } finally {
      expiry?.cancel();
      await events.return?.();
    }
  }

  /** The run's status as the subscriber sees it through api.job_runs, or null when it cannot. */
  private async visibleStatus(runId: string): Promise<string | null> {
    const { rows } = await this.withPgClient(this.pgSettings ?? null, (client) =>
      client.query<{ status: string }>({
        text: `select r.status from api.job_runs r where r.id = $1::bigint and ($2::bigint is null or r.job_id = $2::bigint)`,
        values: [runId, this.jobId],
      }),
    );
    return rows[0]?.status ?? null;
  }

  private remember(runId: string, status: string): void {
    this.delivered.delete(runId);
    this.delivered.set(runId, status);
    if (this.delivered.size > REMEMBERED_RUNS) {
      const oldest = this.delivered.keys().next().value;
      if (oldest !== undefined) this.delivered.delete(oldest);
    }
  }
}

const EXPIRED = Symbol('expired');
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_BIGINT = 9223372036854775807n;

function untilExpiry(expiresAt: number): { promise: Promise<typeof EXPIRED>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<typeof EXPIRED>((resolve) => {
    // setTimeout fires at once for delays beyond 2^31-1 ms: re-arm until the time has come.
    const arm = (): void => {
      const left = expiresAt - Date.now();
      if (left <= 0) resolve(EXPIRED);
      else timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    arm();
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** The run id of a NOTIFY payload `{"run_id": …}`, or null for anything else. */
function runIdOf(payload: unknown): string | null {
  if (typeof payload !== 'string' || payload.length > 1000) return null;
  try {
    const runId: unknown = (JSON.parse(payload) as { run_id?: unknown }).run_id;
    const text = typeof runId === 'number' && Number.isSafeInteger(runId) ? String(runId) : runId;
    // A forged id outside bigint must not make the re-read fail for every subscriber.
    return typeof text === 'string' && /^[1-9][0-9]{0,18}$/.test(text) && BigInt(text) <= MAX_BIGINT ? text : null;
  } catch {
    return null;
  }
}
