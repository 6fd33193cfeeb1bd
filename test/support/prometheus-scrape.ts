import parsePrometheusTextFormat from 'parse-prometheus-text-format';

export type MetricFamily = ReturnType<typeof parsePrometheusTextFormat>[number];
export type MetricSample = MetricFamily['metrics'][number];

/** One scrape of a /metrics endpoint, parsed by a Prometheus text-format parser. */
export interface Scrape {
  text: string;
  families: MetricFamily[];
  /** The family named `name`; throws when the endpoint does not export it. */
  family(name: string): MetricFamily;
  /** The sample of `name` whose labels include `labels`; undefined when there is none. */
  sample(name: string, labels?: Record<string, string>): MetricSample | undefined;
  /** The numeric value of that sample; throws when it is missing. */
  value(name: string, labels?: Record<string, string>): number;
  /** The `_count` of the histogram series of `name` whose labels include `labels`; undefined when none. */
  histogramCount(name: string, labels?: Record<string, string>): number | undefined;
}

/** GETs `url` (a /metrics endpoint) and parses the answer. */
export async function scrapeMetrics(url: string): Promise<Scrape> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`GET ${url} answered ${response.status}`);
  const contentType = response.headers.get('content-type') ?? '';
  if (!contentType.startsWith('text/plain'))
    throw new Error(`GET ${url} answered content-type ${contentType}`);
  return parseScrape(await response.text());
}

export function parseScrape(text: string): Scrape {
  const families = parsePrometheusTextFormat(text);
  const family = (name: string) => {
    const found = families.find((candidate) => candidate.name === name);
    if (!found)
      throw new Error(
        `metric ${name} is not exported (have: ${families.map((f) => f.name).join(', ')})`,
      );
    return found;
  };
  const sample = (name: string, labels: Record<string, string> = {}) =>
    families
      .find((candidate) => candidate.name === name)
      ?.metrics.find((metric) =>
        Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value),
      );
  const value = (name: string, labels: Record<string, string> = {}) => {
    const found = sample(name, labels);
    if (found?.value === undefined) throw new Error(`no sample ${name}${JSON.stringify(labels)}`);
    return Number(found.value);
  };
  return {
    text,
    families,
    family,
    sample,
    value,
    histogramCount: (name, labels = {}) => histogramCount(text, name, labels),
  };
}

/**
 * Workaround: parse-prometheus-text-format 1.1.1 merges the series of a histogram that has labels
 * other than `le` into one sample without labels, count or sum (its flattening step only keeps
 * unlabelled `_count`/`_sum` lines). The parser still checks the whole text; the `_count` line of
 * one series is read here from that text. If the parser learns labelled histograms, use it instead.
 */
function histogramCount(
  text: string,
  name: string,
  labels: Record<string, string>,
): number | undefined {
  for (const line of text.split('\n')) {
    const match = new RegExp(`^${name}_count\\{(.*)\\} (\\S+)$`).exec(line);
    if (!match) continue;
    const found = Object.fromEntries(
      [...match[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value))
      return Number(match[2]);
  }
  return undefined;
}
