import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Throughput, latency and memory per second of each scenario, as one SVG (vega-lite, rendered headless). */
export async function renderChart(
  results: Array<{ scenario: string; timeline: number[]; latencyTimeline: number[]; rssTimeline: number[] }>,
): Promise<string> {
  const rows: Array<{ scenario: string; second: number; metric: string; value: number }> = [];
  for (const r of results) {
    r.timeline.forEach((v, s) =>
      rows.push({ scenario: r.scenario, second: s, metric: 'acknowledged decisions/s', value: v }),
    );
    r.latencyTimeline.forEach((v, s) =>
      rows.push({ scenario: r.scenario, second: s, metric: 'ingest p99 latency (ms)', value: v }),
    );
    r.rssTimeline.forEach((v, i) =>
      rows.push({ scenario: r.scenario, second: i / 2, metric: 'server RSS (MiB)', value: v }),
    );
  }
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    data: { values: rows },
    facet: { row: { field: 'metric', type: 'nominal', title: null } },
    spec: {
      width: 720,
      height: 160,
      mark: { type: 'line', interpolate: 'monotone' },
      encoding: {
        x: { field: 'second', type: 'quantitative', title: 'seconds since the load started' },
        y: { field: 'value', type: 'quantitative', title: null },
        color: { field: 'scenario', type: 'nominal' },
      },
    },
    resolve: { scale: { y: 'independent' } },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}
