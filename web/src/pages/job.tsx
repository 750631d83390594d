import { useMutation, useQuery } from '@urql/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { RunChart } from '../chart.tsx';
import { Alerts, Link, StatusBadge, useTitle } from '../components.tsx';
import { apiErrors, type ApiError } from '../errors.ts';
import { formatMs, formatTime } from '../format.ts';
import type { DashboardJobQuery } from '../gql/graphql.ts';
import { useRunEvents } from '../live.ts';
import {
  CancelRunMutation,
  JobQuery,
  PauseJobMutation,
  ResumeJobMutation,
  RunJobNowMutation,
  UnscheduleJobMutation,
} from '../operations.ts';
import { navigate } from '../router.ts';
import { describeSchedule } from '../schedule.ts';
import { isFailure, statusKey } from '../status.ts';

const RUNS_PER_PAGE = 20;

type Job = NonNullable<DashboardJobQuery['job']>;
type Run = NonNullable<Job['runs']['nodes'][number]>;

export function JobPage(props: { id: string }) {
  const [page, setPage] = useState(0);
  const [result, reexecute] = useQuery({
    query: JobQuery,
    variables: { id: props.id, first: RUNS_PER_PAGE, offset: page * RUNS_PER_PAGE },
  });
  useRunEvents(props.id, () => reexecute({ requestPolicy: 'network-only' }));
  const job = result.data?.job;
  useTitle(job ? (job.name ?? `Job ${job.id}`) : `Job ${props.id}`);

  if (result.error && !job) return <Alerts errors={apiErrors(result.error)} />;
  if (!job) {
    return result.fetching ? (
      <p role="status">Loading…</p>
    ) : (
      <section>
        <h1>Job not found</h1>
        <p>
          There is no job {props.id}, or it is not yours to see. <Link to="/">See your jobs</Link>.
        </p>
      </section>
    );
  }
  const runs = job.runs.nodes.filter((run): run is Run => run !== null);
  const pages = Math.max(1, Math.ceil(job.runs.totalCount / RUNS_PER_PAGE));
  const recent = (job.recent.nodes ?? [])
    .filter((run) => run !== null)
    .map((run) => ({ id: run.id, status: run.status, durationMs: run.durationMs ?? null, latenessMs: run.latenessMs ?? null }))
    .reverse();

  return (
    <section aria-labelledby="job-title">
      <p>
        <Link to="/">← Jobs</Link>
      </p>
      <h1 id="job-title">{job.name ?? `Job ${job.id}`}</h1>
      <JobDetails job={job} />
      <Actions job={job} refresh={() => reexecute({ requestPolicy: 'network-only' })} />
      <h2>Recent runs</h2>
      <RunChart runs={recent} />
      <h2 id="runs-title">Runs</h2>
      <div class="table-wrap">
        <table class="runs stack" aria-labelledby="runs-title">
          <caption>
            {job.runs.totalCount} {job.runs.totalCount === 1 ? 'run' : 'runs'}, newest first
          </caption>
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Status</th>
              <th scope="col">Trigger</th>
              <th scope="col">Scheduled for</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
              <th scope="col">Lateness</th>
              <th scope="col">Rows</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          {runs.map((run) => (
            <RunRows key={run.id} run={run} timeZone={job.timeZone ?? null} />
          ))}
          {runs.length === 0 ? (
            <tbody>
              <tr>
                <td colSpan={9}>No runs yet: they appear here as they start.</td>
              </tr>
            </tbody>
          ) : null}
        </table>
      </div>
      <nav class="pager" aria-label="Pages of runs">
        <button type="button" class="secondary" disabled={page === 0} onClick={() => setPage(page - 1)}>
          Newer
        </button>
        <span>
          Page {Math.min(page + 1, pages)} of {pages}
        </span>
        <button type="button" class="secondary" disabled={page + 1 >= pages} onClick={() => setPage(page + 1)}>
          Older
        </button>
      </nav>
    </section>
  );
}

function JobDetails(props: { job: Job }) {
  const { job } = props;
  return (
    <dl class="details">
      <dt>Function</dt>
      <dd>
        <code>{job.functionSignature}</code>
      </dd>
      <dt>Arguments</dt>
      <dd>
        <code>{JSON.stringify(job.arguments ?? [])}</code>
      </dd>
      <dt>Schedule</dt>
      <dd>
        {job.schedule ? (
          <>
            {describeSchedule(job.schedule) ?? job.schedule} (<code>{job.schedule}</code>)
          </>
        ) : (
          `Once, ${formatTime(job.runAt, job.timeZone)}`
        )}
      </dd>
      <dt>Time zone</dt>
      <dd>{job.timeZone ?? '—'}</dd>
      <dt>Next run</dt>
      <dd data-testid="next-run">{formatTime(job.nextRunAt, job.timeZone)}</dd>
      <dt>Last status</dt>
      <dd>
        <StatusBadge status={job.lastStatus} />
      </dd>
      <dt>Enabled</dt>
      <dd data-testid="enabled">{job.enabled ? 'Yes' : `Paused${job.pausedReason ? ` (${job.pausedReason})` : ''}`}</dd>
      <dt>Owner</dt>
      <dd>{job.owner}</dd>
      <dt>Options</dt>
      <dd>
        {Object.entries((job.options ?? {}) as Record<string, unknown>)
          .filter(([, value]) => value !== null)
          .map(([key, value]) => `${key.replaceAll('_', ' ')}: ${String(value)}`)
          .join(', ')}
      </dd>
    </dl>
  );
}

function Actions(props: { job: Job; refresh: () => void }) {
  const { job } = props;
  const [errors, setErrors] = useState<ApiError[]>([]);
  const [message, setMessage] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const confirmButton = useRef<HTMLButtonElement>(null);
  const [pause, doPause] = useMutation(PauseJobMutation);
  const [resume, doResume] = useMutation(ResumeJobMutation);
  const [runNow, doRunNow] = useMutation(RunJobNowMutation);
  const [unschedule, doUnschedule] = useMutation(UnscheduleJobMutation);
  const busy = pause.fetching || resume.fetching || runNow.fetching || unschedule.fetching;
  useEffect(() => {
    if (confirming) confirmButton.current?.focus();
  }, [confirming]);

  const act = async (run: () => Promise<{ error?: Parameters<typeof apiErrors>[0] }>, done: string): Promise<boolean> => {
    setErrors([]);
    setMessage(null);
    const outcome = await run();
    const failed = apiErrors(outcome.error);
    if (failed.length) {
      setErrors(failed);
      return false;
    }
    setMessage(done);
    props.refresh();
    return true;
  };
  const variables = { jobId: job.id };
  return (
    <div class="actions" role="group" aria-label="Job actions">
      {job.enabled ? (
        <button type="button" class="secondary" disabled={busy} onClick={() => void act(() => doPause(variables), 'Paused.')}>
          Pause
        </button>
      ) : (
        <button type="button" class="secondary" disabled={busy} onClick={() => void act(() => doResume(variables), 'Resumed.')}>
          Resume
        </button>
      )}
      <button type="button" class="secondary" disabled={busy} onClick={() => void act(() => doRunNow(variables), 'A run is due now.')}>
        Run now
      </button>
      <button type="button" class="danger" disabled={busy} onClick={() => setConfirming(true)} aria-expanded={confirming}>
        Unschedule…
      </button>
      {confirming ? (
        <div class="confirm" role="alertdialog" aria-labelledby="confirm-text">
          <p id="confirm-text">Unschedule “{job.name ?? `job ${job.id}`}”? It will not run again; its run history stays.</p>
          <button
            type="button"
            class="danger"
            ref={confirmButton}
            disabled={busy}
            onClick={() =>
              void act(() => doUnschedule(variables), 'Unscheduled.').then((ok) => {
                setConfirming(false);
                if (ok) navigate('/');
              })
            }
          >
            Yes, unschedule
          </button>
          <button type="button" class="secondary" onClick={() => setConfirming(false)}>
            Keep it
          </button>
        </div>
      ) : null}
      <div class="action-result" role="status">
        {message}
      </div>
      <Alerts errors={errors} />
    </div>
  );
}

function RunRows(props: { run: Run; timeZone: string | null }) {
  const { run } = props;
  const [cancel, doCancel] = useMutation(CancelRunMutation);
  const [errors, setErrors] = useState<ApiError[]>([]);
  const hasError = Boolean(run.errorSqlstate || run.errorMessage || run.rejectReason) || isFailure(run.status);
  return (
    <tbody class="run" data-run-id={run.id} data-status={statusKey(run.status)}>
      <tr>
        <td data-label="Run">{run.id}{run.attempt && run.attempt > 1 ? ` (attempt ${run.attempt})` : ''}</td>
        <td data-label="Status">
          <StatusBadge status={run.status} />
        </td>
        <td data-label="Trigger">{run.trigger?.replaceAll('_', ' ') ?? '—'}</td>
        <td data-label="Scheduled for">
          {formatTime(run.scheduledFor, props.timeZone)}
          {run.missedBefore ? ` up to ${formatTime(run.missedBefore, props.timeZone)}` : ''}
        </td>
        <td data-label="Started">{formatTime(run.startedAt, props.timeZone)}</td>
        <td data-label="Duration">{formatMs(run.durationMs)}</td>
        <td data-label="Lateness">{formatMs(run.latenessMs)}</td>
        <td data-label="Rows">{run.rowsAffected ?? '—'}</td>
        <td data-label="Actions">
          {statusKey(run.status) === 'running' ? (
            <button
              type="button"
              class="secondary small"
              disabled={cancel.fetching}
              onClick={() =>
                void doCancel({ runId: run.id }).then((outcome) => setErrors(apiErrors(outcome.error)))
              }
            >
              Cancel run {run.id}
            </button>
          ) : null}
        </td>
      </tr>
      {hasError || errors.length ? (
        <tr class="run-error">
          <td colSpan={9}>
            <dl class="error-fields">
              {run.errorSqlstate ? (
                <>
                  <dt>SQLSTATE</dt>
                  <dd data-field="sqlstate">
                    <code>{run.errorSqlstate}</code>
                  </dd>
                </>
              ) : null}
              {run.errorMessage ? (
                <>
                  <dt>Message</dt>
                  <dd data-field="message">{run.errorMessage}</dd>
                </>
              ) : null}
              {run.errorDetail ? (
                <>
                  <dt>Detail</dt>
                  <dd data-field="detail">{run.errorDetail}</dd>
                </>
              ) : null}
              {run.errorHint ? (
                <>
                  <dt>Hint</dt>
                  <dd data-field="hint">{run.errorHint}</dd>
                </>
              ) : null}
              {run.errorContext ? (
                <>
                  <dt>Context</dt>
                  <dd data-field="context">
                    <pre>{run.errorContext}</pre>
                  </dd>
                </>
              ) : null}
              {run.rejectReason ? (
                <>
                  <dt>Refused because</dt>
                  <dd data-field="reject-reason">{run.rejectReason}</dd>
                </>
              ) : null}
            </dl>
            <Alerts errors={errors} />
          </td>
        </tr>
      ) : null}
    </tbody>
  );
}
