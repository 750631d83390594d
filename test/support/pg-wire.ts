/**
 * The SQL a PostgreSQL client sends, read off the wire (frontend protocol 3.0, no TLS): the text
 * of every simple Query ('Q') and every Parse ('P') message, per connection. Fed by a TCP proxy's
 * tap, so it sees every statement of every process that connects through the proxy, whatever
 * library sent it.
 */
export class StatementRecorder {
  private readonly buffers = new Map<number, { data: Buffer; started: boolean }>();
  /** Statement texts in the order they were sent (duplicates included). */
  readonly texts: string[] = [];

  /** A tap for startTcpProxy. */
  readonly tap = (connection: number, chunk: Buffer): void => {
    const state = this.buffers.get(connection) ?? { data: Buffer.alloc(0), started: false };
    state.data = Buffer.concat([state.data, chunk]);
    this.buffers.set(connection, state);
    for (;;) {
      if (!state.started) {
        // Untyped start-up packets: SSLRequest / GSSENCRequest (8 bytes), then the StartupMessage.
        if (state.data.length < 8) return;
        const length = state.data.readInt32BE(0);
        if (state.data.length < length) return;
        const code = state.data.readInt32BE(4);
        state.data = state.data.subarray(length);
        if (code !== 80877103 && code !== 80877104) state.started = true;
        continue;
      }
      if (state.data.length < 5) return;
      const type = String.fromCharCode(state.data[0] as number);
      const length = state.data.readInt32BE(1);
      if (state.data.length < 1 + length) return;
      const body = state.data.subarray(5, 1 + length);
      state.data = state.data.subarray(1 + length);
      if (type === 'Q') this.texts.push(cString(body, 0).text);
      if (type === 'P') {
        const name = cString(body, 0);
        this.texts.push(cString(body, name.next).text);
      }
    }
  };
}

function cString(buffer: Buffer, start: number): { text: string; next: number } {
  const end = buffer.indexOf(0, start);
  return { text: buffer.toString('utf8', start, end), next: end + 1 };
}

/**
 * The statements of an SQL text, split at semicolons outside quotes, quoted identifiers,
 * dollar-quoted strings and comments.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let current = '';
  let i = 0;
  while (i < sql.length) {
    const rest = sql.slice(i);
    const quoted = /^'(?:[^']|'')*'|^"(?:[^"]|"")*"|^--[^\n]*|^\/\*[\s\S]*?\*\//.exec(rest);
    const dollar = /^\$([A-Za-z_][A-Za-z_0-9]*)?\$/.exec(rest);
    if (quoted) {
      current += quoted[0];
      i += quoted[0].length;
    } else if (dollar) {
      const end = sql.indexOf(dollar[0], i + dollar[0].length);
      const stop = end === -1 ? sql.length : end + dollar[0].length;
      current += sql.slice(i, stop);
      i = stop;
    } else if (sql[i] === ';') {
      statements.push(current);
      current = '';
      i++;
    } else {
      current += sql[i];
      i++;
    }
  }
  statements.push(current);
  return statements.map((s) => s.trim()).filter((s) => s !== '');
}
