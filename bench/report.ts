/**
 * Turning measurements into figures: medians, ratios, the targets' verdicts, bench/RESULTS.md and
 * the README's summary. Pure (tested in tests/bench_test.ts, timed in report_bench.ts).
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
  /** The turn each of `samples` was measured in: servers' runs of one turn ran back to back. @default 0, 1, 2 ... */
  turns?: number[];
  requestsPerSec: number;
  /** Bytes read by the client per second (heads and bodies). */
  bytesPerSec: number;
  /** Bytes on the wire per response, head included. */
  bytesPerResponse: number;
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
  /** Servers, of which the best counts (fastest, or smallest); or a figure. */
  versus: { key: string }[] | number;
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
  settings: { duration: number; runs: number; pairs?: number; threads: number };
  scenarios: ScenarioResult[];
  targets: TargetResult[];
  /** One line per server that was not measured, with the reason. */
  skipped: string[];
  elapsedSeconds: number;
  /** A line on the run's conditions, from `--note`. */
  note?: string;
}

/** Ours against a peer or floor in one scenario. */
export interface Ratio {
  scenario: string;
  /** The other server's label ("(floor)" added for a floor). */
  versus: string;
  /** ours ÷ versus on the scenario's figure: above 1 means ours is faster. */
  value: number;
  /** The bound a target sets on this ratio, if one does. */
  target?: number;
}

/** The middle value (mean of the two middle values for an even count). */
export function median(values: number[]): number {
  if (values.length === 0) throw new RangeError("median of nothing");
  const sorted = values.toSorted((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The figure a scenario compares on: requests or bytes per second. */
export const figureOf = (scenario: ScenarioResult, r: ServerResult) =>
  scenario.metric === "bytes" ? r.bytesPerSec : r.requestsPerSec;

/** A server's runs: each one's figure, and its turn. */
type Runs = Pick<ServerResult, "samples" | "turns">;

/** A ratio from paired runs: the median of the turns' ratios, and each of them in turn order. */
export type PairedRatio = { value: number; ratios: number[] };

/**
 * Ours ÷ the others from runs paired by turn: in each turn that ours and all the
 * others ran, ours' figure ÷ the highest of theirs; then the median of those
 * ratios. A change in the machine's speed between turns falls on both sides of
 * each ratio, so it cancels. Null when no turn has them all.
 *
 * @example pairedRatio({ samples: [9, 12], turns: [0, 1] },
 *   [{ samples: [10, 10], turns: [0, 1] }]) // { value: 1.05, ratios: [0.9, 1.2] }
 */
export function pairedRatio(ours: Runs, others: Runs[]): PairedRatio | null {
  const byTurn = ({ samples, turns }: Runs) =>
    new Map(samples.map((figure, i) => [turns?.[i] ?? i, figure]));
  const theirs = others.map(byTurn);
  const ratios = [...byTurn(ours)].flatMap(([turn, figure]) => {
    const base = Math.max(...theirs.map((runs) => runs.get(turn) ?? NaN));
    return base > 0 ? [figure / base] : [];
  });
  return ratios.length ? { value: median(ratios), ratios } : null;
}

/** Ours ÷ `other` in one scenario, from paired runs; null when either is missing or zero. */
function ratioOf(scenario: ScenarioResult, other: ServerResult | undefined) {
  const ours = scenario.results.find((r) => r.role === "ours");
  return ours && other ? pairedRatio(ours, [other]) : null;
}

/** The fastest of `results` in a scenario. */
const fastestOf = (s: ScenarioResult, results: ServerResult[]) =>
  results.reduce((a, b) => figureOf(s, b) > figureOf(s, a) ? b : a, results[0]);

/** The targets on a rate between servers of `scenario` (the ones paired runs decide). */
export const rateTargetsIn = (targets: TargetDef[], scenario: string) =>
  targets.filter((t) =>
    (t.figure ?? "rate") === "rate" && t.scenario === scenario &&
    (t.versusScenario ?? scenario) === scenario && Array.isArray(t.versus)
  ) as (TargetDef & { versus: { key: string }[] })[];

/** Ours ÷ each floor and peer, with the bound of the target that holds ours to it there, if any. */
export function computeRatios(
  scenarios: ScenarioResult[],
  targets: TargetDef[] = [],
): Ratio[] {
  return scenarios.flatMap((scenario) =>
    scenario.results.flatMap((other): Ratio[] => {
      const paired = other.role === "ours" ? null : ratioOf(scenario, other);
      if (paired === null) return [];
      const target = rateTargetsIn(targets, scenario.id)
        .find((t) => t.versus.some((v) => v.key === other.key));
      return [{
        scenario: scenario.title,
        versus: other.role === "floor" ? `${other.label} (floor)` : other.label,
        value: paired.value,
        ...(target?.atLeast !== undefined ? { target: target.atLeast } : {}),
      }];
    })
  );
}

// Made once: `toLocaleString` builds a new formatter at every call.
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

/** A size: whole bytes below 1 MiB ("102,687 B"), MiB above ("100.0 MiB"). */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return "–";
  return bytes < 1024 ** 2
    ? `${formatCount(bytes)} B`
    : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/** A ratio with two significant digits below 10, whole above: "0.83×", "12×". */
export const formatRatio = (value: number) =>
  `${value >= 10 ? formatCount(value) : Number(value.toPrecision(2))}×`;

/** The runs' lowest and highest figure: thousands for requests ("52.1k–55.3k"), MiB/s for bytes. */
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

/** The paired runs' spread: "7 paired runs, 0.91–1.03"; ratios of 10 and above whole. */
export function formatPaired({ ratios }: PairedRatio): string {
  const format = (n: number) => n >= 10 ? formatCount(n) : n.toFixed(2);
  const [low, high] = [Math.min(...ratios), Math.max(...ratios)].map(format);
  const runs = `${ratios.length} paired run${ratios.length === 1 ? "" : "s"}`;
  return low === high ? runs : `${runs}, ${low}–${high}`;
}

/** Seconds left, for a person: "about 42 s left", "about 12 min 30 s left". */
export function formatTimeLeft(seconds: number): string {
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
  const rounded = Math.round(seconds / 10) * 10;
  const rest = rounded % 60 ? ` ${rounded % 60} s` : "";
  return `about ${Math.floor(rounded / 60)} min${rest} left`;
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
  return [header, align, ...rows]
    .map((row) => `| ${row.map(cell).join(" | ")} |`)
    .join("\n");
}

/** The results table: one row per server per scenario; a floor's or peer's row gives ours ÷ it. */
export function renderResultsTable(scenarios: ScenarioResult[]): string {
  const header = ["Scenario", "Server", "Req/s", "Runs, low–high", "MiB/s"]
    .concat("Bytes/response", "Peak RSS", "Errors", "Ratio");
  const rows = scenarios.flatMap((scenario) =>
    scenario.results.map((result) => {
      const ratio = result.role === "ours" ? null : ratioOf(scenario, result);
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
        formatSize(result.peakMemoryBytes),
        formatCount(result.errors),
        ratio === null
          ? "–"
          : `${formatRatio(ratio.value)} (${formatPaired(ratio)})`,
      ];
    })
  );
  return markdownTable(header, rows);
}

/** Whether `ratio` meets the target's bound. */
const meets = (target: TargetDef, ratio: number) =>
  (target.atLeast === undefined || ratio >= target.atLeast) &&
  (target.atMost === undefined || ratio <= target.atMost) &&
  (target.below === undefined || ratio < target.below);

/**
 * Checks each target against a run; one whose servers were not all measured gets met: null.
 * A rate against servers of the same scenario is the median of the paired runs' ratios
 * (pairedRatio); across scenarios, and for memory and bytes, the ratio of the medians.
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
      return { figure, text: `${text} ${result.label}`, result };
    };
    const ours = find(target.scenario, "ours");
    const { versus, versusScenario = target.scenario } = target;
    // The best of the named servers: the fastest, or the smallest.
    const better = (a: number, b: number) => rate ? a > b : a < b;
    const named = typeof versus === "number"
      ? []
      : versus.flatMap(({ key }) => find(versusScenario, key) ?? []);
    const base = typeof versus === "number"
      ? { figure: versus, text: `${versus / 1e6} MB` }
      : named.reduce((a, b) => better(b.figure, a.figure) ? b : a, named[0]);
    if (!ours || !base?.figure) {
      return { goal: target.goal, measured: "–", met: null };
    }
    const figures = `${ours.text} vs ${base.text}`;
    const paired = rate && versusScenario === target.scenario
      ? pairedRatio(ours.result, named.map((r) => r.result))
      : null;
    const ratio = paired?.value ?? ours.figure / base.figure;
    const met = paired?.ratios.filter((r) => meets(target, r)).length;
    const how = !paired
      ? (rate ? "ratio of medians, " : "")
      : `${formatPaired(paired)}, ${met} meeting it; medians `;
    const measured = `${formatRatio(ratio)} (${how}${figures})`;
    return { goal: target.goal, measured, met: meets(target, ratio) };
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
  const pairs = report.settings.pairs ?? runs;
  const [start, end] = machine.loadAverage.map((n) => n.toFixed(1));
  const versions = Object.entries(report.versions).map((v) => v.join(" "));
  const gib = (machine.memoryBytes / 1024 ** 3).toFixed(1);
  const skipped = report.skipped.map((line) => `- ${line}`).join("\n");
  const when = report.date.slice(0, 16).replace("T", " ");
  const seconds = Math.round(report.elapsedSeconds);
  const each = `${runs} run${runs === 1 ? "" : "s"} of ${duration} s`;
  return `# Benchmark results

Measured ${when} UTC in ${seconds} s by \`bench/run.ts\`. Written by the
runner: do not edit by hand.

- Machine: ${machine.cpus} × ${machine.cpuModel}, ${gib} GiB memory, Linux ${machine.kernel};
  the client (wrk or curl) runs on the same cores as the server it drives.
- Load average ${start} at the start, ${end} at the end (the run itself adds
  about one per core).
${report.note ? `- ${report.note}\n` : ""}- Versions: ${versions.join(", ")}.
- Each figure is the median of a server's runs (${each}, wrk with ${threads} threads;
  the 100 MiB file: single curl downloads), all servers on 127.0.0.1, the runs'
  lowest and highest beside it.
- The servers of a scenario take turns, one run each per turn, every other turn
  in reverse order. Ours and each server that a target compares it with alone run
  back to back in every turn, and they alone then take more turns,
  to ${pairs} runs each or the number a scenario sets (each ratio says how many;
  posts, each run on fresh data, keep ${runs}). The servers of a target against the
  best of several (the JavaScript peers) take the scenario's ${runs} turns only.
- Each ratio of ours to a server of its scenario is paired: the median, over the
  turns both ran, of ours ÷ it in that turn, so the machine's drift between turns
  cancels; beside it, how many turns and their lowest and highest ratio. Against
  the best of several servers each turn counts that turn's best. A target is met
  when the median meets it; Measured says in how many turns it did. Targets
  across two scenarios, and on memory or bytes, take the ratio of the medians.
- Reproduce: \`${report.command}\`

![Our servers' speed as a ratio to each peer and floor](results.svg)

## Results

${renderResultsTable(report.scenarios)}

Ratio: ours ÷ the row's server, on requests per second (MiB/s for the 100 MiB
file), the median of the paired runs' ratios (not the ratio of the two medians);
above 1× ours is faster. On the PostgreSQL rows ours is the board on
PostgreSQL and the yardstick the same board on its file store. A floor is the
runtime doing the least (bench/reference/), not a server to pick. Peak RSS is
the peak resident memory (VmHWM) of the process that serves (nginx: its one
worker). Bytes/response is what the client read per response, head included.
Errors are socket errors plus 4xx/5xx answers over all runs.

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
 * The README's summary of one run: a line on where and when, one row per
 * scenario with ours ÷ the fastest floor and peer, and who is fastest of ours
 * and the peers; then how many targets were met.
 */
export function renderReadmeSummary(report: BenchReport): string {
  const rows = report.scenarios.flatMap((scenario) => {
    const ours = scenario.results.find((r) => r.role === "ours");
    if (!ours) return [];
    const fastest = (role: "floor" | "peer") =>
      fastestOf(scenario, scenario.results.filter((r) => r.role === role));
    const ratioTo = (other: ServerResult | undefined) => {
      const ratio = ratioOf(scenario, other);
      return ratio ? `${formatRatio(ratio.value)} ${other!.label}` : "–";
    };
    const peer = fastest("peer");
    const winner = fastestOf(scenario, peer ? [ours, peer] : [ours]);
    const floor = ratioTo(fastest("floor"));
    const who = winner === ours ? "ours" : winner!.label;
    return [[scenario.title, ours.label, floor, ratioTo(peer), who]];
  });
  const measured = report.targets.filter((t) => t.met !== null);
  const met = measured.filter((t) => t.met).length;
  const unmeasured = report.targets.length - measured.length;
  const header = ["Scenario", "Ours", "Ours ÷ floor", "Ours ÷ fastest peer"];
  const table = markdownTable([...header, "Fastest"], rows, 5);
  const { cpus, cpuModel } = report.machine;
  const day = report.date.slice(0, 10);
  return `Ratios from one run of \`${report.command}\` on ${day}: ${cpus} × ${cpuModel},
with the client on the same cores as the servers, so read them as rough
proportions, not absolute speeds. Above 1× ours is faster.

${table}

Targets: ${met} of ${measured.length} met in this run${
    unmeasured ? ` (${unmeasured} not measured)` : ""
  }. Every figure, each peer, the machine and the versions:
[bench/RESULTS.md](bench/RESULTS.md).`;
}

/** Replaces what lies between two marker lines (markers kept); null when a marker is missing. */
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
