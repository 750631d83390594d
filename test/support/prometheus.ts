/** One sample of the Prometheus text format: `name{labels} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  /** Metric families by name, with their TYPE. */
  types: Map<string, string>;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '(?:[+-]?(?:[0-9]*\\.?[0-9]+(?:[eE][+-]?[0-9]+)?|Inf)|NaN)';
const HELP_LINE = new RegExp(`^# HELP (${NAME})(?: .*)?$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL}=${LABEL_VALUE})(?:,${LABEL}=${LABEL_VALUE})*,?)?\\})? (${VALUE})(?: -?[0-9]+)?$`);
const LABEL_PAIR = new RegExp(`(${LABEL})=(${LABEL_VALUE})`, 'g');
const SUFFIXES: Record<string, string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count', ''] };

/**
 * Parses the Prometheus text exposition format strictly: every line is `# HELP`, `# TYPE`, a
 * sample of a family whose TYPE came before it, or empty. Throws on any other line.
 */
export function parsePrometheus(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  text.slice(0, -1).split('\n').forEach((line, index) => {
    const where = `line ${index + 1}: ${JSON.stringify(line)}`;
    if (line === '') return;
    if (HELP_LINE.test(line)) return;
    const type = TYPE_LINE.exec(line);
    if (type) {
      if (types.has(type[1] as string)) throw new Error(`second TYPE for ${type[1]} at ${where}`);
      types.set(type[1] as string, type[2] as string);
      return;
    }
    const sample = SAMPLE_LINE.exec(line);
    if (!sample) throw new Error(`not Prometheus text at ${where}`);
    const name = sample[1] as string;
    if (familyOf(name, types) === undefined) throw new Error(`sample of a family without TYPE at ${where}`);
    const labels: Record<string, string> = {};
    for (const [, label, quoted] of (sample[2] ?? '').matchAll(LABEL_PAIR)) {
      labels[label as string] = (quoted as string).slice(1, -1).replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name, labels, value: parseValue(sample[3] as string) });
  });
  return { types, samples };
}

function familyOf(sampleName: string, types: Map<string, string>): string | undefined {
  if (types.has(sampleName) && types.get(sampleName) !== 'histogram') return sampleName;
  for (const [family, type] of types) {
    for (const suffix of SUFFIXES[type] ?? []) if (suffix !== '' && sampleName === family + suffix) return family;
  }
  return undefined;
}

function parseValue(text: string): number {
  if (text === 'NaN') return Number.NaN;
  if (text.endsWith('Inf')) return text.startsWith('-') ? -Infinity : Infinity;
  return Number(text);
}

/** The value of the sample `name` whose labels are exactly `labels`, or undefined when absent. */
export function sampleValue(exposition: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  return exposition.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted)?.value;
}

/** The sum of the samples `name` whose labels include `labels` (0 when there are none). */
export function sumOf(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  return exposition.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value))
    .reduce((sum, s) => sum + s.value, 0);
}

/** GETs `url` and parses it as Prometheus text (the response must be 200 with a text/plain type). */
export async function scrape(url: string): Promise<Exposition> {
  const response = await fetch(url);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}: ${text.slice(0, 300)}`);
  const type = response.headers.get('content-type') ?? '';
  if (!type.startsWith('text/plain')) throw new Error(`${url} has content-type ${type}`);
  return parsePrometheus(text);
}
