/**
 * Turning measurements into figures: medians, ratios, the targets' verdicts,
 * bench/RESULTS.md and the README's summary. Pure (tested in
 * tests/bench_test.ts, timed in report_bench.ts); the chart is in chart.ts.
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
  /** The scenario's figure (req/s or bytes/s) of each measured run: the spread behind the median. */
  samples: number[];
  requestsPerSec: number;
  /** Bytes read by the client per second (heads and bodies). */
  bytesPerSec: number;
  /** Bytes on the wire per response, head included. */
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

/** A target: ours ÷ the best of `versus` on one figure, held to one bound. */
export interface TargetDef {
  goal: string;
  /** @default "rate" (requests or bytes per second) */
  figure?: "rate" | "memory" | "bytes-per-response";
  scenario: string;
  /** Which of ours. @default "ours" */
  server?: string;
  /** Servers' keys, of which the best counts (fastest, or smallest); or a figure. */
  versus: string[] | number;
  /** Where `versus` was measured. @default scenario */
  versusScenario?: string;
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

/** Everything RESULTS.md shows; results.json holds it as is. */
export interface BenchReport {
  /** ISO 8601 time the run started. */
  date: string;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryBytes: number;
    kernel: string;
    /** The 1-minute load average when the run started and when it ended. */
    loadAverage: [number, number];
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
  elapsedSeconds: number;
  /** A line on the run's conditions, from `--note`. */
  note?: string;
}

/** One of our servers against a peer or floor in one scenario. */
export interface Ratio {
  scenario: string;
  ours: string;
  /** The other server's label ("(floor)" added for a floor). */
  versus: string;
  /** ours ÷ versus on the scenario's figure: above 1 means ours is faster. */
  value: number;
  /** The bound a target sets on this ratio, if one does. */
  target?: number;
}

/**
 * The middle value (mean of the two middle values for an even count).
 *
 * @example median([3, 1, 2]) === 2; median([4, 1, 3, 2]) === 2.5
 */
export function median(values: number[]): number {
  if (values.length === 0) throw new RangeError("median of nothing");
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The figure a scenario compares on: requests or bytes per second. */
export function figureOf(
  scenario: ScenarioResult,
  result: ServerResult,
): number {
  return scenario.metric === "bytes"
    ? result.bytesPerSec
    : result.requestsPerSec;
}

const fastestOf = (scenario: ScenarioResult, results: ServerResult[]) =>
  results.reduce<ServerResult | undefined>(
    (best, r) =>
      best && figureOf(scenario, best) >= figureOf(scenario, r) ? best : r,
    undefined,
  );

/**
 * Every ratio of one of our servers to each floor and peer, scenario by scenario, with
 * the bound of the target (if any) that holds ours to that server in the same scenario.
 *
 * @example ours at 900 req/s beside nginx at 1000 gives
 *   [{ scenario, ours: "server_files.ts", versus: "nginx", value: 0.9 }]
 */
export function computeRatios(
  scenarios: ScenarioResult[],
  targets: TargetDef[] = [],
): Ratio[] {
  return scenarios.flatMap((scenario) =>
    scenario.results.filter((r) => r.role === "ours").flatMap((ours) =>
      scenario.results.filter((other) =>
        other.role !== "ours" && figureOf(scenario, other) > 0
      )
        .map((other): Ratio => {
          const target = targets.find((t) =>
            (t.figure ?? "rate") === "rate" && t.scenario === scenario.id &&
            (t.server ?? "ours") === ours.key && Array.isArray(t.versus) &&
            (t.versusScenario ?? t.scenario) === scenario.id &&
            t.versus.includes(other.key)
          );
          return {
            scenario: scenario.title,
            ours: ours.label,
            versus: other.role === "floor"
              ? `${other.label} (floor)`
              : other.label,
            value: figureOf(scenario, ours) / figureOf(scenario, other),
            ...(target?.atLeast !== undefined
              ? { target: target.atLeast }
              : {}),
          };
        })
    )
  );
}

// Made once: `toLocaleString` builds a new formatter at every call (report_bench.ts showed
// it cost most of the report's time).
const WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const ONE_DECIMAL = new Intl.NumberFormat("en-US", {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});

/** @example formatCount(56013.11) === "56,013" */
export const formatCount = (value: number) => WHOLE.format(Math.round(value));

/** Bytes per second as MiB/s (wrk's unit). @example formatRate(1863.7 * 1024 ** 2) === "1,863.7" */
export const formatRate = (bytesPerSec: number) =>
  ONE_DECIMAL.format(bytesPerSec / 1024 ** 2);

/**
 * A latency with about three significant digits.
 *
 * @example formatLatency(0.405) === "0.405 ms"; formatLatency(1610) === "1.61 s"; formatLatency(null) === "–"
 */
export function formatLatency(ms: number | null): string {
  if (ms === null) return "–";
  return ms >= 1000
    ? `${(ms / 1000).toFixed(2)} s`
    : `${Number(ms.toPrecision(3))} ms`;
}

/**
 * A size: whole bytes below 1 MiB, MiB with 1 decimal above.
 *
 * @example formatSize(102_687.4) === "102,687 B"; formatSize(104_857_600) === "100.0 MiB"; formatSize(null) === "–"
 */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return "–";
  return bytes < 1024 ** 2
    ? `${formatCount(bytes)} B`
    : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/**
 * A ratio with two significant digits below 10, whole above.
 *
 * @example formatRatio(0.8312) === "0.83×"; formatRatio(12.4) === "12×"; formatRatio(19675) === "19,675×"
 */
export function formatRatio(value: number): string {
  return value >= 10
    ? `${formatCount(value)}×`
    : `${Number(value.toPrecision(2))}×`;
}

/**
 * The spread of a scenario's figure over the runs: lowest to highest, in thousands for
 * requests, MiB/s for bytes.
 *
 * @example formatSpread([52_100, 55_300, 54_000], "requests") === "52.1k–55.3k"
 */
export function formatSpread(
  samples: number[],
  metric: "requests" | "bytes",
): string {
  if (samples.length === 0) return "–";
  const format = (n: number) =>
    metric === "bytes"
      ? formatRate(n)
      : n >= 1000
      ? `${(n / 1000).toFixed(1)}k`
      : formatCount(n);
  const [low, high] = [Math.min(...samples), Math.max(...samples)].map(format);
  return low === high ? low : `${low}–${high}`;
}

/**
 * Seconds left, for a person.
 *
 * @example formatTimeLeft(42) === "about 42 s left"; formatTimeLeft(754) === "about 12 min 30 s left"
 */
export function formatTimeLeft(seconds: number): string {
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
  const rounded = Math.round(seconds / 10) * 10;
  const rest = rounded % 60;
  return `about ${Math.floor(rounded / 60)} min${
    rest ? ` ${rest} s` : ""
  } left`;
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
  const cell = (text: string) =>
    text.replaceAll("|", "\\|").replaceAll("\n", " ");
  return [header, align, ...rows].map((row) =>
    `| ${row.map(cell).join(" | ")} |`
  ).join("\n");
}

/**
 * The results table: one row per server per scenario. A floor's or peer's row gives
 * ours ÷ it; where a scenario has several of ours (the PostgreSQL rows), each of ours
 * gives itself ÷ each other server instead, so the ratio reads as the target does.
 */
export function renderResultsTable(scenarios: ScenarioResult[]): string {
  const header = ["Scenario", "Server", "Req/s", "Runs, low–high", "MiB/s"]
    .concat("Bytes/response", "p50", "p99", "Peak RSS", "Errors", "Ratio");
  const rows = scenarios.flatMap((scenario) => {
    const ours = scenario.results.filter((r) => r.role === "ours");
    const others = scenario.results.filter((r) => r.role !== "ours");
    return scenario.results.map((result) => {
      const figure = figureOf(scenario, result);
      let ratio = "–";
      if (result.role !== "ours" && ours.length === 1 && figure > 0) {
        ratio = formatRatio(figureOf(scenario, ours[0]) / figure);
      } else if (result.role === "ours" && ours.length > 1) {
        ratio = others.map((o) =>
          `${formatRatio(figure / figureOf(scenario, o))} ${o.label}`
        )
          .join(", ") || "–";
      }
      const name = result.role === "ours"
        ? `**${result.label}**`
        : result.role === "floor"
        ? `${result.label} (floor)`
        : result.label;
      return [
        scenario.title,
        result.note ? `${name}: ${result.note}` : name,
        formatCount(result.requestsPerSec),
        formatSpread(result.samples, scenario.metric),
        formatRate(result.bytesPerSec),
        formatSize(result.bytesPerResponse),
        formatLatency(result.p50Ms),
        formatLatency(result.p99Ms),
        formatSize(result.peakMemoryBytes),
        formatCount(result.errors),
        ratio,
      ];
    });
  });
  return markdownTable(header, rows);
}

/**
 * Checks each target against a run's results; one whose servers were not all measured
 * reads "not measured".
 *
 * @example a tiny target of at least 0.9× the loop, with 9,500/s against 10,000/s:
 *   [{ goal, measured: "0.95× (9,500/s vs 10,000/s bare loop)", met: true }]
 */
export function checkTargets(
  targets: TargetDef[],
  scenarios: ScenarioResult[],
): TargetResult[] {
  return targets.map((target) => {
    const rate = (target.figure ?? "rate") === "rate";
    const find = (scenarioId: string, key: string) => {
      const scenario = scenarios.find((s) => s.id === scenarioId);
      const result = scenario?.results.find((r) => r.key === key);
      if (!scenario || !result) return null;
      const figure = rate
        ? figureOf(scenario, result)
        : target.figure === "memory"
        ? result.peakMemoryBytes
        : result.bytesPerResponse;
      if (figure === null) return null;
      const text = !rate
        ? formatSize(figure)
        : scenario.metric === "bytes"
        ? `${formatRate(figure)} MiB/s`
        : `${formatCount(figure)}/s`;
      return { figure, text: `${text} ${result.label}` };
    };
    const ours = find(target.scenario, target.server ?? "ours");
    const { versus, versusScenario = target.scenario } = target;
    // The best of the named servers: the fastest, or the smallest.
    const better = (a: { figure: number }, b: { figure: number }) =>
      rate ? a.figure > b.figure : a.figure < b.figure;
    const base = typeof versus === "number"
      ? { figure: versus, text: `${versus / 1e6} MB` }
      : versus.map((key) => find(versusScenario, key))
        .reduce((best, r) => r && (!best || better(r, best)) ? r : best, null);
    if (!ours || !base?.figure) {
      return { goal: target.goal, measured: "–", met: null };
    }
    const ratio = ours.figure / base.figure;
    const met = (target.atLeast === undefined || ratio >= target.atLeast) &&
      (target.atMost === undefined || ratio <= target.atMost) &&
      (target.below === undefined || ratio < target.below);
    const measured = `${formatRatio(ratio)} (${ours.text} vs ${base.text})`;
    return { goal: target.goal, measured, met };
  });
}

/** The targets table: each goal, what this run measured, and whether it was met. */
export function renderTargetsTable(targets: TargetResult[]): string {
  const verdict = (met: boolean | null) =>
    met === null ? "not measured" : met ? "✅ met" : "❌ not met";
  const rows = targets.map((t) => [t.goal, t.measured, verdict(t.met)]);
  return markdownTable(["Target", "Measured", "Result"], rows, 3);
}

/** The whole of bench/RESULTS.md (deno fmt then wraps its lines). */
export function renderResultsMarkdown(report: BenchReport): string {
  const { machine, settings: { runs, duration, threads } } = report;
  const [start, end] = machine.loadAverage;
  const busy = Math.max(start, end) > machine.cpus * 0.5
    ? `: other work shared the ${machine.cpus} cores, so the absolute figures
are low and noisy; compare the ratios, measured side by side.`
    : ".";
  const versions = Object.entries(report.versions).map((v) => v.join(" "));
  const gib = (machine.memoryBytes / 1024 ** 3).toFixed(1);
  const skipped = report.skipped.map((line) => `- ${line}`).join("\n");
  return `# Benchmark results

Measured ${report.date.slice(0, 16).replace("T", " ")} UTC in ${
    Math.round(report.elapsedSeconds)
  } s by \`bench/run.ts\`. Written by the runner: do not edit by hand.

- Machine: ${machine.cpus} × ${machine.cpuModel}, ${gib} GiB memory, Linux ${machine.kernel};
  the client (wrk or curl) runs on the same cores as the server it drives.
- Load average ${start.toFixed(1)} at the start, ${
    end.toFixed(1)
  } at the end${busy}
${report.note ? `- ${report.note}\n` : ""}- Versions: ${versions.join(", ")}.
- Each figure is the median of ${runs} run${
    runs === 1 ? "" : "s"
  } of ${duration} s, wrk with ${threads} threads
  (the 100 MiB file: the median of single curl downloads), all servers on
  127.0.0.1. The runs' lowest and highest figures are beside it.
- Reproduce: \`${report.command}\`

![Our servers' speed as a ratio to each peer and floor](results.svg)

## Results

${renderResultsTable(report.scenarios)}

Ratio: on a floor's or peer's row, ours ÷ it, on requests per second (MiB/s for
the 100 MiB file); above 1× ours is faster. On the PostgreSQL rows, where two of
ours share a scenario, each of ours ÷ the file store. A floor is the runtime
doing the least (bench/reference/), not a server to pick. Peak RSS is the peak
resident memory (VmHWM) of the process that serves (nginx: its one worker).
Bytes/response is what the client read per response, head included. Errors are
socket errors plus 4xx/5xx answers over all runs.

## Targets

${renderTargetsTable(report.targets)}
${skipped ? `\n## Not measured\n\n${skipped}\n` : ""}
## How the runner measures

What each server is, how it is started, checked, warmed up and driven, and why
the 100 MiB file is downloaded with curl: [README, Benchmarks](../README.md#benchmarks).
`;
}

/** Where `deno task bench --update-readme` keeps the README's summary. */
export const README_MARKERS = {
  start:
    "<!-- bench:summary:start (written by deno task bench --update-readme) -->",
  end: "<!-- bench:summary:end -->",
} as const;

/**
 * The fastest peer of a scenario and how it stands against `ours` (one of our rows;
 * our other variants in the scenario are not peers and are left out).
 *
 * @example fastestPeerLine(scenario, ours) === "lighttpd, faster than ours (ours 3rd of 9)"
 */
export function fastestPeerLine(
  scenario: ScenarioResult,
  ours: ServerResult,
): string {
  const peers = scenario.results.filter((r) => r.role === "peer");
  const fastest = fastestOf(scenario, peers);
  if (!fastest) return "–";
  const place = 1 +
    peers.filter((p) => figureOf(scenario, p) > figureOf(scenario, ours))
      .length;
  const suffix = place % 100 >= 11 && place % 100 <= 13
    ? "th"
    : ["th", "st", "nd", "rd"][place % 10] ?? "th";
  const rank = `${place}${suffix} of ${peers.length + 1}`;
  return place > 1
    ? `${fastest.label}, faster than ours (ours ${rank})`
    : `${fastest.label}; ours is faster (${rank})`;
}

/**
 * The README's summary of one run: a line on where and when, one row per scenario and
 * server of ours, then how many targets were met.
 */
export function renderReadmeSummary(report: BenchReport): string {
  const rows = report.scenarios.flatMap((scenario) =>
    scenario.results.filter((r) => r.role === "ours").map((ours) => {
      const ratioTo = (role: "floor" | "peer") => {
        const others = scenario.results.filter((r) => r.role === role);
        const best = fastestOf(scenario, others);
        const base = best ? figureOf(scenario, best) : 0;
        return base > 0
          ? `${formatRatio(figureOf(scenario, ours) / base)} ${best!.label}`
          : "–";
      };
      return [scenario.title, ours.label, ratioTo("floor"), ratioTo("peer")]
        .concat(fastestPeerLine(scenario, ours));
    })
  );
  const measured = report.targets.filter((t) => t.met !== null);
  const met = measured.filter((t) => t.met).length;
  const unmeasured = report.targets.length - measured.length;
  const header = ["Scenario", "Ours", "Ours ÷ floor", "Ours ÷ fastest peer"];
  const table = markdownTable([...header, "Fastest peer"], rows, 5);
  const { cpus, cpuModel } = report.machine;
  return `Ratios from one run of \`${report.command}\` on ${
    report.date.slice(0, 10)
  }: ${cpus} × ${cpuModel},
with the client on the same cores as the servers, so read them as rough
proportions, not absolute speeds. Above 1× ours is faster.

${table}

Targets: ${met} of ${measured.length} met in this run${
    unmeasured ? ` (${unmeasured} not measured)` : ""
  }. Every figure, each peer, the machine and the versions:
[bench/RESULTS.md](bench/RESULTS.md).`;
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
) {
  const from = text.indexOf(start);
  const to = text.indexOf(end, from + start.length);
  if (from < 0 || to < 0) return null;
  return `${text.slice(0, from + start.length)}\n${content}\n${text.slice(to)}`;
}
