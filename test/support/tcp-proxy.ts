import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a server (PostgreSQL), to take it away and bring it back
 * without stopping it: `down()` destroys every proxied connection and stops listening (new
 * connections are refused), `up()` listens again on the same port.
 */
export interface TcpProxy {
  readonly port: number;
  /** Connections accepted since the proxy started. */
  readonly accepted: number;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

/**
 * `tap`, when given, sees every chunk a client sends upstream (with a number per connection),
 * e.g. to record the statements of a PostgreSQL session.
 */
export async function startTcpProxy(
  target: { host: string; port: number },
  tap?: (connection: number, chunk: Buffer) => void,
): Promise<TcpProxy> {
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
      upstream.on('close', () => client.destroy());
      if (tap) {
        const connection = accepted;
        client.on('data', (chunk: Buffer) => tap(connection, chunk));
      }
      client.pipe(upstream);
      upstream.pipe(client);
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
    down,
    async up() {
      if (server) return;
      await listen();
    },
    close: down,
  };
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
