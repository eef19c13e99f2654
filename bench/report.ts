/**
 * Turning measurements into figures: medians, ratios, the targets' verdicts,
 * the Markdown tables and bench/RESULTS.md. Everything here is pure (tested in
 * tests/bench_test.ts, timed in report_bench.ts). The chart is in chart.ts,
 * the README's summary in readme.ts.
 *
 * @module
 */

/** One server's figures in one scenario (medians over the runs). */
export interface ServerResult {
  /** Stable id, e.g. "ours", "nginx", "deno-serve-floor". */
  key: string;
  /** Shown in tables, e.g. "server_files.ts". */
  label: string;
  role: "ours" | "floor" | "peer";
  /** A JavaScript peer. */
  javascript?: boolean;
  runs: number;
  /** The scenario's figure (req/s or bytes/s) of each measured run: the spread behind the median. */
  samples: number[];
  requestsPerSec: number;
  /** Bytes read by the client per second (heads and bodies). */
  bytesPerSec: number;
  /** Bytes on the wire per response, head included (wrk: transfer ÷ requests). */
  bytesPerResponse: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Peak resident memory (VmHWM) of the serving process; null when unknown. */
  peakMemoryBytes: number | null;
  /** Socket errors and 4xx/5xx answers, summed over the runs. */
  errors: number;
  /** Anything a reader must know, e.g. the Content-Encoding or how many messages were stored. */
  note?: string;
}

/** One scenario: what was asked, and every server's answer. */
export interface ScenarioResult {
  id: string;
  title: string;
  /** How the client drove it, e.g. "32 connections, keep-alive". */
  load: string;
  /** The figure ratios compare: requests per second or bytes per second. */
  metric: "requests" | "bytes";
  results: ServerResult[];
}

/** One server's figure in one scenario, as a target names it. */
export interface TargetPick {
  scenario: string;
  /** @default "ours" */
  server?: string;
}

/** A target: ours ÷ versus on one figure, held to a bound. */
export interface TargetDef {
  goal: string;
  /** Requests (or bytes) per second, peak RSS, or bytes per response. */
  figure: "rate" | "memory" | "bytes-per-response";
  ours: TargetPick;
  /** The best of these servers (fastest, or smallest), or a fixed figure. */
  versus: { scenario: string; servers: string[] } | number;
  atLeast?: number;
  atMost?: number;
  below?: number;
}

/** A target checked against one run. */
export interface TargetResult {
  goal: string;
  measured: string;
  /** null when a server it needs was not measured. */
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
    /** The 1-minute load average when the run started and when it ended. */
    loadAverage?: [number, number];
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
  /** A line on the run's conditions, from `--note`. */
  note?: string;
}

/** A ratio of one of our servers to a peer or floor in one scenario. */
export interface Ratio {
  scenario: string;
  ours: string;
  reference: string;
  role: "floor" | "peer";
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
 * Every ratio of one of our servers to each floor and peer, scenario by scenario.
 *
 * @example a scenario where ours does 900 req/s and nginx 1000 gives
 *   [{ scenario, ours: "server_files.ts", reference: "nginx", role: "peer", value: 0.9 }]
 */
export function computeRatios(scenarios: ScenarioResult[]): Ratio[] {
  const ratios: Ratio[] = [];
  for (const scenario of scenarios) {
    for (const ours of scenario.results.filter((r) => r.role === "ours")) {
      for (const other of scenario.results) {
        const base = metricValue(scenario, other);
        if (other.role === "ours" || base <= 0) continue;
        ratios.push({
          scenario: scenario.title,
          ours: ours.label,
          reference: other.label,
          role: other.role,
          value: metricValue(scenario, ours) / base,
        });
      }
    }
  }
  return ratios;
}

/**
 * The fastest server of a scenario among ours and the peers (floors are yardsticks, not
 * servers a user would pick); null when nothing was measured.
 */
export function fastestServer(scenario: ScenarioResult): ServerResult | null {
  let best: ServerResult | null = null;
  for (const result of scenario.results) {
    if (result.role === "floor") continue;
    if (
      best === null ||
      metricValue(scenario, result) > metricValue(scenario, best)
    ) {
      best = result;
    }
  }
  return best;
}

/**
 * Formats a number with thousands separators and no decimals.
 *
 * @example formatCount(56013.11) === "56,013"
 */
export function formatCount(value: number): string {
  return WHOLE.format(Math.round(value));
}

// Made once: `toLocaleString` builds a new formatter at every call (report_bench.ts shows
// it cost most of the report's time).
const WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const ONE_DECIMAL = new Intl.NumberFormat("en-US", {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});

/**
 * Formats a count in thousands with 1 decimal (k), or whole below 1,000.
 *
 * @example formatKilo(56013.11) === "56.0k"; formatKilo(950) === "950"
 */
export function formatKilo(value: number): string {
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : formatCount(value);
}

/**
 * Formats bytes per second as MiB/s (wrk's unit), 1 decimal.
 *
 * @example formatRate(1.5 * 1024 * 1024) === "1.5"; formatRate(1863.7 * 1024 ** 2) === "1,863.7"
 */
export function formatRate(bytesPerSec: number): string {
  return ONE_DECIMAL.format(bytesPerSec / 1024 ** 2);
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
 * Formats a size in bytes: whole bytes below 1 MiB, MiB above.
 *
 * @example formatSize(102_687.4) === "102,687 B"; formatSize(104_857_600) === "100.0 MiB"; formatSize(null) === "–"
 */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return "–";
  return bytes < 1024 ** 2 ? `${formatCount(bytes)} B` : formatMemory(bytes);
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

/**
 * The spread of a scenario's figure over the runs: lowest to highest.
 *
 * @example formatSpread([52_100, 55_300, 54_000], "requests") === "52.1k–55.3k"
 *   formatSpread([1.1 * 1024 ** 3], "bytes") === "1,126.4"
 */
export function formatSpread(
  samples: number[],
  metric: "requests" | "bytes",
): string {
  if (samples.length === 0) return "–";
  const format = metric === "bytes" ? formatRate : formatKilo;
  const [low, high] = [Math.min(...samples), Math.max(...samples)];
  return low === high ? format(low) : `${format(low)}–${format(high)}`;
}

/** Escapes a cell so `|` and line breaks do not break the Markdown table. */
function markdownCell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** A Markdown table; the first `leftColumns` and the last column are left-aligned, figures right. */
export function markdownTable(
  header: string[],
  rows: string[][],
  leftColumns = 2,
): string {
  const align = header.map((_, i) =>
    i < leftColumns || i === header.length - 1 ? "---" : "--:"
  );
  return [header, align, ...rows]
    .map((row) => `| ${row.map(markdownCell).join(" | ")} |`)
    .join("\n");
}

/**
 * The results table: one row per server per scenario. Each floor's and peer's row says
 * ours ÷ it on the scenario's figure (for each of ours, when a scenario has several).
 */
export function renderResultsTable(scenarios: ScenarioResult[]): string {
  const header = [
    "Scenario",
    "Server",
    "Req/s",
    "Runs, low–high",
    "MiB/s",
    "Bytes/response",
    "p50",
    "p99",
    "Peak RSS",
    "Errors",
    "Ours ÷ this",
  ];
  const rows: string[][] = [];
  for (const scenario of scenarios) {
    const ours = scenario.results.filter((r) => r.role === "ours");
    for (const result of scenario.results) {
      const base = metricValue(scenario, result);
      const ratios = result.role === "ours" || base <= 0
        ? []
        : ours.map((o) =>
          `${formatRatio(metricValue(scenario, o) / base)}${
            ours.length > 1 ? ` ${o.label}` : ""
          }`
        );
      const name = result.role === "ours"
        ? `**${result.label}**`
        : result.role === "floor"
        ? `${result.label} (floor)`
        : result.label;
      rows.push([
        scenario.title,
        result.note ? `${name}: ${result.note}` : name,
        formatCount(result.requestsPerSec),
        formatSpread(result.samples, scenario.metric),
        formatRate(result.bytesPerSec),
        formatSize(result.bytesPerResponse),
        formatLatency(result.p50Ms),
        formatLatency(result.p99Ms),
        formatMemory(result.peakMemoryBytes),
        formatCount(result.errors),
        ratios.join(", ") || "–",
      ]);
    }
  }
  return markdownTable(header, rows);
}

/**
 * Checks each target against a run's results. A target whose servers were not all
 * measured reads "not measured".
 *
 * @example checkTargets([{ goal, figure: "rate", ours: { scenario: "tiny" },
 *   versus: { scenario: "tiny", servers: ["loop"] }, atLeast: 0.9 }], results)
 *   // => [{ goal, measured: "0.95× (9,500/s vs 10,000/s bare loop)", met: true }]
 */
export function checkTargets(
  targets: TargetDef[],
  scenarios: ScenarioResult[],
): TargetResult[] {
  const find = (scenarioId: string, key: string) => {
    const scenario = scenarios.find((s) => s.id === scenarioId);
    const result = scenario?.results.find((r) => r.key === key);
    return scenario && result ? { scenario, result } : null;
  };
  return targets.map((target) => {
    const value = (found: { scenario: ScenarioResult; result: ServerResult }) =>
      target.figure === "rate"
        ? metricValue(found.scenario, found.result)
        : target.figure === "memory"
        ? found.result.peakMemoryBytes
        : found.result.bytesPerResponse;
    const unit = (figure: number, scenarioId: string) => {
      if (target.figure === "memory") return formatMemory(figure);
      if (target.figure === "bytes-per-response") return formatSize(figure);
      const metric = scenarios.find((s) => s.id === scenarioId)?.metric;
      return metric === "bytes"
        ? `${formatRate(figure)} MiB/s`
        : `${formatCount(figure)}/s`;
    };
    const oursFound = find(target.ours.scenario, target.ours.server ?? "ours");
    const ours = oursFound ? value(oursFound) : null;
    let base: number | null = null;
    let baseText = "";
    if (typeof target.versus === "number") {
      base = target.versus;
      baseText = target.figure === "memory"
        ? `${target.versus / 1e6} MB`
        : String(target.versus);
    } else {
      const { scenario, servers } = target.versus;
      // The best of the named servers: the fastest, or the smallest.
      const smaller = target.figure !== "rate";
      for (const key of servers) {
        const found = find(scenario, key);
        const figure = found ? value(found) : null;
        if (
          found && figure !== null &&
          (base === null || (smaller ? figure < base : figure > base))
        ) {
          base = figure;
          baseText = `${unit(figure, scenario)} ${found.result.label}`;
        }
      }
    }
    if (ours === null || base === null || base === 0 || oursFound === null) {
      return { goal: target.goal, measured: "–", met: null };
    }
    const ratio = ours / base;
    const met = (target.atLeast === undefined || ratio >= target.atLeast) &&
      (target.atMost === undefined || ratio <= target.atMost) &&
      (target.below === undefined || ratio < target.below);
    const measured = `${formatRatio(ratio)} (${
      unit(ours, target.ours.scenario)
    } vs ${baseText})`;
    return { goal: target.goal, measured, met };
  });
}

/** The targets table: each goal, what this run measured, and whether it was met. */
export function renderTargetsTable(targets: TargetResult[]): string {
  const verdict = (met: boolean | null) =>
    met === null ? "not measured" : met ? "✅ met" : "❌ not met";
  return markdownTable(
    ["Target", "Measured", "Result"],
    targets.map((t) => [t.goal, t.measured, verdict(t.met)]),
    3,
  );
}

/** The line on how busy the machine was, when the run recorded it. */
export function describeLoad(machine: BenchReport["machine"]): string {
  if (!machine.loadAverage) return "";
  const [start, end] = machine.loadAverage;
  const busy = Math.max(start, end) > machine.cpus * 0.5;
  return `Load average ${start.toFixed(1)} at the start, ${
    end.toFixed(1)
  } at the end` +
    (busy
      ? `: other work shared the ${machine.cpus} cores, so the absolute figures are low and ` +
        "noisy; compare the ratios, measured side by side."
      : ".");
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
  const load = describeLoad(machine);
  const lines = [
    "# Benchmark results",
    "",
    `Measured ${report.date.slice(0, 16).replace("T", " ")} UTC in ${
      Math.round(report.elapsedSeconds)
    } s by \`bench/run.ts\`. Written by the runner: do not edit by hand.`,
    "",
    `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${
      (machine.memoryBytes / 1024 ** 3).toFixed(1)
    } GiB memory, Linux ${machine.kernel}; ` +
    "the client (wrk or curl) runs on the same cores as the server it drives.",
    ...(load ? [`- ${load}`] : []),
    ...(report.note ? [`- ${report.note}`] : []),
    `- Versions: ${versions.join(", ")}.`,
    `- Each figure is the median of ${settings.runs} run${
      settings.runs === 1 ? "" : "s"
    } of ${settings.duration} s, wrk with ${settings.threads} thread${
      settings.threads === 1 ? "" : "s"
    } (the 100 MiB file: the median of single curl downloads), ` +
    "all servers on 127.0.0.1. The runs' lowest and highest figures are beside it.",
    "- Reproduce: `" + report.command + "`",
    "",
    `![Our servers' speed as a ratio to each peer and floor](${chartFile})`,
    "",
    "## Results",
    "",
    renderResultsTable(report.scenarios),
    "",
    "Ratios compare requests per second, or MiB/s for the 100 MiB file; above 1× ours is " +
    "faster. A floor is the runtime doing the least (bench/reference/), not a server to " +
    "pick. Peak RSS is the peak resident memory (VmHWM) of the process that serves (nginx: " +
    "its one worker). Bytes/response is what the client read per response, head included. " +
    "Errors are socket errors plus 4xx/5xx answers over all runs.",
    "",
    "## Targets",
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
    ...METHOD.map((m) => `- ${m}`),
    "",
  );
  return lines.join("\n");
}

/** The method, as RESULTS.md explains it. */
const METHOD = [
  "Every server starts fresh for each scenario on a free port on 127.0.0.1, and the runner " +
  "waits until it answers. Before measuring, it sends the scenario's request once with curl " +
  "and checks the answer (status 200, or 303 for our board's posts, and each file's exact " +
  "size; for the compressed file the Content-Encoding is noted), so a server that answers " +
  "the wrong thing quickly is never reported as fast.",
  "Floors (bench/reference/): `files_floor.ts`, a `Deno.serve` that reads the headers a file " +
  "server must read and answers cached bytes (and cached gzip/br bodies) with a file " +
  "server's headers; `tiny_listen_loop.ts` and `tiny_net_loop.mjs`, a bare accept, read, " +
  "write, close loop in Deno and in Node.",
  "Peers: nginx (one worker, `sendfile on`, `access_log off`; `gzip on`, `gzip_comp_level 1` " +
  "for the compressed file), Caddy (`caddy file-server`, `GOMAXPROCS=1`; a Caddyfile with " +
  "`encode { gzip 1 }` for the compressed file), lighttpd (one process), " +
  "`python3 -m http.server`, Hono's `serveStatic` on Deno, and Node's `serve`, " +
  "`http-server` and `sirv-cli` at exact versions, installed by the runner with npm into a " +
  "temporary folder; the textbook's programs as rewritten in `bench/reference/`.",
  "Files: the same generated files (500 B page, 15 KiB stylesheet, 100 KiB and 100 MiB " +
  "random bytes) for every server.",
  "The 100 MiB file is downloaded by one `curl` at a time, as a user downloads one big " +
  "file. Earlier runs drove it with wrk (4 connections) and read about 1× nginx while a " +
  "single curl read about 0.43×: wrk reads every response 8 KiB at a time (its fixed " +
  "receive buffer, one read() call each, 12,800 per file, checked with strace) where curl " +
  "reads up to 100 KiB, so wrk itself was the limit and every server looked alike.",
  "Board: each server starts from the same generated messages. Post runs send urlencoded " +
  "`message=...` forms to `POST /` from 32 connections, each run on a fresh copy of the " +
  "data, so the store grows during a run (the row notes how far). Ours answers 303 only " +
  "once the message is on disk (fsync); the textbook board answers with the whole page, " +
  "and its saving mode rewrites the whole file without fsync after every post.",
  "PostgreSQL rows: our board on a throwaway PostgreSQL the runner starts itself " +
  "(`initdb` in a temp folder, `pg_ctl` on 127.0.0.1, `fsync = on`), seeded with the same " +
  "1,000 messages (before every start for posts; once for the page, whose servers run side " +
  "by side), compared with the file store in the same scenario. " +
  "With 2 processes, two wrk run at once with 16 connections each: Req/s is the sum, p50 " +
  "and p99 the worse of the two, Peak RSS the larger process.",
  "The servers of a scenario are measured in turns (run 1 of each, then run 2 of each, ...), " +
  "so a change in the machine's load falls on all of them alike. Before the measured runs, " +
  "one short run (not counted) warms each server up, except for post runs, which start " +
  "from fresh data every turn. After every run the runner waits until the server answers " +
  "a new request, so the next run does not start behind a queue.",
];
