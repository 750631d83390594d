import type { CombinedError } from '@urql/core';

/** An error the API returned, as the page shows it: its message, code and hint (docs/errors.md). */
export interface ApiError {
  readonly message: string;
  readonly code: string | null;
  readonly hint: string | null;
}

/** The API's errors out of urql's combined error (GraphQL errors, or a failed request). */
export function apiErrors(error: CombinedError | undefined | null): ApiError[] {
  if (!error) return [];
  if (error.graphQLErrors.length > 0) {
    return error.graphQLErrors.map((e) => {
      const extensions = e.extensions as { code?: unknown; hint?: unknown } | undefined;
      return {
        message: e.message,
        code: typeof extensions?.code === 'string' ? extensions.code : null,
        hint: typeof extensions?.hint === 'string' ? extensions.hint : null,
      };
    });
  }
  return [{ message: error.networkError ? 'The server could not be reached. Try again in a moment.' : error.message, code: null, hint: null }];
}

/** Codes that mean the token itself is no good: the page signs out and says why. */
export function isAuthFailure(code: string | null): boolean {
  return code !== null && code.startsWith('HC_AUTH_') && code !== 'HC_AUTH_REQUIRED';
}

/** A refusal worded for the person who clicked, with the database's own message after it. */
export function politeRefusal(error: ApiError): string {
  switch (error.code) {
    case 'HC212':
      return `Sorry, this is not yours to change: only the job's owner may do that. (${error.message})`;
    case 'HC211':
      return `This job or run is gone, or you may not see it. (${error.message})`;
    case 'HC216':
      return `The job is paused: resume it first, then run it now. (${error.message})`;
    case 'HC217':
      return `The run has already finished: there is nothing to cancel. (${error.message})`;
    case 'HC204':
    case '42501':
      return `Sorry, you may not do that. (${error.message})`;
    case 'HC_BUSY':
    case 'HC_LOCK_TIMEOUT':
      return `The server is busy with this job right now; try again in a moment. (${error.message})`;
    default:
      return error.code ? `${error.message} (${error.code})` : error.message;
  }
}

/**
 * The form field a scheduling error concerns, from its code (docs/errors.md) and, where one code
 * covers several fields, from its message. Null: the error concerns the whole form.
 */
export function fieldOfError(error: ApiError): string | null {
  switch (error.code) {
    case 'HC201':
    case 'HC202':
    case 'HC203':
      return 'function';
    case 'HC205':
      return 'arguments';
    case 'HC206':
      return 'schedule';
    case 'HC207':
      return 'timeZone';
    case 'HC208':
      return /run_at|runAt|past/i.test(error.message) && !/both/i.test(error.message) ? 'runAt' : 'schedule';
    case 'HC214':
      return 'name';
    case 'HC209':
      if (/name/i.test(error.message)) return 'name';
      if (/argument/i.test(error.message)) return 'arguments';
      return 'function';
    case 'HC210': {
      const option = /option (\w+)/.exec(error.message)?.[1] ?? /unknown option '(\w+)'/.exec(error.message)?.[1];
      return option ? `options.${option}` : 'options';
    }
    default:
      return null;
  }
}
