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

Deno.bench("checkTargets()", { group: "report" }, () => {
  checkTargets(TARGETS, REPORT.scenarios);
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
  renderSvgChart(computeRatios(REPORT.scenarios, TARGETS), "Bench");
});
