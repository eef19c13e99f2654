/**
 * The README's benchmark summary: one row per scenario with ours against the floor and the
 * fastest peer, and which server was fastest. `deno task bench --update-readme` writes it
 * from bench/results.json between two marker lines; the rest of the README is left alone.
 *
 * @module
 */

import {
  type BenchReport,
  fastestServer,
  formatRatio,
  markdownTable,
  metricValue,
  type ScenarioResult,
  type ServerResult,
} from "./report.ts";

/** Where the runner keeps the README's summary up to date. */
export const README_MARKERS = {
  start:
    "<!-- bench:summary:start (written by deno task bench --update-readme) -->",
  end: "<!-- bench:summary:end -->",
} as const;

/**
 * Names the fastest server of a scenario, and where `ours` (by default the first of ours)
 * ranks when it is not the fastest.
 *
 * @example fastestLine(scenario) === "lighttpd (ours 2nd of 9)"
 */
export function fastestLine(
  scenario: ScenarioResult,
  ours: ServerResult | undefined = scenario.results.find((r) =>
    r.role === "ours"
  ),
): string {
  const fastest = fastestServer(scenario);
  if (fastest === null) return "–";
  if (fastest === ours) return `ours (${fastest.label})`;
  const ranked = scenario.results
    .filter((r) => r.role !== "floor")
    .sort((a, b) => metricValue(scenario, b) - metricValue(scenario, a));
  const place = ours ? ranked.indexOf(ours) + 1 : 0;
  const suffix = (n: number) =>
    n % 100 >= 11 && n % 100 <= 13
      ? "th"
      : ["th", "st", "nd", "rd"][n % 10] ?? "th";
  return place > 0
    ? `${fastest.label} (ours ${place}${suffix(place)} of ${ranked.length})`
    : fastest.label;
}

/**
 * The README's summary of one run: a line on where and when, a table with one row per
 * scenario and server of ours, then the targets met.
 */
export function renderReadmeSummary(report: BenchReport): string {
  const { machine } = report;
  const rows = report.scenarios.flatMap((scenario) =>
    scenario.results.filter((r) => r.role === "ours").map((ours) => {
      const figure = metricValue(scenario, ours);
      const ratioTo = (role: "floor" | "peer") => {
        const others = scenario.results.filter((r) => r.role === role);
        if (others.length === 0) return "–";
        const best = others.reduce((a, b) =>
          metricValue(scenario, b) > metricValue(scenario, a) ? b : a
        );
        const base = metricValue(scenario, best);
        return base > 0 ? `${formatRatio(figure / base)} ${best.label}` : "–";
      };
      return [
        scenario.title,
        ours.label,
        ratioTo("floor"),
        ratioTo("peer"),
        fastestLine(scenario, ours),
      ];
    })
  );
  const measured = report.targets.filter((t) => t.met !== null);
  const met = measured.filter((t) => t.met).length;
  return [
    `Ratios from one run of \`${report.command}\` on ${
      report.date.slice(0, 10)
    }: ` +
    `${machine.cpus} × ${machine.cpuModel}, with the client on the same cores as the ` +
    "servers, so read them as rough proportions, not absolute speeds. Above 1× ours is faster.",
    "",
    markdownTable(
      [
        "Scenario",
        "Ours",
        "Ours ÷ floor",
        "Ours ÷ fastest peer",
        "Fastest in this row",
      ],
      rows,
      5,
    ),
    "",
    `Targets: ${met} of ${measured.length} met in this run` +
    (measured.length < report.targets.length
      ? ` (${report.targets.length - measured.length} not measured)`
      : "") +
    ". Every figure, each peer, the machine and the versions: " +
    "[bench/RESULTS.md](bench/RESULTS.md).",
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
