import { ConfigError } from './errors.ts';

/**
 * The rule of a whole-number setting, in one place for the two ways a value arrives: as text
 * (an environment variable or a flag, checked by the schema in config.ts) and as a number (an
 * option given by a program, checked by the library that takes it). So both are refused with
 * the same words, and a bound is written once: next to the option it bounds.
 */
export interface WholeSetting {
  readonly min: number;
  readonly max: number;
}

/** A whole-number setting with the value used when none is given. */
export interface WholeSettingWithDefault extends WholeSetting {
  readonly default: number;
}

/** A TCP port; 0 picks a free one. */
export const PORT: WholeSetting = { min: 0, max: 65535 };

/** Where hardcron's servers listen unless told otherwise: this machine only. */
export const LOOPBACK = '127.0.0.1';

/**
 * How long `hardcron migrate` waits for any one lock (another migrate's hold on the ledger, or a
 * lock a migration needs) before it gives up with HC_MIGRATION_LOCK_TIMEOUT. At least 1 ms: 0
 * would switch PostgreSQL's lock_timeout off, and a blocked migrate would hang again.
 */
export const MIGRATE_LOCK_TIMEOUT_MS: WholeSettingWithDefault = { min: 1, max: 86_400_000, default: 60_000 };

/** The rule in words, e.g. "a whole number from 1 to 64". */
export function wholeRule(setting: WholeSetting): string {
  return `a whole number from ${setting.min} to ${setting.max}`;
}

/**
 * What is wrong with `value` under `setting`, as the end of a sentence that starts with the
 * setting's name; undefined when nothing is. Never includes the value: the same words serve
 * environment variables, and some of those are secrets.
 */
export function wholeNumberProblem(value: string | number, setting: WholeSetting): string | undefined {
  const n = typeof value === 'number' ? value : value.trim() === '' ? Number.NaN : Number(value);
  if (Number.isNaN(n)) return `must be a number: ${wholeRule(setting)}`;
  if (!Number.isInteger(n)) return `must be ${wholeRule(setting)}`;
  if (n < setting.min || n > setting.max) return `is out of range: ${wholeRule(setting)}`;
  return undefined;
}

/** `value` when it follows `setting`'s rule; otherwise HC_CONFIG_INVALID naming `name`. */
export function checkWholeNumber(name: string, value: number, setting: WholeSetting): number {
  const problem = wholeNumberProblem(value, setting);
  if (problem !== undefined) throw new ConfigError('HC_CONFIG_INVALID', `${name} ${problem}`);
  return value;
}
