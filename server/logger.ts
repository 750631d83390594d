import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** The level of a logger made without one (LOG_LEVEL sets it for hardcron's commands). */
export const DEFAULT_LOG_LEVEL = 'info';

/** JSON logs, on stdout unless another destination is given. */
export function createLogger(name: string, level: string = DEFAULT_LOG_LEVEL, destination?: DestinationStream): Logger {
  const options = { name, level, base: { pid: process.pid } };
  return destination ? pino(options, destination) : pino(options);
}
