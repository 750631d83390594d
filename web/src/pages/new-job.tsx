import { useMutation, useQuery } from '@urql/preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Alerts, describedBy, Field, useTitle } from '../components.tsx';
import { apiErrors, fieldOfError, type ApiError } from '../errors.ts';
import { browserTimeZone, knownTimeZones } from '../format.ts';
import type { DashboardSchedulableFunctionsQuery, ScheduleJobInput } from '../gql/graphql.ts';
import { PreviewQuery, ScheduleJobMutation, SchedulableFunctionsQuery } from '../operations.ts';
import { navigate } from '../router.ts';
import { describeSchedule } from '../schedule.ts';

type SchedulableFunction = NonNullable<NonNullable<DashboardSchedulableFunctionsQuery['schedulableFunctions']>['nodes'][number]>;
type When = 'schedule' | 'at' | 'now';

/** The options of api.schedule_job (sql/routines/code/input.sql); blank means the default. */
const CHOICES = {
  overlap: { label: 'When a run is still going', values: ['skip', 'queue', 'allow'], standard: 'skip' },
  missed: { label: 'Missed occurrences', values: ['latest', 'all', 'none'], standard: 'latest' },
} as const;
const NUMBERS = {
  timeout_seconds: { label: 'Timeout (seconds)', min: 0.001, max: 86400, whole: false, standard: '300' },
  retries: { label: 'Retries after a failure', min: 0, max: 10, whole: true, standard: '0' },
  retry_delay_seconds: { label: 'First retry after (seconds, doubled each time)', min: 0.001, max: 86400, whole: false, standard: '10' },
  max_missed: { label: 'Most missed occurrences made up (with “all”)', min: 1, max: 1000, whole: true, standard: '100' },
  max_consecutive_failures: { label: 'Pause after this many failures in a row', min: 1, max: 1000, whole: true, standard: 'never' },
  keep_days: { label: 'Keep run history for (days)', min: 1, max: 36500, whole: true, standard: 'the server’s' },
  keep_failed_days: { label: 'Keep failed runs for (days)', min: 1, max: 36500, whole: true, standard: 'as other runs' },
  keep_last_runs: { label: 'Always keep the last runs', min: 0, max: 10000, whole: true, standard: 'none' },
} as const;
type OptionKey = keyof typeof CHOICES | keyof typeof NUMBERS;

/** How an argument of a PostgreSQL type is typed in and sent (a JSON array element). */
function argumentKind(type: string): 'integer' | 'number' | 'boolean' | 'date' | 'timestamp' | 'json' | 'text' {
  const t = type.toLowerCase();
  if (t.endsWith('[]') || t === 'json' || t === 'jsonb') return 'json';
  if (['smallint', 'integer', 'bigint', 'int2', 'int4', 'int8'].includes(t)) return 'integer';
  if (t.startsWith('numeric') || t.startsWith('decimal') || t === 'real' || t === 'double precision') return 'number';
  if (t === 'boolean') return 'boolean';
  if (t === 'date') return 'date';
  if (t.startsWith('timestamp')) return 'timestamp';
  return 'text';
}

/** One typed-in argument as JSON, or the reason it cannot be. */
function argumentValue(kind: ReturnType<typeof argumentKind>, text: string): { value: unknown } | { error: string } {
  switch (kind) {
    case 'integer':
      return /^-?\d+$/.test(text.trim()) ? { value: Number(text.trim()) } : { error: 'Enter a whole number.' };
    case 'number':
      return text.trim() !== '' && Number.isFinite(Number(text)) ? { value: Number(text) } : { error: 'Enter a number.' };
    case 'boolean':
      return text === 'true' || text === 'false' ? { value: text === 'true' } : { error: 'Choose true or false.' };
    case 'date':
      return /^\d{4}-\d{2}-\d{2}$/.test(text) ? { value: text } : { error: 'Enter a date.' };
    case 'timestamp': {
      const date = new Date(text);
      return Number.isNaN(date.getTime()) ? { error: 'Enter a date and time.' } : { value: date.toISOString() };
    }
    case 'json':
      try {
        return { value: JSON.parse(text) as unknown };
      } catch {
        return { error: 'Enter JSON, e.g. [1, 2] or {"a": 1}.' };
      }
    case 'text':
      return { value: text };
  }
}

function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

export function NewJobPage() {
  useTitle('Schedule a job');
  const [functions] = useQuery({ query: SchedulableFunctionsQuery });
  const available = (functions.data?.schedulableFunctions?.nodes ?? []).filter((f): f is SchedulableFunction => f !== null);
  const [signature, setSignature] = useState('');
  const chosen = available.find((f) => f.functionSignature === signature) ?? null;
  const [args, setArgs] = useState<string[]>([]);
  const [name, setName] = useState('');
  const [when, setWhen] = useState<When>('schedule');
  const [schedule, setSchedule] = useState('');
  const [timeZone, setTimeZone] = useState(browserTimeZone);
  const [runAt, setRunAt] = useState('');
  const [options, setOptions] = useState<Partial<Record<OptionKey, string>>>({});
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [formErrors, setFormErrors] = useState<ApiError[]>([]);
  const [scheduling, scheduleJob] = useMutation(ScheduleJobMutation);
  const zones = useMemo(knownTimeZones, []);

  // Pick the first function once they are known.
  useEffect(() => {
    if (!signature && available[0]) setSignature(available[0].functionSignature);
  }, [available.length]);
  useEffect(() => setArgs((chosen?.argumentTypes ?? []).map(() => '')), [signature]);

  const previewSchedule = useDebounced(when === 'schedule' ? schedule.trim() : '', 300);
  const previewZone = useDebounced(timeZone.trim(), 300);
  const [preview, reexecutePreview] = useQuery({
    query: PreviewQuery,
    variables: { schedule: previewSchedule, timeZone: previewZone || null, count: 5 },
    pause: previewSchedule === '',
    requestPolicy: 'network-only',
  });
  const occurrences = (preview.data?.previewSchedule?.nodes ?? []).filter((o) => o !== null);
  // "The next five" stay the next five: asked again when the first one has passed.
  const firstAt = occurrences[0]?.occursAt ?? null;
  useEffect(() => {
    if (!firstAt || previewSchedule === '') return;
    const timer = window.setTimeout(() => reexecutePreview({ requestPolicy: 'network-only' }), Math.max(0, new Date(firstAt).getTime() - Date.now()) + 50);
    return () => window.clearTimeout(timer);
  }, [firstAt, previewSchedule]);
  const previewErrors = previewSchedule === '' ? [] : apiErrors(preview.error);
  const previewFieldError = (field: string): string | null => {
    const error = previewErrors.find((e) => fieldOfError(e) === field);
    return error ? `${error.message}${error.hint ? ` ${error.hint}` : ''}` : null;
  };
  const described = when === 'schedule' ? describeSchedule(schedule) : null;

  const errorOf = (field: string): string | null => fieldErrors[field] ?? null;
  const scheduleError = errorOf('schedule') ?? previewFieldError('schedule');
  const zoneError = errorOf('timeZone') ?? previewFieldError('timeZone');

  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const found: Record<string, string> = {};
    if (!chosen) found.function = 'Choose a function.';
    const types = chosen?.argumentTypes ?? [];
    const optionalFrom = types.length - (chosen?.argumentDefaults ?? 0);
    const values: unknown[] = [];
    // Trailing arguments left blank that have defaults are left out (the function's defaults apply).
    let last = types.length;
    while (last > optionalFrom && (args[last - 1] ?? '') === '') last--;
    for (let i = 0; i < last; i++) {
      const kind = argumentKind(types[i] ?? 'text');
      const text = args[i] ?? '';
      const converted = argumentValue(kind, text);
      if ('error' in converted) found[`argument.${i}`] = converted.error;
      else values.push(converted.value);
    }
    if (when === 'schedule' && !schedule.trim()) found.schedule = 'Enter a cron expression or an interval, or choose another “When”.';
    if (when === 'at' && Number.isNaN(new Date(runAt).getTime())) found.runAt = 'Enter a date and time.';
    const chosenOptions: Record<string, unknown> = {};
    for (const [key, text] of Object.entries(options) as Array<[OptionKey, string]>) {
      if (!text) continue;
      if (key in NUMBERS) {
        const number = Number(text);
        if (!Number.isFinite(number)) found[`options.${key}`] = 'Enter a number.';
        else chosenOptions[key] = number;
      } else {
        chosenOptions[key] = text;
      }
    }
    setFieldErrors(found);
    setFormErrors([]);
    if (Object.keys(found).length > 0 || !chosen) return;
    const input: ScheduleJobInput = { functionSignature: chosen.functionSignature, arguments: values };
    if (name.trim()) input.name = name;
    if (when === 'schedule') {
      input.schedule = schedule.trim();
      input.timeZone = timeZone.trim() || null;
    }
    if (when === 'at') input.runAt = new Date(runAt).toISOString();
    if (Object.keys(chosenOptions).length) input.options = chosenOptions;
    const outcome = await scheduleJob({ input });
    const errors = apiErrors(outcome.error);
    if (errors.length) {
      const byField: Record<string, string> = {};
      const rest: ApiError[] = [];
      for (const error of errors) {
        const field = fieldOfError(error);
        if (field) byField[field] = `${error.message}${error.hint ? ` ${error.hint}` : ''} (${error.code})`;
        else rest.push(error);
      }
      setFieldErrors(byField);
      setFormErrors(rest);
      return;
    }
    const id = outcome.data?.scheduleJob?.job?.id;
    if (id) navigate(`/jobs/${id}`);
  };

  if (functions.data && available.length === 0) {
    return (
      <section>
        <h1>Schedule a job</h1>
        <p>There is no function you may schedule: you need the scheduler role and membership in a function's owner role. Ask an administrator.</p>
      </section>
    );
  }

  return (
    <section aria-labelledby="new-title">
      <h1 id="new-title">Schedule a job</h1>
      <Alerts errors={apiErrors(functions.error)} />
      <form class="schedule-form" onSubmit={(e) => void submit(e)} noValidate>
        <Field id="function" label="Function" error={errorOf('function')} help={chosen ? `Runs as ${chosen.functionOwner ?? 'its owner'}.` : undefined}>
          <select
            id="function"
            value={signature}
            aria-invalid={errorOf('function') ? true : undefined}
            aria-describedby={describedBy('function', Boolean(chosen), errorOf('function'))}
            onChange={(e) => setSignature(e.currentTarget.value)}
          >
            {available.map((f) => (
              <option key={f.functionSignature} value={f.functionSignature}>
                {f.functionSignature}
              </option>
            ))}
          </select>
        </Field>
        {chosen && (chosen.argumentTypes ?? []).length > 0 ? (
          <fieldset>
            <legend>Arguments</legend>
            {errorOf('arguments') ? (
              <div class="field-error" role="alert" id="arguments-error">
                {errorOf('arguments')}
              </div>
            ) : null}
            {(chosen.argumentTypes ?? []).map((type, i) => {
              const id = `argument-${i}`;
              const kind = argumentKind(type ?? 'text');
              const optional = i >= (chosen.argumentTypes ?? []).length - (chosen.argumentDefaults ?? 0);
              const label = `${chosen.argumentNames?.[i] ?? `argument ${i + 1}`} (${type})${optional ? ', optional' : ''}`;
              const error = errorOf(`argument.${i}`);
              const common = {
                id,
                value: args[i] ?? '',
                'aria-invalid': error ? true : undefined,
                'aria-describedby': describedBy(id, false, error),
                onInput: (e: Event) => {
                  const value = (e.currentTarget as HTMLInputElement).value;
                  setArgs((current) => current.map((v, j) => (j === i ? value : v)));
                },
              };
              return (
                <Field key={id} id={id} label={label} error={error}>
                  {kind === 'boolean' ? (
                    <select {...common} onChange={common.onInput}>
                      <option value="">—</option>
                      <option value="true">true</option>
                      <option value="false">false</option>
                    </select>
                  ) : kind === 'json' ? (
                    <textarea {...common} rows={3} spellcheck={false} />
                  ) : kind === 'integer' || kind === 'number' ? (
                    <input {...common} type="number" step={kind === 'integer' ? '1' : 'any'} inputMode={kind === 'integer' ? 'numeric' : 'decimal'} />
                  ) : kind === 'date' ? (
                    <input {...common} type="date" />
                  ) : kind === 'timestamp' ? (
                    <input {...common} type="datetime-local" step="1" />
                  ) : (
                    <input {...common} type="text" />
                  )}
                </Field>
              );
            })}
          </fieldset>
        ) : null}
        <Field id="name" label="Name (optional)" error={errorOf('name')}>
          <input id="name" type="text" value={name} maxLength={200} aria-invalid={errorOf('name') ? true : undefined} aria-describedby={describedBy('name', false, errorOf('name'))} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <fieldset>
          <legend>When</legend>
          <div class="radios">
            {(
              [
                ['schedule', 'Repeatedly, on a schedule'],
                ['at', 'Once, at a time'],
                ['now', 'Once, now'],
              ] as const
            ).map(([value, label]) => (
              <label key={value} class="radio">
                <input type="radio" name="when" value={value} checked={when === value} onChange={() => setWhen(value)} />
                {label}
              </label>
            ))}
          </div>
          {when === 'schedule' ? (
            <>
              <Field
                id="schedule"
                label="Schedule"
                error={scheduleError}
                help={
                  <>
                    A cron expression (<code>30 2 * * *</code>; six fields with seconds first, <code>*/5 * * * * *</code>) or an interval (<code>every 5 minutes</code>).
                    {described ? (
                      <>
                        {' '}
                        <strong data-testid="schedule-words">{described}</strong>.
                      </>
                    ) : null}
                  </>
                }
              >
                <input
                  id="schedule"
                  type="text"
                  value={schedule}
                  autoComplete="off"
                  spellcheck={false}
                  aria-invalid={scheduleError ? true : undefined}
                  aria-describedby={describedBy('schedule', true, scheduleError)}
                  onInput={(e) => setSchedule(e.currentTarget.value)}
                />
              </Field>
              <Field id="timeZone" label="Time zone" error={zoneError} help="An IANA name; cron schedules are read in it.">
                <input
                  id="timeZone"
                  type="text"
                  list="time-zones"
                  value={timeZone}
                  autoComplete="off"
                  aria-invalid={zoneError ? true : undefined}
                  aria-describedby={describedBy('timeZone', true, zoneError)}
                  onInput={(e) => setTimeZone(e.currentTarget.value)}
                />
                <datalist id="time-zones">
                  {zones.map((zone) => (
                    <option key={zone} value={zone} />
                  ))}
                </datalist>
              </Field>
              <div class="preview" aria-live="polite">
                <h2 id="preview-title">Next five occurrences{previewZone ? ` (${previewZone})` : ''}</h2>
                {previewSchedule === '' ? (
                  <p class="muted">Type a schedule to see when it runs.</p>
                ) : previewErrors.length && !scheduleError && !zoneError ? (
                  <Alerts errors={previewErrors} polite={false} />
                ) : occurrences.length ? (
                  <ol aria-labelledby="preview-title" data-testid="preview">
                    {occurrences.map((o) => (
                      <li key={o.occursAt} data-occurs-at={o.occursAt ?? ''}>
                        {o.localTime}
                        {o.shifted ? ' (moved by a daylight saving change)' : ''}
                        {o.repeated ? ' (a repeated hour: daylight saving ends)' : ''}
                      </li>
                    ))}
                  </ol>
                ) : preview.fetching ? (
                  <p class="muted">Asking the database…</p>
                ) : null}
              </div>
            </>
          ) : null}
          {when === 'at' ? (
            <Field id="runAt" label={`Run at (your browser's time, ${browserTimeZone()})`} error={errorOf('runAt')}>
              <input id="runAt" type="datetime-local" step="1" value={runAt} aria-invalid={errorOf('runAt') ? true : undefined} aria-describedby={describedBy('runAt', false, errorOf('runAt'))} onInput={(e) => setRunAt(e.currentTarget.value)} />
            </Field>
          ) : null}
          {when === 'now' ? <p class="muted">The job runs once, as soon as an executor takes it.</p> : null}
        </fieldset>
        <details class="options" open={Object.keys(fieldErrors).some((f) => f.startsWith('options'))}>
          <summary>Policy options</summary>
          {errorOf('options') ? (
            <div class="field-error" role="alert">
              {errorOf('options')}
            </div>
          ) : null}
          {(Object.entries(CHOICES) as Array<[keyof typeof CHOICES, (typeof CHOICES)[keyof typeof CHOICES]]>).map(([key, choice]) => {
            const id = `option-${key}`;
            const error = errorOf(`options.${key}`);
            return (
              <Field key={key} id={id} label={choice.label} error={error}>
                <select id={id} value={options[key] ?? ''} aria-invalid={error ? true : undefined} aria-describedby={describedBy(id, false, error)} onChange={(e) => setOptions({ ...options, [key]: e.currentTarget.value })}>
                  <option value="">default ({choice.standard})</option>
                  {choice.values.map((v) => (
                    <option key={v} value={v}>
                      {v}
                    </option>
                  ))}
                </select>
              </Field>
            );
          })}
          {(Object.entries(NUMBERS) as Array<[keyof typeof NUMBERS, (typeof NUMBERS)[keyof typeof NUMBERS]]>).map(([key, spec]) => {
            const id = `option-${key}`;
            const error = errorOf(`options.${key}`);
            return (
              <Field key={key} id={id} label={spec.label} error={error}>
                <input
                  id={id}
                  type="number"
                  min={spec.min}
                  max={spec.max}
                  step={spec.whole ? 1 : 'any'}
                  placeholder={`default: ${spec.standard}`}
                  value={options[key] ?? ''}
                  aria-invalid={error ? true : undefined}
                  aria-describedby={describedBy(id, false, error)}
                  onInput={(e) => setOptions({ ...options, [key]: e.currentTarget.value })}
                />
              </Field>
            );
          })}
        </details>
        <Alerts errors={formErrors} />
        <button type="submit" disabled={scheduling.fetching || !chosen}>
          {scheduling.fetching ? 'Scheduling…' : 'Schedule'}
        </button>
      </form>
    </section>
  );
}
