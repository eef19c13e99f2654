// Micro-benchmarks of the report's pure parts: `deno bench --allow-all bench/`.
// A full run has about a dozen scenarios and fifty servers; this is that size.
import { chartTargets, renderSvgChart } from "./chart.ts";
import { progressLine } from "./progress.ts";
import { renderReadmeSummary } from "./readme.ts";
import {
  type BenchReport,
  checkTargets,
  computeRatios,
  formatRatio,
  formatSpread,
  renderResultsMarkdown,
  type ScenarioResult,
} from "./report.ts";
import { SCENARIOS, TARGETS } from "./scenarios.ts";

const SCENARIO_RESULTS: ScenarioResult[] = SCENARIOS.map((scenario, s) => ({
  id: scenario.id,
  title: scenario.title,
  load: scenario.load,
  metric: scenario.metric,
  results: scenario.servers.map((server, i) => ({
    key: server.key,
    label: server.label,
    role: server.role,
    runs: 3,
    samples: [1000 + i, 1100 + i, 1200 + s],
    requestsPerSec: 1100 + i * 997 + s,
    bytesPerSec: (1100 + i * 997) * 1500,
    bytesPerResponse: 1500,
    p50Ms: 0.4 + i,
    p99Ms: 4.5 + i,
    peakMemoryBytes: (40 + i) * 1024 ** 2,
    errors: 0,
  })),
}));

const REPORT: BenchReport = {
  date: "2026-12-01T09:55:00.000Z",
  machine: {
    cpus: 2,
    cpuModel: "Bench CPU",
    memoryBytes: 8 * 1024 ** 3,
    kernel: "6.1.0",
    loadAverage: [1, 2],
  },
  versions: { Deno: "2.9.6" },
  command: "deno task bench",
  settings: { duration: 5, runs: 3, threads: 2 },
  scenarios: SCENARIO_RESULTS,
  targets: checkTargets(TARGETS, SCENARIO_RESULTS),
  skipped: [],
  elapsedSeconds: 900,
};

Deno.bench("checkTargets()", { group: "report" }, () => {
  checkTargets(TARGETS, SCENARIO_RESULTS);
});

Deno.bench(
  "renderResultsMarkdown()",
  { group: "report", baseline: true },
  () => {
    renderResultsMarkdown(REPORT);
  },
);

Deno.bench("renderReadmeSummary()", { group: "report" }, () => {
  renderReadmeSummary(REPORT);
});

Deno.bench("renderSvgChart()", { group: "report" }, () => {
  renderSvgChart(
    computeRatios(SCENARIO_RESULTS),
    "Bench",
    chartTargets(TARGETS, SCENARIO_RESULTS),
  );
});

Deno.bench("formatters", { group: "format" }, () => {
  formatRatio(0.8312);
  formatSpread([52_100, 55_300, 54_000], "requests");
  progressLine({
    scenario: "files-small",
    server: "nginx",
    run: 2,
    runs: 3,
    step: 4,
    steps: 40,
    secondsLeft: 500,
  });
});
