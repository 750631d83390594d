import { existsSync, readFileSync } from 'node:fs';
import { posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { DASHBOARD_DIST } from '../../server/api/dashboard.ts';

const read = (name: string): string => readFileSync(fileURLToPath(new URL(`../../${name}`, import.meta.url)), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
}

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  name: string | undefined;
  instructions: Instruction[];
}

interface Copy {
  /** The stage copied from; undefined for the build context. */
  from: string | undefined;
  sources: string[];
  /** Resolved against the stage's WORKDIR at that point. */
  destination: string;
  instruction: Instruction;
}

/**
 * The Dockerfile's stages and their instructions, read the way Docker reads them as far as this
 * file uses the syntax: comment lines dropped, backslash-continued lines joined, one stage per FROM.
 */
function stages(text: string): Stage[] {
  const result: Stage[] = [];
  const lines = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  for (const line of lines) {
    const match = /^([A-Za-z]+)\s+(.*)$/.exec(line);
    if (match === null) throw new Error(`Dockerfile: cannot read ${line}`);
    const instruction = { keyword: (match[1] as string).toUpperCase(), args: (match[2] as string).replace(/\s+/g, ' ') };
    if (instruction.keyword === 'FROM') {
      result.push({ name: /\sAS\s+(\S+)$/i.exec(instruction.args)?.[1], instructions: [] });
    } else {
      const current = result[result.length - 1];
      if (current === undefined) throw new Error(`Dockerfile: ${instruction.keyword} before FROM`);
      current.instructions.push(instruction);
    }
  }
  return result;
}

/** The WORKDIR in effect at instruction `index` of a stage ('/' when none was set). */
function workdirAt(stage: Stage, index: number): string {
  let workdir = '/';
  for (const instruction of stage.instructions.slice(0, index)) {
    if (instruction.keyword === 'WORKDIR') workdir = posix.resolve(workdir, instruction.args);
  }
  return workdir;
}

function copies(stage: Stage): Copy[] {
  return stage.instructions.flatMap((instruction, index) => {
    if (instruction.keyword !== 'COPY') return [];
    const words = instruction.args.split(' ');
    const flags = words.filter((word) => word.startsWith('--'));
    const paths = words.filter((word) => !word.startsWith('--'));
    // The JSON form (COPY ["a", "b"]) is not read here; the file does not use it.
    expect(paths[0], instruction.args).not.toMatch(/^\[/);
    expect(paths.length, instruction.args).toBeGreaterThanOrEqual(2);
    return [{
      from: flags.find((flag) => flag.startsWith('--from='))?.slice('--from='.length),
      sources: paths.slice(0, -1),
      destination: posix.resolve(workdirAt(stage, index), paths[paths.length - 1] as string),
      instruction,
    }];
  });
}

function runs(stage: Stage): string[] {
  return stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
}

/** The stage a COPY --from names. */
function stage(all: Stage[], name: string | undefined): Stage {
  const found = all.find((s) => s.name !== undefined && s.name === name);
  if (found === undefined) throw new Error(`Dockerfile: no stage named ${name}`);
  return found;
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
    const all = stages(read('Dockerfile'));
    expect(all.length).toBeGreaterThanOrEqual(2);
    const image = all[all.length - 1] as Stage;
    expect(image.instructions).toContainEqual({ keyword: 'USER', args: 'node' });
    expect(image.instructions).toContainEqual({ keyword: 'ENTRYPOINT', args: '["node", "bin/hardcron.js"]' });
    expect(image.instructions).toContainEqual({ keyword: 'CMD', args: '["server"]' });
    // The image installs nothing itself: node_modules comes from a stage that omits dev dependencies.
    expect(runs(image).filter((run) => /\bnpm (ci|install|i)\b/.test(run))).toEqual([]);
    const modules = copies(image).filter((copy) => copy.sources.some((source) => source.endsWith('/node_modules')));
    expect(modules).toHaveLength(1);
    const dependencies = stage(all, modules[0]?.from);
    expect(runs(dependencies).filter((run) => /^npm ci\b/.test(run)).every((run) => run.includes(' --omit=dev'))).toBe(true);
    expect(runs(dependencies)).toContainEqual(expect.stringMatching(/^npm ci --omit=dev\b/));
    // What any stage copies from the context, stage by stage (the image: no web sources), exists
    // in the repository and is not excluded from the build context.
    const fromContext = all.map((s) => copies(s).filter((copy) => copy.from === undefined).flatMap((copy) => copy.sources));
    expect(fromContext).toEqual([
      ['package.json', 'package-lock.json'],
      ['package.json', 'package-lock.json', 'graphql', 'web'],
      ['package.json', 'bin', 'server', 'sql', 'graphql'],
    ]);
    const ignored = read('.dockerignore').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
    for (const source of fromContext.flat()) {
      expect(existsSync(fileURLToPath(new URL(`../../${source}`, import.meta.url))), source).toBe(true);
      expect(ignored, source).not.toContain(source);
    }
    // From other stages the image takes runtime node_modules and the built dashboard, nothing else.
    expect(copies(image).filter((copy) => copy.from !== undefined).map((copy) => `${copy.from}:${copy.sources.join(' ')}`)).toEqual([
      `${modules[0]?.from}:/app/node_modules`,
      'web:/app/web/dist',
    ]);
  });

  test('Dockerfile: a build stage with dev dependencies runs build:web; the image has web/dist where the server serves it from', () => {
    const all = stages(read('Dockerfile'));
    const image = all[all.length - 1] as Stage;
    const dist = copies(image).filter((copy) => copy.sources.some((source) => source.endsWith('/web/dist')));
    expect(dist).toHaveLength(1);
    const copy = dist[0] as Copy;
    const build = stage(all, copy.from);
    expect(build).not.toBe(image);
    // The build stage installs with dev dependencies (Vite, codegen) and without install scripts
    // (`prepare` would build before the sources are copied), then copies the sources and builds.
    const install = build.instructions.findIndex((i) => i.keyword === 'RUN' && /^npm ci\b/.test(i.args));
    expect(install, 'npm ci in the build stage').toBeGreaterThanOrEqual(0);
    expect(build.instructions[install]?.args).not.toMatch(/--omit=dev|--production/);
    expect(build.instructions[install]?.args).toMatch(/--ignore-scripts/);
    const webSources = build.instructions.findIndex((i) => i.keyword === 'COPY' && /^web\s/.test(i.args));
    const buildWeb = build.instructions.findIndex((i) => i.keyword === 'RUN' && i.args === 'npm run build:web');
    expect(webSources).toBeGreaterThan(install);
    expect(buildWeb).toBeGreaterThan(webSources);
    expect(JSON.parse(read('package.json')).scripts['build:web']).toMatch(/vite build/);
    // It copies what Vite writes (web/dist under the build stage's WORKDIR) to where the server
    // looks: DASHBOARD_DIST is web/dist beside server/, and the image copies server/ to ./server.
    expect(copy.sources).toEqual([posix.join(workdirAt(build, buildWeb), 'web/dist')]);
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const servedFrom = relative(root, DASHBOARD_DIST).split(sep).join('/');
    expect(servedFrom).toBe('web/dist');
    const server = copies(image).find((c) => c.from === undefined && c.sources.includes('server'));
    expect(server?.destination).toBeDefined();
    expect(copy.destination).toBe(posix.join(posix.dirname(server?.destination as string), servedFrom));
  });
});
