import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** JSON logs, on stdout unless another destination is given. LOG_LEVEL sets the level (default info). */
export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info', destination?: DestinationStream): Logger {
  const options = { name, level, base: { pid: process.pid } };
  return destination ? pino(options, destination) : pino(options);
}
