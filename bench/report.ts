/**
 * Turning measurements into the Markdown table, bench/RESULTS.md and the SVG
 * chart. Everything here is pure (tested in tests/bench_test.ts).
 *
 * @module
 */

/** One server's figures in one scenario (medians over the runs). */
export interface ServerResult {
  /** Stable id, e.g. "ours", "nginx", "python-http-server". */
  key: string;
  /** Shown in tables, e.g. "server_files.ts". */
  label: string;
  role: "ours" | "reference";
  runs: number;
  /** Requests per second of each measured run, to see the spread behind the median. */
  samples?: number[];
  requestsPerSec: number;
  /** Bytes read by wrk per second. */
  bytesPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Peak resident memory (VmHWM) of the serving process; null when unknown. */
  peakMemoryBytes: number | null;
  /** Socket errors and 4xx/5xx answers, summed over the runs. */
  errors: number;
  /** Anything a reader must know, e.g. how many messages were stored at the end. */
  note?: string;
}

/** One scenario: what was asked, and every server's answer. */
export interface ScenarioResult {
  id: string;
  title: string;
  /** How wrk drove it, e.g. "32 connections, keep-alive". */
  load: string;
  /** The figure ratios compare: requests per second or bytes per second. */
  metric: "requests" | "bytes";
  results: ServerResult[];
}

/** A goal from an issue, checked against this run. */
export interface TargetResult {
  /** Where the goal comes from, e.g. "#3". */
  source: string;
  goal: string;
  measured: string;
  /** null when a server it needs was skipped. */
  met: boolean | null;
}

/** Everything RESULTS.md shows. */
export interface BenchReport {
  /** ISO 8601 time the run started. */
  date: string;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    kernel: string;
  };
  /** Tool name -> version string. */
  versions: Record<string, string>;
  /** The command that reproduces the run. */
  command: string;
  settings: { duration: number; runs: number; threads: number };
  scenarios: ScenarioResult[];
  targets: TargetResult[];
  /** One line per server that was not measured, with the reason. */
  skipped: string[];
  /** How long the whole run took, in seconds. */
  elapsedSeconds: number;
}

/** A ratio of one of our servers to one reference in one scenario. */
export interface Ratio {
  scenario: string;
  ours: string;
  reference: string;
  /** ours / reference on the scenario's metric: above 1 means ours is faster. */
  value: number;
}

/**
 * The middle value (mean of the two middle values for an even count).
 *
 * @example median([3, 1, 2]) === 2; median([4, 1, 3, 2]) === 2.5
 */
export function median(values: number[]): number {
  if (values.length === 0) throw new RangeError("median of nothing");
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The figure a scenario compares on. */
export function metricValue(
  scenario: ScenarioResult,
  result: ServerResult,
): number {
  return scenario.metric === "bytes"
    ? result.bytesPerSec
    : result.requestsPerSec;
}

/**
 * Every ratio of one of our servers to each reference, scenario by scenario.
 *
 * @example a scenario where ours does 900 req/s and nginx 1000 gives
 *   [{ scenario, ours: "server_files.ts", reference: "nginx", value: 0.9 }]
 */
export function computeRatios(scenarios: ScenarioResult[]): Ratio[] {
  const ratios: Ratio[] = [];
  for (const scenario of scenarios) {
    const references = scenario.results.filter((r) => r.role === "reference");
    for (const ours of scenario.results.filter((r) => r.role === "ours")) {
      for (const reference of references) {
        const base = metricValue(scenario, reference);
        if (base > 0) {
          ratios.push({
            scenario: scenario.title,
            ours: ours.label,
            reference: reference.label,
            value: metricValue(scenario, ours) / base,
          });
        }
      }
    }
  }
  return ratios;
}

/**
 * Formats a number with thousands separators and no decimals.
 *
 * @example formatCount(56013.11) === "56,013"
 */
export function formatCount(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/**
 * Formats bytes per second as MiB/s (wrk's unit), 1 decimal.
 *
 * @example formatRate(1.5 * 1024 * 1024) === "1.5"; formatRate(1863.7 * 1024 ** 2) === "1,863.7"
 */
export function formatRate(bytesPerSec: number): string {
  return (bytesPerSec / 1024 ** 2).toLocaleString("en-US", {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
}

/**
 * Formats a latency in milliseconds with about three significant digits.
 *
 * @example formatLatency(0.405) === "0.405 ms"; formatLatency(12.9) === "12.9 ms"; formatLatency(null) === "–"
 */
export function formatLatency(ms: number | null): string {
  if (ms === null) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Number(ms.toPrecision(3))} ms`;
}

/**
 * Formats bytes as MiB with 1 decimal.
 *
 * @example formatMemory(52_428_800) === "50.0 MiB"; formatMemory(null) === "–"
 */
export function formatMemory(bytes: number | null): string {
  return bytes === null ? "–" : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/**
 * Formats a ratio with two significant digits below 10, whole numbers above.
 *
 * @example formatRatio(0.8312) === "0.83×"; formatRatio(12.4) === "12×"; formatRatio(19675) === "19,675×"
 */
export function formatRatio(value: number): string {
  return value >= 10
    ? `${formatCount(value)}×`
    : `${Number(value.toPrecision(2))}×`;
}

/** Escapes a cell so `|` and line breaks do not break the Markdown table. */
function markdownCell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** A Markdown table; the first `leftColumns` and the last column are left-aligned, figures right. */
function markdownTable(
  header: string[],
  rows: string[][],
  leftColumns = 2,
): string {
  // Names and ratios read left to right; figures line up on the right.
  const align = header.map((
    _,
    i,
  ) => (i < leftColumns || i === header.length - 1 ? "---" : "--:"));
  return [header, align, ...rows].map((row) =>
    `| ${row.map(markdownCell).join(" | ")} |`
  ).join(
    "\n",
  );
}

/**
 * The results table: one row per server per scenario, our servers with their
 * ratio to each reference on the scenario's figure.
 */
export function renderResultsTable(scenarios: ScenarioResult[]): string {
  const header = [
    "Scenario",
    "Server",
    "Req/s",
    "MiB/s",
    "p50",
    "p99",
    "Peak RSS",
    "Errors",
    "Ours ÷ reference",
  ];
  const rows: string[][] = [];
  for (const scenario of scenarios) {
    const references = scenario.results.filter((r) => r.role === "reference");
    for (const result of scenario.results) {
      const ratios = result.role === "ours"
        ? references
          .filter((reference) => metricValue(scenario, reference) > 0)
          .map((reference) =>
            `${
              formatRatio(
                metricValue(scenario, result) /
                  metricValue(scenario, reference),
              )
            } ${reference.label}`
          )
          .join(", ")
        : "";
      const label = result.role === "ours"
        ? `**${result.label}**`
        : result.label;
      rows.push([
        `${scenario.title}`,
        result.note ? `${label} (${result.note})` : label,
        formatCount(result.requestsPerSec),
        formatRate(result.bytesPerSec),
        formatLatency(result.p50Ms),
        formatLatency(result.p99Ms),
        formatMemory(result.peakMemoryBytes),
        formatCount(result.errors),
        ratios || "–",
      ]);
    }
  }
  return markdownTable(header, rows);
}

/** The targets table: each issue's goal, what this run measured, and whether it was met. */
export function renderTargetsTable(targets: TargetResult[]): string {
  const verdict = (
    met: boolean | null,
  ) => (met === null ? "not measured" : met ? "✅ met" : "❌ not met");
  return markdownTable(
    ["Issue", "Target", "Measured", "Result"],
    targets.map((t) => [t.source, t.goal, t.measured, verdict(t.met)]),
    4,
  );
}

/** Where the runner keeps the README's summary up to date. */
export const README_MARKERS = {
  start: "<!-- bench:summary:start (written by deno task bench) -->",
  end: "<!-- bench:summary:end -->",
} as const;

/**
 * The README's summary of one run: a line on where and when, then each of
 * our servers' ratios to the references, then the targets met.
 */
export function renderReadmeSummary(report: BenchReport): string {
  const { machine } = report;
  // One row per scenario and server of ours (the PostgreSQL scenarios have two of ours).
  const rows = report.scenarios.flatMap((scenario) => {
    const ratios = computeRatios([scenario]);
    return [...new Set(ratios.map((r) => r.ours))].map((ours) => [
      scenario.title,
      ours,
      ratios.filter((r) => r.ours === ours)
        .map((r) => `${formatRatio(r.value)} ${r.reference}`).join(", "),
    ]);
  });
  const measured = report.targets.filter((t) => t.met !== null);
  const met = measured.filter((t) => t.met).length;
  return [
    `Ratios from one run of \`${report.command}\` on ${
      report.date.slice(0, 10)
    }: ` +
    `${machine.cpus} × ${machine.cpuModel}, with wrk on the same cores as the servers, so read them as ` +
    "rough proportions, not absolute speeds. Above 1× ours is faster.",
    "",
    markdownTable(["Scenario", "Ours", "Ours ÷ reference"], rows, 3),
    "",
    `Targets from the issues: ${met} of ${measured.length} met in this run` +
    (measured.length < report.targets.length
      ? ` (${report.targets.length - measured.length} not measured)`
      : "") +
    ". Every figure, the machine and the versions: [bench/RESULTS.md](bench/RESULTS.md).",
  ].join("\n");
}

/**
 * Replaces what lies between two marker lines (markers kept); null when a marker is missing.
 *
 * @example replaceBetween("a\n<s>\nold\n<e>\nb", "<s>", "<e>", "new") === "a\n<s>\nnew\n<e>\nb"
 */
export function replaceBetween(
  text: string,
  start: string,
  end: string,
  content: string,
): string | null {
  const from = text.indexOf(start);
  const to = text.indexOf(end, from + start.length);
  if (from < 0 || to < 0) return null;
  return `${text.slice(0, from + start.length)}\n${content}\n${text.slice(to)}`;
}

/** The whole of bench/RESULTS.md. */
export function renderResultsMarkdown(
  report: BenchReport,
  chartFile = "results.svg",
): string {
  const { machine, settings } = report;
  const versions = Object.entries(report.versions).map(([tool, version]) =>
    `${tool} ${version}`
  );
  const lines = [
    "# Benchmark results",
    "",
    `Measured ${report.date.slice(0, 16).replace("T", " ")} UTC in ${
      Math.round(report.elapsedSeconds)
    } s ` +
    "by `bench/run.ts`. Written by the runner: do not edit by hand.",
    "",
    `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${
      (machine.memoryBytes / 1024 ** 3).toFixed(1)
    } GiB memory, Linux ${machine.kernel}; ` +
    "wrk runs on the same cores as the server it drives.",
    `- Versions: ${versions.join(", ")}.`,
    `- Each figure is the median of ${settings.runs} run${
      settings.runs === 1 ? "" : "s"
    } of ` +
    `${settings.duration} s, wrk with ${settings.threads} thread${
      settings.threads === 1 ? "" : "s"
    }, ` +
    "all servers on 127.0.0.1.",
    "- Reproduce: `" + report.command + "`",
    "",
    `![Our servers' speed as a ratio to each reference](${chartFile})`,
    "",
    "## Results",
    "",
    renderResultsTable(report.scenarios),
    "",
    "Ratios compare requests per second, or MiB/s for the 100 MiB file; above 1× ours is faster. " +
    "Peak RSS is the peak resident memory (VmHWM) of the process that serves (nginx: its one worker). " +
    "Errors are socket errors plus 4xx/5xx answers over all runs.",
    "",
    "## Targets from the issues",
    "",
    renderTargetsTable(report.targets),
  ];
  if (report.skipped.length > 0) {
    lines.push(
      "",
      "## Not measured",
      "",
      ...report.skipped.map((line) => `- ${line}`),
    );
  }
  lines.push(
    "",
    "## How the runner measures",
    "",
    "- Every server starts fresh for each scenario on a free port on 127.0.0.1, and the runner waits " +
      "until it answers. Before measuring, it sends the scenario's request once and checks the answer " +
      "(status 200, or 303 for our board's posts, and each file's exact size), so a server that answers " +
      "the wrong thing quickly is never reported as fast.",
    "- References: nginx and `python3 -m http.server` as installed; the textbook's programs as " +
      "rewritten in `bench/reference/` (single-threaded, as in the book), changed only where a " +
      "measurement needs it: a Content-Length on each answer, a listen backlog of 128, and a client " +
      "hanging up does not end the program.",
    "- Files: the same generated files (500 B page, 100 KiB and 100 MiB random bytes) for every server. " +
      "nginx has one worker, `sendfile on`, `access_log off`.",
    "- Board: each server starts from the same generated messages (JSON Lines for ours, the same messages " +
      "loaded into the Python list for the textbook board). Post runs send urlencoded `message=...` forms to " +
      "`POST /` from 32 connections, each run on a fresh copy of the data, so the store grows during a run " +
      "(the row notes how far). Ours answers 303 only once the message is on disk (fsync); the textbook board " +
      "answers with the whole page, and its saving mode (measured at 1,000 messages only) rewrites the " +
      "whole file without fsync after every post. " +
      "Because the textbook board draws every stored message into that page, its post rate falls as a " +
      "run adds messages; its page row at the same size is the upper bound of its post rate.",
    "- PostgreSQL rows: our board with `--store postgres://...` on a throwaway PostgreSQL the runner " +
      "starts itself (`initdb` in a temp folder, `pg_ctl` on 127.0.0.1, default `fsync = on`; a post " +
      "answers 303 once its transaction has committed), seeded before every start with the same " +
      "1,000 messages (COPY). They are compared with the file store at the same size, measured in the " +
      "same scenario. With 2 processes on the one database, two wrk run at the same time with 16 " +
      "connections each (32 in all, as for 1 process): Req/s is the sum of the two, p50 and p99 are " +
      "the worse of the two wrk figures, Peak RSS is the larger process. wrk, both boards and " +
      "PostgreSQL share the same cores.",
    "- Before the measured runs of a scenario, one short run (not counted) warms each server up, " +
      "except for post runs, which always start from fresh data. After every run the runner waits " +
      "until the server answers a new request, so a server that works through a queue one request " +
      "at a time starts the next run with an empty queue.",
    "",
  );
  return lines.join("\n");
}

/** Escapes text for SVG/XML content and attributes. */
function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(
    ">",
    "&gt;",
  ).replaceAll(
    '"',
    "&quot;",
  );
}

const CHART = {
  width: 960,
  labelWidth: 330,
  rightMargin: 90,
  rowHeight: 40,
  barHeight: 20,
  top: 70,
  bottom: 64,
} as const;

/**
 * Grid lines for a log axis covering [min, max]: 1-2-5 steps for up to three
 * decades, powers of ten beyond.
 *
 * @example chartTicks(0.5, 3) => [0.5, 1, 2, 5]; chartTicks(0.1, 5000) => [0.1, 1, 10, 100, 1000, 10000]
 */
export function chartTicks(min: number, max: number): number[] {
  const candidates: number[] = [];
  for (let exponent = -4; exponent <= 7; exponent++) {
    for (const step of [1, 2, 5]) {
      candidates.push(Number(`${step}e${exponent}`));
    }
  }
  const low = candidates.findLast((t) => t <= min) ?? candidates[0];
  const high = candidates.find((t) => t >= max) ?? candidates.at(-1)!;
  const wide = Math.log10(high / low) > 3;
  const ticks = candidates.filter((t) => t >= low && t <= high);
  if (!wide) return ticks;
  const decades = ticks.filter((t) => Number.isInteger(Math.log10(t)));
  // The widened range must still contain both ends.
  if (decades[0] > min) decades.unshift(decades[0] / 10);
  if (decades.at(-1)! < max) decades.push(decades.at(-1)! * 10);
  return decades;
}

/**
 * An SVG bar chart of every ratio (ours ÷ reference), on a log scale around
 * 1×: bars to the right mean ours is faster, to the left slower. A target
 * ratio, where an issue sets one, is drawn as a dark tick on that row and
 * colours the bar (green met, red not met); other bars are blue.
 *
 * @param targets optional target ratio per "scenario title|reference label"
 */
export function renderSvgChart(
  ratios: Ratio[],
  title: string,
  targets: Record<string, number> = {},
): string {
  const plotLeft = CHART.labelWidth;
  const plotRight = CHART.width - CHART.rightMargin;
  const height = CHART.top + Math.max(ratios.length, 1) * CHART.rowHeight +
    CHART.bottom;
  const plotBottom = height - CHART.bottom;
  const values = [...ratios.map((r) => r.value), ...Object.values(targets), 1];
  // Room on the left for a slow bar's value, which is written beyond its end.
  const ticks = chartTicks(Math.min(...values) / 2, Math.max(...values) * 1.15);
  const [low, high] = [ticks[0], ticks.at(-1)!];
  const x = (value: number) => {
    const clamped = Math.min(Math.max(value, low), high);
    return plotLeft +
      (plotRight - plotLeft) * Math.log(clamped / low) / Math.log(high / low);
  };
  const text = (attributes: string, content: string) =>
    `<text ${attributes}>${escapeXml(content)}</text>`;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${CHART.width}" height="${height}" ` +
    `viewBox="0 0 ${CHART.width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${CHART.width}" height="${height}" fill="#ffffff"/>`,
    text(
      `x="${
        CHART.width / 2
      }" y="28" text-anchor="middle" font-size="18" font-weight="bold" fill="#111"`,
      title,
    ),
    text(
      `x="${CHART.width / 2}" y="50" text-anchor="middle" fill="#444"`,
      "ours ÷ reference, log scale: right of 1× ours is faster, left of it slower",
    ),
  ];
  for (const tick of ticks) {
    const tx = x(tick).toFixed(1);
    const stroke = tick === 1
      ? `stroke="#111" stroke-width="1.5"`
      : `stroke="#ddd"`;
    parts.push(
      `<line x1="${tx}" y1="${
        CHART.top - 6
      }" x2="${tx}" y2="${plotBottom}" ${stroke}/>`,
      text(
        `x="${tx}" y="${plotBottom + 18}" text-anchor="middle" fill="#444"`,
        formatRatio(tick),
      ),
    );
  }
  // Where a scenario has several servers of ours (1 and 2 board processes), each bar names its own.
  const oursPerScenario = new Map<string, Set<string>>();
  for (const { scenario, ours } of ratios) {
    oursPerScenario.set(
      scenario,
      (oursPerScenario.get(scenario) ?? new Set()).add(ours),
    );
  }
  ratios.forEach((ratio, index) => {
    const y = CHART.top + index * CHART.rowHeight;
    const versus = oursPerScenario.get(ratio.scenario)!.size > 1
      ? `${ratio.ours} vs ${ratio.reference}`
      : `vs ${ratio.reference}`;
    const middle = y + CHART.rowHeight / 2;
    const target = targets[`${ratio.scenario}|${ratio.reference}`];
    const colour = target === undefined
      ? "#3b6fb6"
      : ratio.value >= target
      ? "#2e7d32"
      : "#c62828";
    const [from, to] = [
      x(Math.min(1, ratio.value)),
      x(Math.max(1, ratio.value)),
    ];
    const summary = `${ratio.scenario}: ${ratio.ours} vs ${ratio.reference}, ${
      formatRatio(ratio.value)
    }`;
    parts.push(
      text(
        `x="${plotLeft - 10}" y="${middle - 3}" text-anchor="end" fill="#111"`,
        ratio.scenario,
      ),
      text(
        `x="${plotLeft - 10}" y="${
          middle + 13
        }" text-anchor="end" font-size="12" fill="#555"`,
        versus,
      ),
      `<rect x="${from.toFixed(1)}" y="${
        (middle - CHART.barHeight / 2).toFixed(1)
      }" ` +
        `width="${
          Math.max(to - from, 1).toFixed(1)
        }" height="${CHART.barHeight}" fill="${colour}">` +
        `<title>${escapeXml(summary)}</title></rect>`,
    );
    // The value sits beyond the bar's end: right of a fast bar, left of a slow one.
    const right = ratio.value >= 1;
    parts.push(
      text(
        `x="${(right ? to + 6 : from - 6).toFixed(1)}" y="${
          middle + 5
        }" text-anchor="${right ? "start" : "end"}" ` +
          `font-weight="bold" fill="#111"`,
        formatRatio(ratio.value),
      ),
    );
    if (target !== undefined) {
      const tx = x(target).toFixed(1);
      parts.push(
        `<line x1="${tx}" y1="${y + 5}" x2="${tx}" y2="${
          y + CHART.rowHeight - 5
        }" stroke="#111" stroke-width="3">` +
          `<title>target ${formatRatio(target)}</title></line>`,
      );
    }
  });
  if (ratios.length === 0) {
    parts.push(
      text(
        `x="${CHART.width / 2}" y="${
          CHART.top + 24
        }" text-anchor="middle" fill="#444"`,
        "No ratios: none of our servers was measured with a reference.",
      ),
    );
  }
  const legendY = height - 18;
  const legend: [string, string][] = [["#2e7d32", "target met"], [
    "#c62828",
    "target not met",
  ], [
    "#3b6fb6",
    "no target",
  ]];
  let legendX = plotLeft;
  for (const [colour, label] of legend) {
    parts.push(
      `<rect x="${legendX}" y="${
        legendY - 11
      }" width="13" height="13" fill="${colour}"/>`,
      text(`x="${legendX + 19}" y="${legendY}" fill="#333"`, label),
    );
    legendX += 130;
  }
  parts.push(
    `<line x1="${legendX + 6}" y1="${legendY - 12}" x2="${legendX + 6}" y2="${
      legendY + 2
    }" stroke="#111" stroke-width="3"/>`,
    text(`x="${legendX + 16}" y="${legendY}" fill="#333"`, "target ratio"),
    "</svg>",
  );
  return parts.join("\n") + "\n";
}
