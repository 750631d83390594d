import type { NextFunction, Request, Response } from 'express';
import type pg from 'pg';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const ROUTES = new Set(['/graphql', '/', '/healthz', '/readyz', '/metrics']);

/** The GraphQL server's Prometheus metrics: HTTP requests and the database pool. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'hardcron_http_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: 'hardcron_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });

  constructor(pool: pg.Pool) {
    const connections = new Gauge({
      name: 'hardcron_server_pool_connections',
      help: 'Database connections of the server, by state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        connections.set({ state: 'total' }, pool.totalCount);
        connections.set({ state: 'idle' }, pool.idleCount);
        connections.set({ state: 'waiting' }, pool.waitingCount);
      },
    });
  }

  /** Express middleware counting every answered request (paths outside the app's routes as "other"). */
  readonly middleware = (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const route = ROUTES.has(req.path) ? req.path : 'other';
      this.requests.inc({ method: req.method, route, status: String(res.statusCode) });
      this.duration.observe({ route }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
}
