import { ConfigError } from './errors.ts';
import { parseDatabaseUrl } from './db/targets.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** A required PostgreSQL URL from the environment. */
export function requiredUrl(env: Env, variable: string, purpose: string): string {
  const value = env[variable];
  if (!value) throw new ConfigError('HC_CONFIG_MISSING', `${variable} is not set: ${purpose}`);
  return parseDatabaseUrl(variable, value);
}

/** An optional whole number from the environment (or a flag), within bounds. */
export function wholeNumber(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError('HC_CONFIG_INVALID', `${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return n;
}

/** An optional boolean from the environment: true/false/1/0. */
export function booleanValue(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (['true', '1'].includes(value)) return true;
  if (['false', '0'].includes(value)) return false;
  throw new ConfigError('HC_CONFIG_INVALID', `${name} must be true or false, not ${JSON.stringify(value)}`);
}
