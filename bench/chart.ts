/**
 * The SVG bar chart of bench/results.svg: every ratio of ours to a peer or floor, on a log scale
 * around 1×, with each target drawn on its bar. Pure (tested in tests/bench_test.ts).
 *
 * @module
 */

import { formatRatio, type Ratio } from "./report.ts";

const WIDTH = 960;
const LABELS = 330;
const RIGHT_MARGIN = 90;
const ROW = 32;
const BAR = 18;
const TOP = 70;
const BOTTOM = 64;
const COLOURS = { met: "#2e7d32", missed: "#c62828", none: "#3b6fb6" };

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };

/** Escapes text for SVG content and attributes. */
function escapeXml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ENTITIES[c as keyof typeof ENTITIES]);
}

/** Grid lines for a log axis over [min, max]: 1-2-5 steps up to three decades, powers of ten beyond. */
export function chartTicks(min: number, max: number): number[] {
  const candidates = Array.from({ length: 12 }, (_, i) => i - 4)
    .flatMap((exponent) =>
      [1, 2, 5].map((step) => Number(`${step}e${exponent}`))
    );
  const low = candidates.findLast((t) => t <= min) ?? candidates[0];
  const high = candidates.find((t) => t >= max) ?? candidates.at(-1)!;
  const ticks = candidates.filter((t) => t >= low && t <= high);
  if (Math.log10(high / low) <= 3) return ticks;
  const decades = ticks.filter((t) => Number.isInteger(Math.log10(t)));
  // The widened range must still contain both ends.
  if (decades[0] > min) decades.unshift(decades[0] / 10);
  if (decades.at(-1)! < max) decades.push(decades.at(-1)! * 10);
  return decades;
}

type Attributes = Record<string, string | number>;

/** One SVG element; attributes in the order given, content as given (escape text first). */
function element(name: string, attributes: Attributes, content?: string) {
  const list = Object.entries(attributes).map(([k, v]) => ` ${k}="${v}"`);
  const open = `<${name}${list.join("")}`;
  return content === undefined ? `${open}/>` : `${open}>${content}</${name}>`;
}

/** A text element with its words escaped. */
const text = (attributes: Attributes, words: string) =>
  element("text", attributes, escapeXml(words));

/**
 * A bar per ratio (ours ÷ the other) on a log scale around 1×: right of it ours is faster. A ratio
 * with a target gets a tick at the target and a green (met) or red (not met) bar; the others are blue.
 */
export function renderSvgChart(ratios: Ratio[], title: string): string {
  const height = TOP + Math.max(ratios.length, 1) * ROW + BOTTOM;
  const plotBottom = height - BOTTOM;
  const values = ratios.flatMap((r) => [r.value, r.target ?? 1]).concat(1);
  // Room on the left for a slow bar's value, which is written beyond its end.
  const ticks = chartTicks(Math.min(...values) / 2, Math.max(...values) * 1.15);
  const [low, high] = [ticks[0], ticks.at(-1)!];
  const plotWidth = WIDTH - RIGHT_MARGIN - LABELS;
  const x = (value: number) => {
    const share = Math.log(value / low) / Math.log(high / low);
    return Number((LABELS + plotWidth * share).toFixed(1));
  };
  const centre = { x: WIDTH / 2, "text-anchor": "middle" };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" ` +
    `height="${height}" viewBox="0 0 ${WIDTH} ${height}" ` +
    `font-family="system-ui, sans-serif" font-size="13">`,
    element("title", {}, escapeXml(title)),
    element("rect", { width: WIDTH, height, fill: "#ffffff" }),
    text({ ...centre, y: 28, "font-size": 18, "font-weight": "bold" }, title),
    text(
      { ...centre, y: 50, fill: "#444" },
      "ours ÷ each peer and floor, log scale: right of 1× ours is faster, " +
        "left of it slower",
    ),
  ];
  for (const tick of ticks) {
    const line = { x1: x(tick), y1: TOP - 6, x2: x(tick), y2: plotBottom };
    const stroke: Attributes = tick === 1
      ? { stroke: "#111", "stroke-width": 1.5 }
      : { stroke: "#ddd" };
    const label = { x: x(tick), y: plotBottom + 18, "text-anchor": "middle" };
    parts.push(element("line", { ...line, ...stroke }));
    parts.push(text({ ...label, fill: "#444" }, formatRatio(tick)));
  }
  ratios.forEach(({ scenario, versus, value, target }, index) => {
    const y = TOP + index * ROW;
    const fill = target === undefined
      ? COLOURS.none
      : value >= target
      ? COLOURS.met
      : COLOURS.missed;
    const label = { x: LABELS - 10, "text-anchor": "end" };
    parts.push(
      text({ ...label, y: y + ROW / 2 - 2 }, scenario),
      text({ ...label, y: y + ROW / 2 + 12, "font-size": 12 }, `vs ${versus}`),
    );
    const [from, to] = [x(Math.min(1, value)), x(Math.max(1, value))];
    const width = Number(Math.max(to - from, 1).toFixed(1));
    const bar = { x: from, y: y + (ROW - BAR) / 2, width, height: BAR, fill };
    const summary = `${scenario}: ours vs ${versus}, ${formatRatio(value)}`;
    parts.push(element("rect", bar, element("title", {}, escapeXml(summary))));
    // The value sits beyond the bar's end: right of a fast bar, left of a slow one.
    const end = value >= 1
      ? { x: to + 6, "text-anchor": "start" }
      : { x: from - 6, "text-anchor": "end" };
    const bold = { y: y + ROW / 2 + 5, "font-weight": "bold" };
    parts.push(text({ ...end, ...bold }, formatRatio(value)));
    if (target !== undefined) {
      const line = { x1: x(target), y1: y + 5, x2: x(target), y2: y + ROW - 5 };
      const tip = element("title", {}, `target ${formatRatio(target)}`);
      parts.push(
        element("line", { ...line, stroke: "#111", "stroke-width": 3 }, tip),
      );
    }
  });
  // The legend: one line, each key in its colour.
  const legend = [
    [COLOURS.met, "■ target met"],
    [COLOURS.missed, "■ target not met"],
    [COLOURS.none, "■ no target"],
    ["#111", "┃ target ratio"],
  ].map(([fill, words]) =>
    element("tspan", { fill, dx: 18 }, escapeXml(words))
  );
  parts.push(
    element("text", { x: LABELS - 18, y: height - 18 }, legend.join("")),
  );
  return parts.join("\n") + "\n</svg>\n";
}
