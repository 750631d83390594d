import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../logger.ts';

export interface HealthServer {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * The executor's HTTP side: /healthz (the process answers), /readyz (the database answers on
 * the executor's connection) and /metrics (Prometheus text). Nothing else, and no body input.
 */
export async function startHealthServer(options: {
  port: number;
  host: string;
  ready: () => Promise<boolean>;
  registry: Registry;
  logger: Logger;
}): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'application/json', '{"error":"method not allowed"}');
    if (path === '/healthz') return reply(200, 'application/json', '{"status":"ok"}');
    if (path === '/readyz') {
      options.ready().then(
        (ready) => reply(ready ? 200 : 503, 'application/json', JSON.stringify({ status: ready ? 'ready' : 'unready' })),
        () => reply(503, 'application/json', '{"status":"unready"}'),
      );
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => reply(200, options.registry.contentType, text),
        (error: unknown) => {
          options.logger.warn({ err: error }, 'metrics collection failed');
          reply(500, 'text/plain', 'metrics unavailable\n');
        },
      );
      return;
    }
    reply(404, 'application/json', '{"error":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
