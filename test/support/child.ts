import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/hardcron.js', import.meta.url));

/** A port nobody listens on right now: listen on port 0, read the port, close. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/** Whether a TCP connection to 127.0.0.1:`port` is refused (nothing listens there). */
export function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') resolve(true);
      else reject(error);
    });
  });
}

/** Calls `check` until it returns a value other than undefined; fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface GroupMember {
  pid: number;
  ppid: number;
  command: string;
}

/**
 * The live processes started by `pid`: its process group, its children, and their process groups
 * (hardcron start gives its executor a group of its own).
 */
export function liveFamilyOf(pid: number): GroupMember[] {
  const all = liveProcesses();
  const childGroups = new Set(all.filter((p) => p.ppid === pid).map((p) => p.pgid));
  return all.filter((p) => p.pgid === pid || p.ppid === pid || childGroups.has(p.pgid));
}

/** Every live process (not a zombie), read from /proc. */
function liveProcesses(): Array<GroupMember & { pgid: number }> {
  const members: Array<GroupMember & { pgid: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let stat: string;
    let command: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp …; comm may contain spaces and parentheses.
    const [state, ppid, group] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state !== 'Z' && state !== 'X') members.push({ pid: Number(entry), ppid: Number(ppid), pgid: Number(group), command });
  }
  return members;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * The real `hardcron` command as a long-running child process, in a process group of its own
 * (so that `kill()` also reaches the processes it starts), with its output collected.
 */
export class HardcronProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  private readonly waiters = new Set<() => void>();

  constructor(args: readonly string[], env: Record<string, string | undefined>) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      this.notify();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.notify();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything printed so far (stdout, then stderr). */
  get output(): string {
    return `${this.stdout}${this.stderr}`;
  }

  /** Waits until stdout has a line matching `pattern`; fails if the process exits first or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    return this.waitForStdout(String(pattern), timeoutMs, (line) => line.match(pattern) ?? undefined);
  }

  /** Waits until stdout has a JSON log line whose `msg` is `message`; returns it parsed. */
  waitForLog(message: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    return this.waitForStdout(`the log line ${JSON.stringify(message)}`, timeoutMs, (line) => {
      if (!line.startsWith('{')) return undefined;
      const entry = JSON.parse(line) as Record<string, unknown>;
      return entry.msg === message ? entry : undefined;
    });
  }

  private async waitForStdout<T>(what: string, timeoutMs: number, find: (line: string) => T | undefined): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // Whole lines only: a line still being written could match too early.
      for (const line of this.stdout.split('\n').slice(0, -1)) {
        const found = find(line);
        if (found !== undefined) return found;
      }
      if (!this.running) throw new Error(`hardcron exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${what}:\n${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`hardcron did not print ${what} within ${timeoutMs} ms:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 500));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  /** Sends `signal` to the process itself (not to its group). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Sends `signal` to the whole process group, as a terminal's Ctrl-C does. */
  signalGroup(signal: NodeJS.Signals): void {
    process.kill(-this.pid, signal);
  }

  /**
   * The processes it started (its group, its children and their groups) that have not exited
   * (zombies left to an init that does not reap them are not counted), from /proc.
   */
  liveGroup(): GroupMember[] {
    return liveFamilyOf(this.pid).map(({ pid, ppid, command }) => ({ pid, ppid, command }));
  }

  /** Kills the process group (SIGKILL) unless it is already gone, and waits for the process to exit. */
  async kill(): Promise<void> {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.exited;
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) {
      this.waiters.delete(waiter);
      waiter();
    }
  }
}

/** Starts `hardcron <args>` as a long-running child process. */
export function spawnHardcron(args: readonly string[], env: Record<string, string | undefined> = {}): HardcronProcess {
  return new HardcronProcess(args, env);
}
