// The benchmark runner (bench/): its parsers on real wrk and curl output, the
// figures and tables it derives, the scenario and target tables, and one real
// short run of the tiny server beside its floor. The full benchmark never runs
// in tests (`deno task bench` does that).
import assert from "node:assert/strict";
import { join } from "node:path";
import { chartTicks, renderSvgChart } from "../bench/chart.ts";
import * as fixtures from "../bench/fixtures.ts";
import * as measure from "../bench/measure.ts";
import {
  curlArgs,
  parseCurlWriteOut,
  parseVmHwm,
  parseWrkOutput,
  renderPostScript,
  wrkArgs,
} from "../bench/parse.ts";
import { WRK_REPORT } from "../bench/parse_bench.ts";
import * as report from "../bench/report.ts";
import type { ScenarioResult, ServerResult } from "../bench/report.ts";
import { parseBenchArgs } from "../bench/run.ts";
import {
  pairedServers,
  SCENARIOS,
  selectScenarios,
  TARGETS,
} from "../bench/scenarios.ts";
import * as servers from "../bench/servers.ts";
import { startScript, toolTestOptions } from "./_process.ts";

// Two more real wrk 4.1 reports: slow with errors (--latency), and plain, as the runner runs it.
const WRK_WITH_ERRORS = `Running 2s test @ http://127.0.0.1:40123/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02s   305.12ms   1.61s    60.00%
    Req/Sec     0.50      1.12     4.00     90.00%
  Latency Distribution
     50%    1.02s 
     75%    1.30s 
     90%    1.50s 
     99%    1.61s 
  38 requests in 2.01s, 445.20MB read
  Socket errors: connect 0, read 3, write 1, timeout 7
  Non-2xx or 3xx responses: 5
Requests/sec:     18.91
Transfer/sec:    221.49MB
`;

const WRK_PLAIN = `Running 1m test @ http://127.0.0.1:8080/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms    1.00ms  10.00ms   80.00%
    Req/Sec     1.60k   100.00     1.80k    70.00%
  96000 requests in 1.00m, 512.00KB read
Requests/sec:   1600.00
Transfer/sec:      8.53KB
`;

Deno.test("parseWrkOutput reads requests, rates and errors from wrk's report", () => {
  const cases = [
    [WRK_REPORT, 280071, 56013.11, 720.19 * 1024 ** 2, 11],
    [WRK_WITH_ERRORS, 38, 18.91, 221.49 * 1024 ** 2, 16],
    [WRK_PLAIN, 96000, 1600, 8.53 * 1024, 0],
  ] as const;
  for (const [output, requests, rate, bytes, errors] of cases) {
    const parsed = parseWrkOutput(output);
    assert.deepEqual(
      [parsed.requests, parsed.requestsPerSec, parsed.errors],
      [requests, rate, errors],
    );
    assert.ok(Math.abs(parsed.bytesPerSec - bytes) < 1e-6);
  }
});

Deno.test("parseWrkOutput refuses", () => {
  // A cut report.
  const cut = [
    "",
    "unable to connect to 127.0.0.1:1 Connection refused\n",
    WRK_REPORT.replace(/^Requests\/sec:.*$/m, ""),
    WRK_REPORT.replace(/^Transfer\/sec:.*$/m, ""),
    WRK_REPORT.replace(/^.*requests in.*$/m, ""),
  ];
  for (const output of cut) {
    assert.throws(() => parseWrkOutput(output), /no complete report/);
  }
  // An unknown unit.
  const badUnit = WRK_REPORT.replace("720.19MB", "720.19PB");
  assert.throws(() => parseWrkOutput(badUnit), /not a wrk size: "720.19PB"/);
});

Deno.test("the tools' arguments for a POST", () => {
  const url = "http://127.0.0.1:9/";
  // wrk posts the form through a script.
  const wrk = wrkArgs(url, 2, 60, ["Connection: close"], "/x/post.lua");
  assert.deepEqual(wrk.slice(-5), [
    ...["-H", "Connection: close", "-s", "/x/post.lua", url],
  ]);
  const script = renderPostScript("message=Hello+%22you%22");
  assert.match(script, /^wrk\.method = "POST"$/m);
  assert.match(script, /^wrk\.body = "message=Hello\+%22you%22"$/m);
  const curl = curlArgs(url, 2, ["Accept-Encoding: br"], "message=hi");
  // curl posts the form raw.
  assert.deepEqual(curl.slice(-5), [
    ...["--header", "Accept-Encoding: br", "--data-raw", "message=hi", url],
  ]);
  // curl follows no redirect.
  assert.ok(!curl.includes("--location"), "redirects are answers");
});

Deno.test("parseCurlWriteOut", () => {
  // Reads status, bytes, time, rate and encoding.
  const read = parseCurlWriteOut("200 104857600 0.101 1038194059 br\n");
  const all = { status: 200, bytes: 104857600, seconds: 0.101 };
  assert.deepEqual(read, { ...all, bytesPerSec: 1038194059, encoding: "br" });
  // Reads no encoding as an empty one.
  assert.equal(parseCurlWriteOut("303 0 0.002 0 \n").encoding, "");
  // Refuses output with no report.
  for (const bad of ["", "000", "curl: (7) Failed to connect"]) {
    assert.throws(() => parseCurlWriteOut(bad), /curl printed no report/);
  }
});

Deno.test("parseVmHwm reads the peak RSS from /proc's status, or null", () => {
  const status = "Name:\tdeno\nVmPeak:\t 999 kB\nVmHWM:\t   51234 kB\n";
  assert.equal(parseVmHwm(status), 51234 * 1024);
  assert.equal(parseVmHwm("Name:\tzombie\n"), null);
});

Deno.test("median, and pairedRatio: the median of each turn's ours ÷ theirs", () => {
  assert.equal(report.median([3, 1, 2]), 2);
  assert.equal(report.median([4, 1, 3, 2]), 2.5);
  assert.throws(() => report.median([]), RangeError);
  const runs = (samples: number[], turns?: number[]) => ({ samples, turns });
  const paired = (ours: number[], ...others: number[][]) =>
    report.pairedRatio(runs(ours), others.map((figures) => runs(figures)));
  // By turn, not by place; a turn one side missed is left out.
  const byTurn = runs([19, 9.5, 28.5, 50], [1, 0, 2, 9]);
  const floor = report.pairedRatio(byTurn, [runs([10, 20, 30, 40])]);
  assert.deepEqual(floor, { value: 0.95, ratios: [0.95, 0.95, 0.95] });
  // The machine speeds up over the turns and the floor's second run is hit: the
  // ratio of the medians follows the blip, the median of the turns' ratios not.
  assert.equal(paired([95, 190, 285], [100, 120, 300])!.value, 0.95);
  const medians = [[95, 190, 285], [100, 120, 300]].map(report.median);
  assert.equal(medians[0] / medians[1], 190 / 120);
  // Against several, each turn's fastest.
  const several = paired([10, 10], [5, 20], [8, 12]);
  assert.deepEqual(several, { value: 0.875, ratios: [1.25, 0.5] });
  // None: no turn in common, a zero figure, no one to compare with.
  assert.equal(report.pairedRatio(runs([1], [0]), [runs([1], [1])]), null);
  assert.deepEqual([paired([1], [0]), paired([1])], [null, null]);
});

Deno.test("the number formats of the tables", () => {
  const ratio = report.formatRatio;
  const { formatSize: size, formatTimeLeft: left } = report;
  const spread = report.formatSpread;
  const paired = (...ratios: number[]) =>
    report.formatPaired({ value: 1, ratios });
  const cases = [
    [ratio(0.8312), "0.83×"],
    [ratio(1), "1×"],
    [ratio(12.4), "12×"],
    [ratio(19675.2), "19,675×"],
    [report.formatRate(1863.7 * 1024 ** 2), "1,863.7"],
    [size(5123.4), "5,123 B"],
    [size(52_428_800), "50.0 MiB"],
    [size(null), "–"],
    [left(0.2), "about 1 s left"],
    [left(42), "about 42 s left"],
    [left(600), "about 10 min left"],
    [left(754), "about 12 min 30 s left"],
    [spread([52_100, 55_300, 54_000], "requests"), "52.1k–55.3k"],
    [spread([900, 900], "requests"), "900"],
    [spread([], "requests"), "–"],
    [spread([1024 ** 3, 2 * 1024 ** 3], "bytes"), "1,024.0–2,048.0"],
    [paired(1.031, 0.9), "2 paired runs, 0.90–1.03"],
    [paired(12.4, 15), "2 paired runs, 12–15"],
    [paired(0.9), "1 paired run"],
  ];
  for (const [actual, expected] of cases) assert.equal(actual, expected);
});

/** One server's result, with a 10% spread over three runs. */
function result(
  key: string,
  role: ServerResult["role"],
  requestsPerSec: number,
  extra: Partial<ServerResult> = {},
): ServerResult {
  return {
    key,
    label: key === "ours" ? "server_files.ts" : key,
    role,
    samples: [0.9, 1, 1.1].map((f) => f * requestsPerSec),
    requestsPerSec,
    bytesPerSec: requestsPerSec * 1000,
    bytesPerResponse: 1000,
    peakMemoryBytes: 40 * 1024 ** 2,
    errors: 0,
    ...extra,
  };
}

function scenario(
  id: string,
  title: string,
  results: ServerResult[],
  metric: "requests" | "bytes" = "requests",
): ScenarioResult {
  return { id, title, load: "32 connections", metric, results };
}

const SMALL = scenario("files-small", "Files, 500 B page", [
  result("ours", "ours", 45_000),
  result("deno-serve-floor", "floor", 47_000, { label: "Deno.serve floor" }),
  result("nginx", "peer", 50_000),
  result("hono", "peer", 900),
]);

// Fewer requests but more bytes: the ratio must follow the bytes.
const BIG = scenario("files-100mb", "Files, 100 MiB file", [
  result("ours", "ours", 10, { bytesPerSec: 900e6, peakMemoryBytes: 50e6 }),
  result("nginx", "peer", 20, { bytesPerSec: 1000e6 }),
], "bytes");
for (const r of BIG.results) {
  r.samples = [0.9, 1, 1.1].map((f) => f * r.bytesPerSec);
}

const PG_PAGE = scenario("board-pg-page", "Board newest page, PostgreSQL", [
  result("ours", "ours", 6180, { label: "PostgreSQL store" }),
  result("board-file", "peer", 7690, { label: "file store" }),
]);

const named = (label: string, rss: number) => ({ label, peakMemoryBytes: rss });
const TINY = scenario("tiny", "Tiny", [
  result("ours", "ours", 9500, named("server_tiny.ts", 90e6)),
  result("deno-listen-loop", "floor", 10_000, named("bare loop", 60e6)),
]);

Deno.test("computeRatios: ours ÷ every floor and peer on the scenario's figure, with the targets' bounds", () => {
  const ratios = report.computeRatios([SMALL, BIG, PG_PAGE], TARGETS);
  const rows = ratios.map((r) =>
    [r.versus, Number(r.value.toFixed(3)), r.target ?? "–"].join(" ")
  );
  assert.deepEqual(rows, [
    "Deno.serve floor (floor) 0.957 0.95",
    "nginx 0.9 –",
    "hono 50 2.5",
    "nginx 0.9 0.8",
    "file store 0.804 0.8",
  ]);
});

Deno.test("renderResultsTable: a row per server, ours ÷ it on each floor's and peer's row", () => {
  const piped = structuredClone(SMALL);
  piped.results[3].label = "a|b";
  piped.results[2].note = "gzip";
  const lines = report.renderResultsTable([piped, PG_PAGE]).split("\n");
  assert.equal(lines.length, 2 + 4 + 2);
  assert.equal(
    lines[0],
    "| Scenario | Server | Req/s | Runs, low–high | MiB/s | Bytes/response | Peak RSS | Errors | Ratio |",
  );
  const row = (text: string) => lines.find((line) => line.includes(text))!;
  const ours = /\| 45,000 \| 40\.5k–49\.5k \| .* \| – \|$/;
  assert.match(row("**server_files.ts**"), ours);
  const floor = /\| 0\.96× \(3 paired runs\) \|$/;
  assert.match(row("| Deno.serve floor (floor) |"), floor);
  assert.match(row("| nginx: gzip |"), /\| 0\.9× \(3 paired runs\) \|$/);
  assert.match(row("a\\|b"), /\| 50× \(3 paired runs\) \|$/);
  // Regression: the file store's row once read "0.8× PostgreSQL", backwards.
  assert.match(row("| file store |"), /\| 0\.8× \(3 paired runs\) \|$/);
  // Every row has the same number of cells, the escaped pipe included.
  const cells = (line: string) => line.split(/(?<!\\)\|/).length;
  for (const line of lines) assert.equal(cells(line), cells(lines[0]), line);
});

Deno.test("checkTargets", () => {
  const checked = report.checkTargets(TARGETS, [SMALL, BIG, PG_PAGE, TINY]);
  // Meets each target or gives null when not measured.
  assert.deepEqual(checked.map((t) => t.met), [
    ...[true, true, null, null], // files-small against floor and JS peers; no CSS run
    ...[true, true, true, true], // 100 MiB rate and RSS; tiny rate and RSS (1.5× ≤ 1.5×)
    ...[null, null, null, null, true], // no board runs; PostgreSQL page 0.804×
  ]);
  // Names the figures compared, the best of several peers.
  assert.deepEqual(
    checked.filter((_, i) => [1, 2, 5, 12].includes(i)).map((t) => t.measured),
    [
      // The fastest JavaScript peer here is Hono (nginx is not one).
      "50× (3 paired runs, 3 meeting it; medians 45,000/s server_files.ts vs 900/s hono)",
      "–",
      "0.5× (47.7 MiB server_files.ts vs 100 MB)",
      "0.8× (3 paired runs, 3 meeting it; medians 6,180/s PostgreSQL store vs 7,690/s file store)",
    ],
  );
  // A rate from paired runs; one across two scenarios from the medians.
  const close = structuredClone(TINY);
  close.results[0].samples = [9500, 8500, 10_000];
  close.results[1].samples = [10_000, 10_000, 10_000];
  const page = (size: string, rate: number) =>
    scenario(`board-page-${size}`, size, [result("ours", "ours", rate)]);
  const run = [close, page("1k", 1000), page("100k", 800)];
  const rates = report.checkTargets(TARGETS, run)
    .filter((r) => r.met !== null && !/RSS/.test(r.goal));
  assert.deepEqual(rates.map((r) => r.measured), [
    "0.95× (3 paired runs, 0.85–1.00, 2 meeting it; medians 9,500/s server_tiny.ts vs 10,000/s bare loop)",
    "0.8× (ratio of medians, 800/s server_files.ts vs 1,000/s server_files.ts)",
  ]);
  // At most: a hair over 1.5× fails.
  const tight = structuredClone(TINY);
  tight.results[0].peakMemoryBytes = 90.1e6;
  const memory = report.checkTargets(TARGETS, [tight])
    .find((r) => /Tiny: peak/.test(r.goal))!;
  assert.equal(memory.met, false);
  // Below is strict: an equal figure fails.
  const gzip = [SMALL.results[0], { ...SMALL.results[2], key: "nginx-gzip" }];
  const css = { ...SMALL, id: "files-css-gzip", results: gzip };
  const fewer = report.checkTargets(TARGETS, [css])
    .find((t) => /fewer/.test(t.goal))!;
  assert.deepEqual([fewer.measured, fewer.met], [
    "1× (1,000 B server_files.ts vs 1,000 B nginx)",
    false,
  ]);
  // renderTargetsTable gives each target's result.
  const table = report.renderTargetsTable(checked);
  assert.match(table, /^\| Target \| Measured \| Result \|$/m);
  assert.match(table, /✅ met[\s\S]*not measured/);
});

const REPORT: report.BenchReport = {
  date: "2026-11-22T02:10:00.000Z",
  machine: {
    cpus: 2,
    cpuModel: "Test CPU",
    memoryBytes: 24 * 1024 ** 3,
    kernel: "6.1.0",
    loadAverage: [3.5, 4.25],
  },
  versions: { Deno: "2.9.6", nginx: "1.22.1", wrk: "4.1.0" },
  command: "deno task bench",
  settings: { duration: 5, runs: 3, pairs: 7, threads: 2 },
  scenarios: [SMALL, BIG, PG_PAGE, TINY],
  targets: report.checkTargets(TARGETS, [SMALL, BIG, PG_PAGE]),
  skipped: ["Tiny: server_tiny.ts skipped, python3 is not installed."],
  elapsedSeconds: 321,
  note: "Other helpers' tests ran meanwhile.",
};

Deno.test("the README summary", () => {
  const summary = report.renderReadmeSummary(REPORT);
  // Opens with the run's date and machine.
  assert.match(
    summary,
    /^Ratios from one run of `deno task bench` on 2026-11-22: 2 × Test CPU/,
  );
  // Rows: ours ÷ the fastest floor and peer, who won.
  const rows = summary.split("\n").filter((line) => line.startsWith("| "));
  assert.deepEqual(rows.slice(2), [
    "| Files, 500 B page | server_files.ts | 0.96× Deno.serve floor | 0.9× nginx | nginx |",
    "| Files, 100 MiB file | server_files.ts | – | 0.9× nginx | nginx |",
    "| Board newest page, PostgreSQL | PostgreSQL store | – | 0.8× file store | file store |",
    "| Tiny | server_tiny.ts | 0.95× bare loop | – | ours |",
  ]);
  // Counts the targets met and not measured.
  const count = /Targets: 5 of 5 met in this run \(8 not measured\)\./;
  assert.match(summary, count);
});

Deno.test("replaceBetween", () => {
  const { start, end } = report.README_MARKERS;
  // Swaps what lies between the README's markers.
  const readme = `# T\n\n${start}\nold table\n${end}\n\n## License\n`;
  assert.equal(
    report.replaceBetween(readme, start, end, "new"),
    `# T\n\n${start}\nnew\n${end}\n\n## License\n`,
  );
  // Gives null without the markers in order.
  assert.equal(report.replaceBetween("no markers", start, end, "x"), null);
  const reversed = `${end}\n${start}\n`;
  assert.equal(report.replaceBetween(reversed, start, end, "x"), null);
});

Deno.test("renderResultsMarkdown names the machine, load, versions, command, chart, targets and skipped servers", () => {
  const markdown = report.renderResultsMarkdown(REPORT);
  const expected = [
    "Measured 2026-11-22 02:10 UTC in 321 s",
    "2 × Test CPU, 24.0 GiB memory, Linux 6.1.0",
    "- Load average 3.5 at the start, 4.3 at the end (the run itself adds",
    "- Other helpers' tests ran meanwhile.",
    "Deno 2.9.6, nginx 1.22.1, wrk 4.1.0",
    "median of a server's runs (3 runs of 5 s, wrk with 2 threads",
    "to 7 runs each",
    "Reproduce: `deno task bench`",
    "![Our servers' speed as a ratio to each peer and floor](results.svg)",
    `## Results\n\n${report.renderResultsTable(REPORT.scenarios)}\n`,
    `## Targets\n\n${report.renderTargetsTable(REPORT.targets)}\n`,
    "## Not measured\n\n- Tiny: server_tiny.ts skipped",
  ];
  for (const text of expected) {
    assert.ok(markdown.includes(text), `missing: ${text}`);
  }
  const calm = report.renderResultsMarkdown({ ...REPORT, skipped: [] });
  assert.ok(!calm.includes("## Not measured"));
});

Deno.test("chartTicks", () => {
  // 1-2-5 steps over a few decades.
  assert.deepEqual(chartTicks(0.5, 3), [0.5, 1, 2, 5]);
  assert.deepEqual(chartTicks(0.06, 1.2), [0.05, 0.1, 0.2, 0.5, 1, 2]);
  // Powers of ten beyond.
  assert.deepEqual(chartTicks(0.1, 5000), [0.1, 1, 10, 100, 1000, 10000]);
  const wide = [0.01, 0.1, 1, 10, 100, 1e3, 1e4, 1e5];
  assert.deepEqual(chartTicks(0.03, 30000), wide);
});

Deno.test("renderSvgChart", () => {
  const ratios = report.computeRatios([SMALL, PG_PAGE], TARGETS);
  ratios[1].versus = "nginx <&> co";
  const svg = renderSvgChart(ratios, "Title & more");
  // Draws one svg element 960 wide.
  const open =
    /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" [^>]*viewBox="0 0 960 \d+"/;
  assert.match(svg, open);
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  // Escapes the title and every label.
  assert.ok(svg.includes("<title>Title &amp; more</title>"));
  assert.ok(svg.includes(">vs nginx &lt;&amp;&gt; co</text>"));
  assert.ok(!svg.includes("<&>"));
  const one = Number(
    /<line x1="([\d.]+)"[^>]*stroke-width="1.5"\/>/.exec(svg)![1],
  );
  const rects =
    /<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="\d+" fill="(#\w+)">/g;
  const bars = [...svg.matchAll(rects)].map(([, x, width, fill]) => {
    return { x: Number(x), end: Number(x) + Number(width), fill };
  });
  // Draws faster bars right of 1×, slower left.
  const [floor, nginx, hono] = bars;
  assert.ok(Math.abs(floor.end - one) < 0.2, "a slower bar ends at 1×");
  assert.ok(Math.abs(hono.x - one) < 0.2, "a faster bar starts at 1×");
  assert.ok(nginx.x < one && hono.end > nginx.end);
  // Colours each bar by its target.
  assert.deepEqual(bars.map((b) => b.fill), [
    "#2e7d32", // 0.96× against the floor's 0.95× target: met
    "#3b6fb6", // nginx: no target
    "#2e7d32", // 50× against the 2.5× target for JavaScript peers: met
    "#2e7d32", // PostgreSQL: 0.804× against 0.8×
  ]);
  // Draws a tick per target.
  assert.equal(svg.match(/<title>target /g)?.length, 3, "a tick per target");
});

Deno.test("the scenario and target tables", () => {
  const byId = new Map(SCENARIOS.map((s) => [s.id, s]));
  // Each target names servers its scenarios run.
  for (const target of TARGETS) {
    const keys = (id: string) => byId.get(id)!.servers.map((s) => s.key);
    assert.ok(keys(target.scenario).includes("ours"), target.goal);
    for (const { key } of Array.isArray(target.versus) ? target.versus : []) {
      const versus = keys(target.versusScenario ?? target.scenario);
      assert.ok(versus.includes(key), `${target.goal}: ${key}`);
    }
  }
  // Each target has exactly one bound.
  for (const target of TARGETS) {
    const bounds = [target.atLeast, target.atMost, target.below];
    const count = bounds.filter((b) => b !== undefined).length;
    assert.equal(count, 1, target.goal);
  }
  // Each scenario has exactly one of ours.
  for (const scenario of SCENARIOS) {
    const ours = scenario.servers.filter((s) => s.role === "ours");
    assert.deepEqual(ours.map((s) => s.key), ["ours"], scenario.id);
  }
  const settings = { duration: 5, runs: 3, pairs: 7, warmup: 1 };
  // estimateSeconds counts each scenario's starts.
  const estimate = (id: string, runs = 3, run = settings) =>
    measure.estimateSeconds(byId.get(id)!, run, runs);
  assert.equal(estimate("tiny", 7), 3 + 1 + 7 * 5.5);
  assert.equal(estimate("board-post-1k"), 3 * 8.5, "a fresh start per run");
  assert.equal(estimate("files-100mb", 4), 3 + 4 * 1.5, "4 downloads");
  assert.equal(estimate("board-page-1k"), 3 + 5 + 3 * 5.5, "5 s warm-up");
  const cold = estimate("board-pg-page", 3, { ...settings, warmup: 0 });
  assert.equal(cold, 3 + 3 * 5.5, "a run without warm-up has none");
  // pairedServers: those a target holds ours to one to one.
  const paired = (id: string) =>
    pairedServers(byId.get(id)!, TARGETS).map((s) => s.key).join(" ");
  const ids = "tiny files-small files-css-gzip files-100kb files-100mb " +
    "board-post-1k board-post-100k board-pg-page";
  assert.deepEqual(ids.split(" ").map(paired), [
    ...["deno-listen-loop", "deno-serve-floor", "nginx-gzip", ""],
    ...["nginx deno-serve-big-floor", "textbook-board", "", "board-file"],
  ]);
  // plannedRuns: ours and its paired get --pairs (or the scenario's), the rest --runs.
  const { OUR_FILES: ours, FILES_FLOOR: floor, NGINX: nginx } = servers;
  const planned = (id: string, server: servers.ServerDef) =>
    measure.plannedRuns(byId.get(id)!, server, settings);
  assert.deepEqual([
    ...[planned("files-small", ours), planned("files-small", floor)],
    ...[planned("files-small", nginx), planned("files-100kb", ours)],
    ...[planned("files-100mb", nginx), planned("files-100mb", servers.CADDY)],
    planned("board-post-1k", servers.OUR_BOARD),
  ], [15, 15, 3, 3, 16, 4, 3]);
  // --quick (--pairs 1) adds no paired runs, whatever a scenario sets.
  const quick = { ...settings, runs: 1, pairs: 1 };
  const small = byId.get("files-small")!;
  assert.equal(measure.plannedRuns(small, ours, quick), 1);
  // The boards' pages warm up 5 s, the rest the run's.
  const warm = SCENARIOS.filter((s) => s.warmup !== undefined);
  const pages = ["board-page-1k", "board-page-100k", "board-pg-page"];
  assert.deepEqual(warm.filter((s) => !s.postBody).map((s) => s.id), pages);
  assert.ok(warm.every((s) => s.warmup === 5));
  // scheduleTurns: ours beside its paired in every turn.
  const { NGINX, FILES_FLOOR, OUR_FILES, CADDY } = servers;
  const item = (server: servers.ServerDef, planned: number) => ({
    server,
    planned,
  });
  const items = [item(NGINX, 2), item(FILES_FLOOR, 4), item(OUR_FILES, 4)];
  const turns = measure.scheduleTurns([...items, item(CADDY, 2)], [
    FILES_FLOOR,
  ]);
  assert.deepEqual(turns.map((turn) => turn.map((m) => m.server.key)), [
    ["ours", "deno-serve-floor", "nginx", "caddy"],
    ["caddy", "nginx", "deno-serve-floor", "ours"],
    ["ours", "deno-serve-floor"],
    ["deno-serve-floor", "ours"],
  ]);
});

Deno.test("--only (selectScenarios)", () => {
  const ids = (only: string[]) =>
    selectScenarios(SCENARIOS, only).map((s) => s.id).join(" ");
  // Picks scenarios by id or prefix.
  assert.equal(ids([]), SCENARIOS.map((s) => s.id).join(" "));
  const files = "files-small files-css-gzip files-100kb files-100mb";
  assert.equal(ids(["files"]), files);
  const some = "tiny board-post-1k board-post-100k";
  assert.equal(ids(["board-post", "tiny"]), some);
  // Names the valid ones for an unknown one.
  const why = /unknown scenario "fil"; choose from: tiny, files-small/;
  assert.throws(() => ids(["fil"]), why);
});

Deno.test("parseBenchArgs", () => {
  const parse = (args: string[]) => {
    const options = parseBenchArgs(args);
    assert.ok(options !== "help");
    return options;
  };
  // Defaults to a full run written to bench/.
  const full = parse([]);
  assert.deepEqual([full.duration, full.runs, full.pairs, full.only], [
    ...[5, 3, 7],
    [],
  ]);
  assert.ok(!full.updateReadme && full.outDir.endsWith("bench/"));
  // --quick runs once for 2 s, into bench/out.
  const quick = parse(["--quick"]);
  assert.deepEqual([quick.duration, quick.runs, quick.pairs], [2, 1, 1]);
  assert.match(quick.outDir, /bench\/out$/);
  // --only runs part, into bench/out unless --out.
  const only = parse(["--only", "tiny,files", "--runs", "5", "--out", "/x"]);
  const part = [only.only, only.runs, only.outDir];
  assert.deepEqual(part, [["tiny", "files"], 5, "/x"]);
  assert.match(parse(["--only", "tiny"]).outDir, /bench\/out$/);
  // Reads --note, --update-readme and --help.
  assert.equal(parse(["--note", "Other work ran."]).note, "Other work ran.");
  const readme = parse(["--update-readme"]);
  assert.ok(readme.updateReadme && readme.outDir.endsWith("bench/"));
  assert.equal(parseBenchArgs(["--help"]), "help");
  // Refuses what it cannot read.
  const refuses = (args: string[], error: RegExp) =>
    assert.throws(() => parseBenchArgs(args), error);
  refuses(["--runs", "zero"], /--runs needs a whole number >= 1/);
  refuses(["--duration", "0"], /--duration needs/);
  refuses(["--bogus"], /Unknown option '--bogus'/);
});

Deno.test("the peers' configs", () => {
  const site = { port: 8123, siteDir: "/b/site", workDir: "/b/w" };
  const nginx = servers.renderNginxConfig(site, false);
  // nginx is confined to loopback and the work folder.
  const lines = ["worker_processes 1;", "pid /b/w/nginx.pid;", "sendfile on;"]
    .concat("access_log off;", "client_body_temp_path /b/w/client_body;")
    .concat("server { listen 127.0.0.1:8123; root /b/site; }");
  for (const line of lines) assert.ok(nginx.includes(line), line);
  assert.ok(!nginx.includes("/var/"));
  // nginx compresses only when asked.
  assert.ok(!nginx.includes("gzip"));
  const gzip = servers.renderNginxConfig(site, true);
  assert.match(gzip, /gzip on;\n\s+gzip_comp_level 1;/);
  // lighttpd binds to loopback.
  const lighttpd = servers.renderLighttpdConfig(site);
  const bind = /server\.bind = "127\.0\.0\.1"\nserver\.port = 8123\n/;
  assert.match(lighttpd, bind);
});

Deno.test("fixtures for the files scenarios", async () => {
  // Each exactly the size asked (a page too small refused), the same every
  // run, and the stylesheet compresses like CSS.
  assert.equal(fixtures.renderSmallPage(500).length, 500);
  assert.throws(() => fixtures.renderSmallPage(10), RangeError);
  const css = fixtures.renderStylesheet(15 * 1024);
  assert.equal(css.length, 15 * 1024);
  assert.equal(css, fixtures.renderStylesheet(15 * 1024));
  const gzipped = await new Response(
    new Blob([css]).stream().pipeThrough(new CompressionStream("gzip")),
  ).arrayBuffer();
  const ratio = css.length / gzipped.byteLength;
  assert.ok(ratio > 2 && ratio < 8, `compresses ${ratio.toFixed(1)}:1`);
});

Deno.test("fixtures: the file store's seed and the PostgreSQL seed hold the same messages", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const seed = join(dir, "seed.jsonl");
    await fixtures.writeBoardData(seed, 2500);
    const lines = (await Deno.readTextFile(seed)).split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    const messages = lines.map((line) => JSON.parse(line));
    const ids = Array.from({ length: 2500 }, (_, i) => i + 1);
    assert.deepEqual(messages.map((m) => m.id), ids);
    const first = "Message 1: from the tiny message board where every message";
    assert.equal(messages[0].text, `${first} is kept safe on disk`);
    assert.equal(messages[0].postedAt, "2026-11-20T05:05:51.000Z");
    assert.equal(messages.at(-1).postedAt, "2026-11-21T22:44:51.000Z");
    const sql = fixtures.renderPgSeed(2500).split("\n");
    assert.deepEqual(sql.slice(0, 2), [
      "truncate board_messages, board_clears, board_archive restart identity;",
      "copy board_messages (id, text, posted_at) from stdin;",
    ]);
    const rows = messages.map((m) => `${m.id}\t${m.text}\t${m.postedAt}`);
    assert.deepEqual(sql.slice(2, 2502), rows);
    assert.deepEqual(sql.slice(2502), [
      "\\.",
      "select setval(pg_get_serial_sequence('board_messages', 'id'), 2500, true);",
      "",
    ]);
    assert.match(fixtures.renderPgSeed(0), /, 1, false\);/, "empty: next id 1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "a real run of the tiny server beside its floor, two paired turns of a second, gives figures, a paired ratio and a peak RSS for each",
  // Skipped loudly without wrk and curl (CI installs them).
  ...await toolTestOptions("the real bench run", ["wrk", "curl"]),
  async fn() {
    const tiny = SCENARIOS.find((s) => s.id === "tiny")!;
    const pair = [servers.OUR_TINY, servers.TINY_DENO_LOOP];
    const settings = { duration: 1, runs: 1, pairs: 2, warmup: 0 };
    const run = await measure.runBenchmark(settings, [
      { ...tiny, servers: pair },
    ], "t");
    assert.deepEqual(run.skipped, []);
    const { results } = run.scenarios[0];
    assert.deepEqual(results.map((r) => r.key), ["ours", "deno-listen-loop"]);
    for (const r of results) {
      const { label, requestsPerSec, peakMemoryBytes, bytesPerResponse } = r;
      assert.ok(requestsPerSec > 100, `${label}: ${requestsPerSec} req/s`);
      assert.ok(peakMemoryBytes! > 10e6, `${label}: ${peakMemoryBytes} B`);
      assert.ok(bytesPerResponse! > 100, `${label}: ${bytesPerResponse} B`);
      assert.deepEqual([r.samples.length, r.turns, r.errors], [2, [0, 1], 0]);
    }
    const target = run.targets.find((t) => /Tiny: at least/.test(t.goal))!;
    assert.notEqual(target.met, null);
    assert.match(target.measured, /\(2 paired runs, /);
    const markdown = report.renderResultsMarkdown(run);
    assert.match(markdown, /\| \*\*server_tiny\.ts\*\* \|/);
  },
});

Deno.test("the big-download floor answers a file's exact bytes from memory", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Two whole views of 16 MiB and a part of one, so each view's bounds count.
    const bytes = new Uint8Array(32 * 1024 ** 2 + 5).map((_, i) => i % 251);
    await Deno.writeFile(join(dir, "big.bin"), bytes);
    const flags = ["--allow-net=127.0.0.1", `--allow-read=${dir}`];
    const args = ["--root", dir, "--port", "0"];
    const script = "bench/reference/files_big_floor.ts";
    await using floor = await startScript(script, flags, args);
    const got = await (await fetch(new URL("big.bin", floor.url))).bytes();
    const sha = (data: BufferSource) => crypto.subtle.digest("SHA-256", data);
    assert.equal(got.length, bytes.length);
    assert.deepEqual(await sha(got), await sha(bytes));
    const missing = await fetch(new URL("missing.bin", floor.url));
    const answer = [missing.status, await missing.text()];
    assert.deepEqual(answer, [404, "Not Found\n"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
