import type { ComponentChildren } from 'preact';
import { useEffect } from 'preact/hooks';
import type { ApiError } from './errors.ts';
import { politeRefusal } from './errors.ts';
import { href, onLinkClick } from './router.ts';
import { statusKey, statusLabel } from './status.ts';

export function Link(props: { to: string; children: ComponentChildren; class?: string }) {
  return (
    <a href={href(props.to)} onClick={onLinkClick(props.to)} class={props.class}>
      {props.children}
    </a>
  );
}

/** A status as a coloured badge that also says it in words (colour is never the only cue). */
export function StatusBadge(props: { status: string | null | undefined }) {
  const key = statusKey(props.status) || 'none';
  return <span class={`badge status-${key}`} data-status={key}>{statusLabel(props.status)}</span>;
}

/** Errors of an action, read out by screen readers as they appear. */
export function Alerts(props: { errors: readonly ApiError[]; polite?: boolean }) {
  if (props.errors.length === 0) return null;
  return (
    <div class="alert" role="alert">
      {props.errors.map((error, i) => (
        <p key={i} data-code={error.code ?? undefined}>
          {props.polite === false ? error.message : politeRefusal(error)}
          {error.hint ? <span class="hint"> {error.hint}</span> : null}
        </p>
      ))}
    </div>
  );
}

/** A form field with its label, help and error tied to the control (aria-describedby). */
export function Field(props: { id: string; label: string; help?: ComponentChildren; error?: string | null; children: ComponentChildren }) {
  return (
    <div class={`field${props.error ? ' invalid' : ''}`}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.help ? <div class="help" id={`${props.id}-help`}>{props.help}</div> : null}
      {props.error ? (
        <div class="field-error" id={`${props.id}-error`} role="alert">
          {props.error}
        </div>
      ) : null}
    </div>
  );
}

/** The ids a control's aria-describedby names: its help and, when there is one, its error. */
export function describedBy(id: string, help: boolean, error: string | null | undefined): string | undefined {
  const ids = [help ? `${id}-help` : null, error ? `${id}-error` : null].filter(Boolean);
  return ids.length ? ids.join(' ') : undefined;
}

/** The tab's title for the page shown (screen readers announce it; history lists it). */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · hardcron`;
  }, [title]);
}
