import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a server (PostgreSQL), to take it away and bring it back
 * without stopping it: `down()` destroys every proxied connection and stops listening (new
 * connections are refused), `up()` listens again on the same port. `retarget()` sends new
 * connections to another server on the same port: a stable address, as a failover moves one.
 */
export interface TcpProxy {
  readonly port: number;
  /** Connections accepted since the proxy started. */
  readonly accepted: number;
  /** Where new connections go. */
  readonly target: { host: string; port: number };
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
  /**
   * Sends new connections to `target`. Connections already made stay with their server unless
   * `dropConnections`: then they are destroyed, as when an address moves to another machine.
   */
  retarget(target: { host: string; port: number }, options?: { dropConnections?: boolean }): void;
}

export interface TcpProxyOptions {
  /**
   * Holds every chunk the server sends this long before passing it on, in order: a slow link
   * (e.g. for replication, so that a primary's last commits are still on the way when it dies).
   * What is held when `down()` runs is dropped, as bytes on a link that breaks are; when the
   * server closes a connection, the client gets what was held first, then the end.
   */
  delayFromServerMs?: number;
}

/**
 * `tap`, when given, sees every chunk a client sends upstream (with a number per connection),
 * e.g. to record the statements of a PostgreSQL session.
 */
export async function startTcpProxy(
  initialTarget: { host: string; port: number },
  tap?: (connection: number, chunk: Buffer) => void,
  options: TcpProxyOptions = {},
): Promise<TcpProxy> {
  let target = { ...initialTarget };
  const delayMs = options.delayFromServerMs ?? 0;
  const sockets = new Set<Socket>();
  let accepted = 0;
  let server: Server | undefined;
  let port = 0;

  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const listen = async (): Promise<void> => {
    const listening = createServer((client) => {
      accepted++;
      const upstream = connect({ host: target.host, port: target.port });
      track(client);
      track(upstream);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      // A delayed link ends the client once what it holds is delivered (see delayed()).
      if (delayMs === 0) upstream.on('close', () => client.destroy());
      if (tap) {
        const connection = accepted;
        client.on('data', (chunk: Buffer) => tap(connection, chunk));
      }
      client.pipe(upstream);
      if (delayMs > 0) delayed(upstream, client, delayMs);
      else upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject);
      listening.listen(port, '127.0.0.1', () => {
        listening.off('error', reject);
        resolve();
      });
    });
    const address = listening.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
    port = address.port;
    server = listening;
  };
  const down = async (): Promise<void> => {
    const closing = server;
    server = undefined;
    const closed = closing ? new Promise<void>((resolve) => closing.close(() => resolve())) : Promise.resolve();
    for (const socket of sockets) socket.destroy();
    await closed;
  };

  await listen();
  return {
    get port() {
      return port;
    },
    get accepted() {
      return accepted;
    },
    get target() {
      return { ...target };
    },
    down,
    async up() {
      if (server) return;
      await listen();
    },
    close: down,
    retarget(next, { dropConnections = false } = {}) {
      target = { ...next };
      if (dropConnections) for (const socket of sockets) socket.destroy();
    },
  };
}

/**
 * Passes what `from` sends to `to`, each chunk `delayMs` after it arrived, in order; ends `to`
 * after the last chunk once `from` has closed. Destroying `to` drops what is still held.
 */
function delayed(from: Socket, to: Socket, delayMs: number): void {
  const held: Array<{ at: number; chunk: Buffer }> = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const drain = (): void => {
    timer = undefined;
    if (to.destroyed) {
      held.length = 0;
      return;
    }
    const now = Date.now();
    for (let next = held[0]; next !== undefined && next.at <= now; next = held[0]) {
      held.shift();
      to.write(next.chunk);
    }
    const next = held[0];
    if (next) timer = setTimeout(drain, next.at - now);
    else if (ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    held.push({ at: Date.now() + delayMs, chunk });
    timer ??= setTimeout(drain, delayMs);
  });
  from.once('close', () => {
    ended = true;
    timer ??= setTimeout(drain, 0);
  });
  to.once('close', () => {
    clearTimeout(timer);
    held.length = 0;
  });
}

/** `url` with its host and port replaced by the proxy's. */
export function throughProxy(url: string, proxy: TcpProxy): string {
  const copy = new URL(url);
  copy.hostname = '127.0.0.1';
  copy.port = String(proxy.port);
  return copy.toString();
}

/** The host and port a PostgreSQL URL points at. */
export function hostAndPort(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1', port: Number(parsed.port || 5432) };
}
