import { useQuery } from '@urql/preact';
import { useState } from 'preact/hooks';
import { Alerts, Link, StatusBadge, useTitle } from '../components.tsx';
import { apiErrors } from '../errors.ts';
import { formatTime } from '../format.ts';
import type { JobCondition, JobOrderBy } from '../gql/graphql.ts';
import { useRunEvents } from '../live.ts';
import { JobsQuery } from '../operations.ts';
import { describeSchedule } from '../schedule.ts';
import { RUN_STATUSES, statusLabel, statusValue, type RunStatusKey } from '../status.ts';

const PAGE_SIZE = 20;

/** Sortable columns and the JobOrderBy values (without _ASC/_DESC) they sort by. */
const SORTS = {
  name: 'NAME',
  function: 'FUNCTION_SIGNATURE',
  schedule: 'SCHEDULE',
  timeZone: 'TIME_ZONE',
  nextRun: 'NEXT_RUN_AT',
  lastStatus: 'LAST_STATUS',
  enabled: 'ENABLED',
} as const;
type SortColumn = keyof typeof SORTS;

export function JobsPage() {
  useTitle('Jobs');
  const [status, setStatus] = useState<RunStatusKey | ''>('');
  const [name, setName] = useState('');
  const [nameDraft, setNameDraft] = useState('');
  const [sort, setSort] = useState<{ column: SortColumn; descending: boolean } | null>(null);
  const [page, setPage] = useState(0);

  const condition: JobCondition = {};
  if (status) condition.lastStatus = statusValue(status);
  if (name) condition.name = name;
  const orderBy: JobOrderBy[] = sort ? [`${SORTS[sort.column]}_${sort.descending ? 'DESC' : 'ASC'}` as JobOrderBy, 'ID_ASC'] : ['ID_ASC'];
  const [result, reexecute] = useQuery({
    query: JobsQuery,
    variables: { first: PAGE_SIZE, offset: page * PAGE_SIZE, orderBy, condition },
  });
  useRunEvents(null, () => reexecute({ requestPolicy: 'network-only' }));

  const jobs = result.data?.jobs;
  const total = jobs?.totalCount ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const sortBy = (column: SortColumn): void => {
    setSort((current) => (current?.column === column ? { column, descending: !current.descending } : { column, descending: false }));
    setPage(0);
  };
  const header = (column: SortColumn, label: string) => {
    const active = sort?.column === column;
    return (
      <th scope="col" aria-sort={active ? (sort.descending ? 'descending' : 'ascending') : 'none'}>
        <button type="button" class="sort" onClick={() => sortBy(column)}>
          {label}
          <span aria-hidden="true">{active ? (sort.descending ? ' ▼' : ' ▲') : ' ↕'}</span>
        </button>
      </th>
    );
  };

  return (
    <section aria-labelledby="jobs-title">
      <div class="title-row">
        <h1 id="jobs-title">Jobs</h1>
        <Link to="/new" class="button">Schedule a job</Link>
      </div>
      <form
        class="filters"
        aria-label="Filter jobs"
        onSubmit={(event) => {
          event.preventDefault();
          setName(nameDraft.trim());
          setPage(0);
        }}
      >
        <div class="field">
          <label for="filter-status">Last status</label>
          <select
            id="filter-status"
            value={status}
            onChange={(e) => {
              setStatus(e.currentTarget.value as RunStatusKey | '');
              setPage(0);
            }}
          >
            <option value="">Any</option>
            {RUN_STATUSES.map((s) => (
              <option key={s} value={s}>
                {statusLabel(s)}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="filter-name">Name (whole name)</label>
          <input id="filter-name" type="search" value={nameDraft} onInput={(e) => setNameDraft(e.currentTarget.value)} />
        </div>
        <button type="submit" class="secondary">
          Filter
        </button>
      </form>
      <Alerts errors={apiErrors(result.error)} />
      <div class="table-wrap">
        <table class="jobs stack">
          <caption>
            {result.fetching && !jobs ? 'Loading jobs…' : `${total} ${total === 1 ? 'job' : 'jobs'}${status || name ? ' matching the filter' : ''}`}
          </caption>
          <thead>
            <tr>
              {header('name', 'Name')}
              {header('function', 'Function')}
              {header('schedule', 'Schedule')}
              {header('timeZone', 'Time zone')}
              {header('nextRun', 'Next run')}
              {header('lastStatus', 'Last status')}
              {header('enabled', 'Enabled')}
            </tr>
          </thead>
          <tbody>
            {(jobs?.nodes ?? []).map((job) =>
              job ? (
                <tr key={job.id} data-job-id={job.id}>
                  <td data-label="Name">
                    <Link to={`/jobs/${job.id}`}>{job.name ?? `Job ${job.id}`}</Link>
                  </td>
                  <td data-label="Function">
                    <code>{job.functionSignature}</code>
                  </td>
                  <td data-label="Schedule">
                    {job.schedule ? (
                      <>
                        <span>{describeSchedule(job.schedule) ?? job.schedule}</span>
                        <br />
                        <code class="muted">{job.schedule}</code>
                      </>
                    ) : (
                      <span>Once{job.runAt ? `, ${formatTime(job.runAt, job.timeZone)}` : ''}</span>
                    )}
                  </td>
                  <td data-label="Time zone">{job.timeZone ?? '—'}</td>
                  <td data-label="Next run">{formatTime(job.nextRunAt, job.timeZone)}</td>
                  <td data-label="Last status">
                    <StatusBadge status={job.lastStatus} />
                  </td>
                  <td data-label="Enabled">{job.enabled ? 'Yes' : <span title={job.pausedReason ?? undefined}>Paused</span>}</td>
                </tr>
              ) : null,
            )}
            {jobs && jobs.nodes.length === 0 ? (
              <tr>
                <td colSpan={7}>
                  {status || name ? 'No job matches the filter.' : (
                    <>
                      No jobs yet. <Link to="/new">Schedule one</Link>.
                    </>
                  )}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Pages of jobs">
        <button type="button" class="secondary" disabled={page === 0} onClick={() => setPage(page - 1)}>
          Previous
        </button>
        <span>
          Page {Math.min(page + 1, pages)} of {pages}
        </span>
        <button type="button" class="secondary" disabled={page + 1 >= pages} onClick={() => setPage(page + 1)}>
          Next
        </button>
      </nav>
    </section>
  );
}
