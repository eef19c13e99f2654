/**
 * The SVG bar chart of bench/results.svg: every ratio of ours to a peer or floor, on a log
 * scale around 1×, with the targets drawn on their rows. Pure (tested in
 * tests/bench_test.ts).
 *
 * @module
 */

import {
  formatRatio,
  type Ratio,
  type ScenarioResult,
  type TargetDef,
} from "./report.ts";

/**
 * The target ratio to draw on each bar, by "scenario title|our label|their label": every
 * rate target that compares ours with servers of the same scenario.
 *
 * @example a target "tiny ≥ 0.9× the loop" gives { "Tiny, ...|server_tiny.ts|bare Deno.listen loop": 0.9 }
 */
export function chartTargets(
  targets: TargetDef[],
  scenarios: ScenarioResult[],
): Record<string, number> {
  const marks: Record<string, number> = {};
  for (const target of targets) {
    const { versus, ours } = target;
    if (
      target.figure !== "rate" || target.atLeast === undefined ||
      typeof versus === "number" || versus.scenario !== ours.scenario
    ) continue;
    const scenario = scenarios.find((s) => s.id === ours.scenario);
    const mine = scenario?.results.find((r) =>
      r.key === (ours.server ?? "ours")
    );
    for (const result of scenario?.results ?? []) {
      if (
        mine && versus.servers.includes(result.key) && result.role !== "ours"
      ) {
        marks[`${scenario!.title}|${mine.label}|${result.label}`] =
          target.atLeast;
      }
    }
  }
  return marks;
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
  rowHeight: 32,
  barHeight: 18,
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
 * @param targets optional target ratio per "scenario title|our label|their label"
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
      "ours ÷ each peer and floor, log scale: right of 1× ours is faster, left of it slower",
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
    const reference = ratio.role === "floor"
      ? `${ratio.reference} (floor)`
      : ratio.reference;
    const versus = oursPerScenario.get(ratio.scenario)!.size > 1
      ? `${ratio.ours} vs ${reference}`
      : `vs ${reference}`;
    const middle = y + CHART.rowHeight / 2;
    const target =
      targets[`${ratio.scenario}|${ratio.ours}|${ratio.reference}`];
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
        `x="${plotLeft - 10}" y="${middle - 2}" text-anchor="end" fill="#111"`,
        ratio.scenario,
      ),
      text(
        `x="${plotLeft - 10}" y="${
          middle + 12
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
        "No ratios: none of our servers was measured beside a peer or floor.",
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
