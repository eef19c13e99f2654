// Micro-benchmarks of the report (bench/report.ts, bench/chart.ts) on the published run's
// own figures, bench/results.json: `deno bench --allow-all bench/`.
import { renderSvgChart } from "./chart.ts";
import {
  type BenchReport,
  checkTargets,
  computeRatios,
  renderReadmeSummary,
  renderResultsMarkdown,
} from "./report.ts";
import { TARGETS } from "./scenarios.ts";

const REPORT: BenchReport = JSON.parse(
  await Deno.readTextFile(new URL("./results.json", import.meta.url)),
);

const group = "report";

Deno.bench("checkTargets()", { group }, () => {
  checkTargets(TARGETS, REPORT.scenarios);
});

Deno.bench("renderResultsMarkdown()", { group, baseline: true }, () => {
  renderResultsMarkdown(REPORT);
});

Deno.bench("renderReadmeSummary()", { group }, () => {
  renderReadmeSummary(REPORT);
});

Deno.bench("renderSvgChart()", { group }, () => {
  renderSvgChart(computeRatios(REPORT.scenarios, TARGETS), "Bench");
});
