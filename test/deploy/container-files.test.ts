import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';

const read = (name: string): string => readFileSync(fileURLToPath(new URL(`../../${name}`, import.meta.url)), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
}

/**
 * No Docker engine here: the container files are checked for what they must say. compose.yaml
 * must parse as YAML (anchors and merges resolved) and describe PostgreSQL, a one-shot migrate,
 * the server and two executors, with every secret taken from the environment.
 */
describe('container files', () => {
  const compose = parse(read('compose.yaml'), { merge: true }) as { services: Record<string, Service>; volumes?: unknown };

  test('compose.yaml: PostgreSQL, migrate, server and two executors, in that order of start', () => {
    const services = compose.services;
    expect(Object.keys(services).sort()).toEqual(['executor-1', 'executor-2', 'migrate', 'postgres', 'server']);
    expect(services.postgres?.image).toMatch(/^postgres:1[5-9]/);
    expect(services.migrate?.command).toEqual(['migrate']);
    expect(services.migrate?.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(services.server?.command).toEqual(['server']);
    for (const name of ['server', 'executor-1', 'executor-2']) {
      expect(services[name]?.depends_on?.migrate?.condition, name).toBe('service_completed_successfully');
    }
    for (const name of ['executor-1', 'executor-2']) expect(services[name]?.command?.[0], name).toBe('executor');
  });

  test('compose.yaml: runtime processes log in as their own roles, secrets come from the environment', () => {
    const env = (name: string): Record<string, string> => compose.services[name]?.environment ?? {};
    expect(env('server').SERVER_DATABASE_URL).toMatch(/^postgres:\/\/d0%24authenticator:\$\{AUTHENTICATOR_PASSWORD/);
    expect(env('executor-1').EXECUTOR_DATABASE_URL).toMatch(/^postgres:\/\/d0%24executor:\$\{EXECUTOR_PASSWORD/);
    expect(env('server').JWT_SECRET).toMatch(/^\$\{JWT_SECRET:\?/);
    // Only migrate holds the superuser URL.
    const superuserHolders = Object.entries(compose.services).filter(([, s]) => Object.values(s.environment ?? {}).some((v) => /postgres:\/\/postgres:/.test(v)));
    expect(superuserHolders.map(([name]) => name)).toEqual(['migrate']);
    // No literal secret: every password in a URL or variable is a ${…} reference.
    for (const service of Object.values(compose.services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (/PASSWORD|SECRET/.test(key)) expect(value, key).toMatch(/^\$\{[A-Z_]+:\?/);
        const password = /^postgres:\/\/[^:]+:([^@]*)@/.exec(value)?.[1];
        if (password !== undefined) expect(password, key).toMatch(/^\$\{[A-Z_]+:\?[^}]*\}$/);
      }
    }
  });

  test('Dockerfile: multi-stage, runtime dependencies only, unprivileged user, one image for every command', () => {
    const dockerfile = read('Dockerfile');
    const stages = dockerfile.match(/^FROM /gm) ?? [];
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "bin\/hardcron\.js"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["server"\]$/m);
    // What the image copies exists in the repository.
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => (m[1] as string).split(' '));
    expect(sources).toEqual(['package.json', 'package-lock.json', 'package.json', 'bin', 'server', 'sql', 'graphql']);
    for (const source of sources) expect(existsSync(fileURLToPath(new URL(`../../${source}`, import.meta.url))), source).toBe(true);
  });
});
