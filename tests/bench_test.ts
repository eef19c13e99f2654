// The pure parts of the benchmark runner (bench/): reading wrk's and curl's
// reports, the tables, RESULTS.md, the SVG chart, targets, progress lines,
// server configs, fixtures and the command line. No network and no wrk here:
// the benchmark itself never runs in tests.
import assert from "node:assert/strict";
import { join } from "node:path";
import { chartTargets, chartTicks, renderSvgChart } from "../bench/chart.ts";
import { curlArgs, parseCurlWriteOut } from "../bench/curl.ts";
import {
  formatMessageLine,
  messageText,
  renderPgSeed,
  renderSmallPage,
  renderStylesheet,
  writeBoardData,
} from "../bench/fixtures.ts";
import { parseVmHwm } from "../bench/processes.ts";
import {
  estimateSeconds,
  formatTimeLeft,
  Progress,
  progressLine,
  runsOf,
  secondsLeft,
} from "../bench/progress.ts";
import {
  fastestLine,
  README_MARKERS,
  renderReadmeSummary,
  replaceBetween,
} from "../bench/readme.ts";
import {
  type BenchReport,
  checkTargets,
  computeRatios,
  describeLoad,
  fastestServer,
  formatKilo,
  formatLatency,
  formatMemory,
  formatRate,
  formatRatio,
  formatSize,
  formatSpread,
  median,
  renderResultsMarkdown,
  renderResultsTable,
  renderTargetsTable,
  type ScenarioResult,
  type ServerResult,
  type TargetDef,
} from "../bench/report.ts";
import { parseBenchArgs } from "../bench/run.ts";
import {
  expectedStatus,
  POST_BODY,
  renderPostScript,
  SCENARIOS,
  selectScenarios,
  TARGETS,
} from "../bench/scenarios.ts";
import {
  renderCaddyfile,
  renderLighttpdConfig,
  renderNginxConfig,
} from "../bench/servers.ts";
import {
  combineWrkResults,
  parseWrkCount,
  parseWrkOutput,
  parseWrkSize,
  parseWrkTime,
  wrkArgs,
  type WrkResult,
} from "../bench/wrk.ts";

// Real wrk 4.1 reports, as printed on this machine.
const WRK_WITH_LATENCY = `Running 5s test @ http://127.0.0.1:8080/small.html
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    28.15k     2.91k   34.52k    71.00%
  Latency Distribution
     50%  405.00us
     75%  611.00us
     90%    1.13ms
     99%    4.48ms
  280071 requests in 5.00s, 3.52GB read
Requests/sec:  56013.11
Transfer/sec:    720.19MB
`;

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

const WRK_WITHOUT_PERCENTILES = `Running 1m test @ http://127.0.0.1:8080/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms    1.00ms  10.00ms   80.00%
    Req/Sec     1.60k   100.00     1.80k    70.00%
  96000 requests in 1.00m, 512.00KB read
Requests/sec:   1600.00
Transfer/sec:      8.53KB
`;

Deno.test("parseWrkOutput reads counts, rates, percentiles and errors", () => {
  const cases = [
    {
      name: "with --latency",
      output: WRK_WITH_LATENCY,
      expected: {
        requests: 280071,
        seconds: 5,
        requestsPerSec: 56013.11,
        bytesPerSec: 720.19 * 1024 ** 2,
        latencyAvgMs: 0.63591,
        latencyP50Ms: 0.405,
        latencyP90Ms: 1.13,
        latencyP99Ms: 4.48,
        errors: 0,
      },
    },
    {
      name: "socket errors and 4xx/5xx answers, times in seconds",
      output: WRK_WITH_ERRORS,
      expected: {
        requests: 38,
        seconds: 2.01,
        requestsPerSec: 18.91,
        bytesPerSec: 221.49 * 1024 ** 2,
        latencyAvgMs: 1020,
        latencyP50Ms: 1020,
        latencyP90Ms: 1500,
        latencyP99Ms: 1610,
        errors: 3 + 1 + 7 + 5,
      },
    },
    {
      name: "no latency distribution, minutes and KB",
      output: WRK_WITHOUT_PERCENTILES,
      expected: {
        requests: 96000,
        seconds: 60,
        requestsPerSec: 1600,
        bytesPerSec: 8.53 * 1024,
        latencyAvgMs: 2.5,
        latencyP50Ms: null,
        latencyP90Ms: null,
        latencyP99Ms: null,
        errors: 0,
      },
    },
  ];
  for (const { name, output, expected } of cases) {
    const result = parseWrkOutput(output);
    for (const [key, value] of Object.entries(expected)) {
      const actual = result[key as keyof typeof result];
      if (typeof value === "number") {
        assert.ok(
          Math.abs((actual as number) - value) < 1e-9 * Math.max(1, value),
          `${name}: ${key} ${actual} != ${value}`,
        );
      } else {
        assert.equal(actual, value, `${name}: ${key}`);
      }
    }
  }
});

Deno.test("parseWrkOutput refuses a report that is cut short", () => {
  const failures = [
    "",
    "unable to connect to 127.0.0.1:1 Connection refused\n",
    WRK_WITH_LATENCY.replace(/^Requests\/sec:.*$/m, ""),
    WRK_WITH_LATENCY.replace(/^Transfer\/sec:.*$/m, ""),
    WRK_WITH_LATENCY.replace(/^.*requests in.*$/m, ""),
  ];
  for (const output of failures) {
    assert.throws(
      () => parseWrkOutput(output),
      /no complete report/,
      JSON.stringify(output.slice(0, 40)),
    );
  }
});

Deno.test("wrk units: times, binary sizes and counts", () => {
  const times: [string, number][] = [["405.00us", 0.405], ["1.13ms", 1.13], [
    "2.00s",
    2000,
  ], [
    "1.50m",
    90_000,
  ], [
    "1.00h",
    3_600_000,
  ]];
  for (const [text, ms] of times) {
    assert.ok(Math.abs(parseWrkTime(text) - ms) < 1e-9, text);
  }
  const sizes: [string, number][] = [
    ["512.00B", 512],
    ["1.50KB", 1536],
    ["2.00MB", 2 * 1024 ** 2],
    [
      "3.52GB",
      3.52 * 1024 ** 3,
    ],
  ];
  for (const [text, bytes] of sizes) {
    assert.equal(parseWrkSize(text), bytes, text);
  }
  const counts: [string, number][] = [["280071", 280071], ["28.15k", 28150], [
    "1.20M",
    1_200_000,
  ], [
    "0.50",
    0.5,
  ]];
  for (const [text, count] of counts) {
    assert.ok(Math.abs(parseWrkCount(text) - count) < 1e-6, text);
  }
  for (const bad of ["", "ms", "1.0 ms", "12xs", "-1ms"]) {
    assert.throws(() => parseWrkTime(bad), /not a wrk time/);
  }
  for (const bad of ["", "12", "1.0 MB", "3PB"]) {
    assert.throws(() => parseWrkSize(bad), /not a wrk size/);
  }
  assert.throws(() => parseWrkCount("12q"), /not a wrk count/);
});

Deno.test("wrkArgs asks for percentiles and passes headers, script and timeout", () => {
  assert.deepEqual(
    wrkArgs({
      url: "http://127.0.0.1:9/",
      duration: 5,
      connections: 32,
      threads: 2,
    }),
    [
      "--latency",
      "-t",
      "2",
      "-c",
      "32",
      "-d",
      "5s",
      "--timeout",
      "2s",
      "http://127.0.0.1:9/",
    ],
  );
  assert.deepEqual(
    wrkArgs({
      url: "http://127.0.0.1:9/",
      duration: 2,
      connections: 4,
      threads: 1,
      headers: ["Connection: close"],
      script: "/x/post.lua",
      timeout: 60,
    }),
    [
      "--latency",
      ...["-t", "1", "-c", "4", "-d", "2s", "--timeout", "60s"],
      ...["-H", "Connection: close", "-s", "/x/post.lua"],
      "http://127.0.0.1:9/",
    ],
  );
});

Deno.test("median, and the number formats used in the tables", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.throws(() => median([]), RangeError);
  const cases: [string, string][] = [
    [formatRatio(0.8312), "0.83×"],
    [formatRatio(1), "1×"],
    [formatRatio(12.4), "12×"],
    [formatRatio(19675.2), "19,675×"],
    [formatLatency(0.405), "0.405 ms"],
    [formatLatency(12.94), "12.9 ms"],
    [formatLatency(1610), "1.61 s"],
    [formatLatency(null), "–"],
    [formatMemory(52_428_800), "50.0 MiB"],
    [formatRate(1863.7 * 1024 ** 2), "1,863.7"],
    [formatMemory(null), "–"],
    [formatKilo(56013.11), "56.0k"],
    [formatKilo(950), "950"],
    [formatSize(5123.4), "5,123 B"],
    [formatSize(102_687.4), "102,687 B"],
    [formatSize(104_857_600), "100.0 MiB"],
    [formatSize(null), "–"],
    [formatSpread([52_100, 55_300, 54_000], "requests"), "52.1k–55.3k"],
    [formatSpread([900, 900], "requests"), "900"],
    [formatSpread([1024 ** 3, 2 * 1024 ** 3], "bytes"), "1,024.0–2,048.0"],
    [formatSpread([], "requests"), "–"],
  ];
  for (const [actual, expected] of cases) assert.equal(actual, expected);
});

function server(
  key: string,
  role: ServerResult["role"],
  requestsPerSec: number,
  extra: Partial<ServerResult> = {},
) {
  return {
    key,
    label: key === "ours" ? "server_files.ts" : key,
    role,
    runs: 3,
    samples: [requestsPerSec * 0.9, requestsPerSec, requestsPerSec * 1.1],
    requestsPerSec,
    bytesPerSec: requestsPerSec * 1000,
    bytesPerResponse: 1000,
    p50Ms: 0.4,
    p99Ms: 4.5,
    peakMemoryBytes: 40 * 1024 ** 2,
    errors: 0,
    ...extra,
  } satisfies ServerResult;
}

const SCENARIO_RESULTS: ScenarioResult[] = [
  {
    id: "files-small",
    title: "Files, 500 B page",
    load: "32 connections, keep-alive",
    metric: "requests",
    results: [
      server("ours", "ours", 45_000),
      server("floor", "floor", 47_000),
      server("nginx", "peer", 50_000),
      server("python", "peer", 900),
    ],
  },
  {
    id: "files-100mb",
    title: "Files, 100 MiB file",
    load: "4 connections",
    metric: "bytes",
    // Fewer requests but more bytes: the ratio must follow the bytes.
    results: [
      server("ours", "ours", 10, { bytesPerSec: 900e6 }),
      server("nginx", "peer", 20, { bytesPerSec: 1000e6 }),
    ],
  },
];

Deno.test("computeRatios divides ours by every floor and peer on the scenario's figure", () => {
  const ratios = computeRatios(SCENARIO_RESULTS);
  assert.deepEqual(
    ratios.map((
      r,
    ) => [r.scenario, r.reference, r.role, Number(r.value.toFixed(3))]),
    [
      ["Files, 500 B page", "floor", "floor", 0.957],
      ["Files, 500 B page", "nginx", "peer", 0.9],
      ["Files, 500 B page", "python", "peer", 50],
      ["Files, 100 MiB file", "nginx", "peer", 0.9],
    ],
  );
  // A peer that measured nothing gives no ratio rather than Infinity.
  const zero = [{
    ...SCENARIO_RESULTS[0],
    results: [server("ours", "ours", 5), server("nginx", "peer", 0)],
  }];
  assert.deepEqual(computeRatios(zero), []);
});

Deno.test("fastestServer and fastestLine name the fastest of ours and the peers, never a floor", () => {
  const [small, big] = SCENARIO_RESULTS;
  assert.equal(fastestServer(small)?.key, "nginx");
  assert.equal(fastestLine(small), "nginx (ours 2nd of 3)");
  assert.equal(fastestServer(big)?.key, "nginx", "by bytes, not requests");
  const oursFirst = {
    ...small,
    results: [server("ours", "ours", 60_000), server("floor", "floor", 90_000)],
  };
  assert.equal(fastestLine(oursFirst), "ours (server_files.ts)");
  assert.equal(fastestLine({ ...small, results: [] }), "–");
  const many = {
    ...small,
    results: [
      server("ours", "ours", 1),
      ...Array.from({ length: 11 }, (_, i) => server(`p${i}`, "peer", 10 + i)),
    ],
  };
  assert.equal(fastestLine(many), "p10 (ours 12th of 12)");
  const twentyTwo = {
    ...small,
    results: [
      server("ours", "ours", 1),
      ...Array.from({ length: 21 }, (_, i) => server(`p${i}`, "peer", 10 + i)),
    ],
  };
  assert.equal(fastestLine(twentyTwo), "p20 (ours 22nd of 22)");
});

Deno.test("renderResultsTable: one row per server, ours ÷ this on every other row, cells escaped", () => {
  const withPipe = structuredClone(SCENARIO_RESULTS);
  withPipe[0].results[3].label = "a|b";
  withPipe[0].results[2].note = "gzip";
  const table = renderResultsTable(withPipe);
  const lines = table.split("\n");
  assert.equal(lines.length, 2 + 6, "header, alignment, six servers");
  assert.equal(
    lines[0],
    "| Scenario | Server | Req/s | Runs, low–high | MiB/s | Bytes/response | p50 | p99 | Peak RSS | Errors | Ours ÷ this |",
  );
  const row = (text: string) => lines.find((line) => line.includes(text))!;
  assert.match(
    row("**server_files.ts**"),
    /\| 45,000 \| 40\.5k–49\.5k \| .* \| – \|$/,
  );
  assert.match(row("| floor (floor) |"), /\| 0\.96× \|$/);
  assert.match(row("| nginx: gzip |"), /\| 0\.9× \|$/);
  assert.match(row("a\\|b"), /\| 50× \|$/);
  assert.match(row("1,000 B"), /Files, 500 B/);
  // Every row has the same number of cells, the escaped pipe included.
  const cells = (line: string) => line.split(/(?<!\\)\|/).length;
  for (const line of lines) assert.equal(cells(line), cells(lines[0]), line);
  // Two of ours in one scenario: each ratio names which of ours it is.
  const two = renderResultsTable([{
    ...SCENARIO_RESULTS[0],
    results: [
      server("pg-1", "ours", 500, { label: "PG 1" }),
      server("pg-2", "ours", 400, { label: "PG 2" }),
      server("file", "peer", 1000, { label: "file store" }),
    ],
  }]);
  assert.match(two, /\| file store \|.*\| 0\.5× PG 1, 0\.4× PG 2 \|$/m);
});

Deno.test("checkTargets holds each figure to its bound, against the best of several, and says when it cannot", () => {
  const scenarios: ScenarioResult[] = [
    ...SCENARIO_RESULTS,
    {
      id: "tiny",
      title: "Tiny",
      load: "",
      metric: "requests",
      results: [
        server("ours", "ours", 9500, { peakMemoryBytes: 90e6 }),
        server("loop", "floor", 10_000, {
          label: "bare loop",
          peakMemoryBytes: 60e6,
        }),
      ],
    },
  ];
  const targets: TargetDef[] = [
    {
      goal: "rate vs floor",
      figure: "rate",
      ours: { scenario: "tiny" },
      versus: { scenario: "tiny", servers: ["loop"] },
      atLeast: 0.9,
    },
    {
      goal: "memory vs floor",
      figure: "memory",
      ours: { scenario: "tiny" },
      versus: { scenario: "tiny", servers: ["loop"] },
      atMost: 1.49,
    },
    {
      goal: "fastest of several",
      figure: "rate",
      ours: { scenario: "files-small" },
      versus: {
        scenario: "files-small",
        servers: ["python", "nginx", "absent"],
      },
      atLeast: 0.95,
    },
    {
      goal: "bytes below",
      figure: "bytes-per-response",
      ours: { scenario: "files-small" },
      versus: { scenario: "files-small", servers: ["nginx"] },
      below: 1,
    },
    {
      goal: "fixed memory bound",
      figure: "memory",
      ours: { scenario: "files-100mb" },
      versus: 100e6,
      below: 1,
    },
    {
      goal: "bytes metric",
      figure: "rate",
      ours: { scenario: "files-100mb" },
      versus: { scenario: "files-100mb", servers: ["nginx"] },
      atLeast: 0.8,
    },
    {
      goal: "not measured",
      figure: "rate",
      ours: { scenario: "board-pg-page", server: "board-pg-1" },
      versus: { scenario: "board-pg-page", servers: ["board-file"] },
      atLeast: 0.8,
    },
  ];
  const results = checkTargets(targets, scenarios);
  assert.deepEqual(results.map((t) => [t.goal, t.met]), [
    ["rate vs floor", true], // 0.95
    ["memory vs floor", false], // 1.5 > 1.49
    ["fastest of several", false], // 45,000 against nginx's 50,000, not python's 900
    ["bytes below", false], // 1,000 B each: not fewer
    ["fixed memory bound", true], // 41.9 MB < 100 MB
    ["bytes metric", true], // 0.9
    ["not measured", null],
  ]);
  assert.deepEqual(results.map((t) => t.measured), [
    "0.95× (9,500/s vs 10,000/s bare loop)",
    "1.5× (85.8 MiB vs 57.2 MiB bare loop)",
    "0.9× (45,000/s vs 50,000/s nginx)",
    "1× (1,000 B vs 1,000 B nginx)",
    "0.42× (40.0 MiB vs 100 MB)",
    "0.9× (858.3 MiB/s vs 953.7 MiB/s nginx)",
    "–",
  ]);
  assert.ok(
    checkTargets(TARGETS, []).every((t) =>
      t.met === null && t.measured === "–"
    ),
    "nothing measured",
  );
  const table = renderTargetsTable(results);
  assert.match(table, /^\| Target \| Measured \| Result \|$/m);
  assert.match(table, /✅ met[\s\S]*❌ not met[\s\S]*not measured/);
});

Deno.test("the targets table names real scenarios and servers, one row per bound", () => {
  for (const target of TARGETS) {
    const ours = SCENARIOS.find((s) => s.id === target.ours.scenario);
    assert.ok(ours, `${target.goal}: scenario ${target.ours.scenario}`);
    assert.ok(
      ours.servers.some((s) => s.key === (target.ours.server ?? "ours")),
      `${target.goal}: our server`,
    );
    if (typeof target.versus !== "number") {
      const { scenario, servers } = target.versus;
      const versus = SCENARIOS.find((s) => s.id === scenario)!;
      for (const key of servers) {
        assert.ok(
          versus.servers.some((s) => s.key === key),
          `${target.goal}: ${key}`,
        );
      }
    }
    const bounds = [target.atLeast, target.atMost, target.below].filter((b) =>
      b !== undefined
    );
    assert.equal(bounds.length, 1, target.goal);
  }
  const goals = TARGETS.map((t) => t.goal).join("\n");
  for (
    const expected of [
      /500 B.*0\.95× the Deno\.serve floor/,
      /2\.5× the fastest JavaScript peer/,
      /1\.5× nginx with gzip on/,
      /fewer bytes/,
      /100 MiB.*0\.8× nginx/,
      /under 100 MB/,
      /0\.9× the bare Deno\.listen loop/,
      /RSS at most 1\.5×/,
      /PostgreSQL newest page.*0\.8× the file store/,
    ]
  ) {
    assert.match(goals, expected);
  }
});

Deno.test("chartTargets marks the bars of rate targets within one scenario", () => {
  const marks = chartTargets(TARGETS, [
    {
      ...SCENARIO_RESULTS[0],
      results: [
        server("ours", "ours", 1),
        server("deno-serve-floor", "floor", 1, { label: "Deno.serve floor" }),
        server("hono", "peer", 1, { label: "Hono" }),
        server("serve", "peer", 1, { label: "serve" }),
        server("nginx", "peer", 1),
      ],
    },
  ]);
  assert.deepEqual(marks, {
    "Files, 500 B page|server_files.ts|Deno.serve floor": 0.95,
    "Files, 500 B page|server_files.ts|Hono": 2.5,
    "Files, 500 B page|server_files.ts|serve": 2.5,
  });
  // Two of ours: the PostgreSQL target is for one process only.
  const pg = chartTargets(TARGETS, [{
    id: "board-pg-page",
    title: "PG page",
    load: "",
    metric: "requests",
    results: [
      server("board-file", "peer", 1, { label: "file store" }),
      server("board-pg-1", "ours", 1, { label: "PG 1" }),
      server("board-pg-2", "ours", 1, { label: "PG 2" }),
    ],
  }]);
  assert.deepEqual(pg, { "PG page|PG 1|file store": 0.8 });
});

const REPORT: BenchReport = {
  date: "2026-11-22T02:10:00.000Z",
  machine: {
    cpus: 2,
    cpuModel: "Test CPU",
    memoryBytes: 24 * 1024 ** 3,
    kernel: "6.1.0",
    loadAverage: [3.5, 4.25],
  },
  versions: { Deno: "2.9.6", nginx: "1.22.1", Python: "3.11.7", wrk: "4.1.0" },
  command: "deno task bench",
  settings: { duration: 5, runs: 3, threads: 2 },
  scenarios: SCENARIO_RESULTS,
  targets: checkTargets(TARGETS, SCENARIO_RESULTS),
  skipped: [
    "Tiny: server_tiny.ts skipped, /x/server_tiny.ts does not exist yet.",
  ],
  elapsedSeconds: 321,
  note: "Other helpers' tests ran meanwhile.",
};

Deno.test("renderResultsMarkdown names the machine, versions, command, chart and skipped servers", () => {
  const markdown = renderResultsMarkdown(REPORT, "results.svg");
  for (
    const expected of [
      "Measured 2026-11-22 02:10 UTC in 321 s",
      "2 × Test CPU, 24.0 GiB memory, Linux 6.1.0",
      "Deno 2.9.6, nginx 1.22.1, Python 3.11.7, wrk 4.1.0",
      "median of 3 runs of 5 s, wrk with 2 threads",
      "Reproduce: `deno task bench`",
      "![Our servers' speed as a ratio to each peer and floor](results.svg)",
      "- Load average 3.5 at the start, 4.3 at the end: other work shared the 2 cores",
      "- Other helpers' tests ran meanwhile.",
      "## Targets\n\n| Target | Measured | Result |",
      "## Not measured\n\n- Tiny: server_tiny.ts skipped",
    ]
  ) {
    assert.ok(markdown.includes(expected), `missing: ${expected}`);
  }
  assert.ok(markdown.includes(renderResultsTable(SCENARIO_RESULTS)));
  assert.ok(
    !renderResultsMarkdown({ ...REPORT, skipped: [] }).includes(
      "## Not measured",
    ),
  );
  assert.equal(
    describeLoad({ ...REPORT.machine, loadAverage: [0.2, 0.4] }),
    "Load average 0.2 at the start, 0.4 at the end.",
  );
  assert.equal(describeLoad({ ...REPORT.machine, loadAverage: undefined }), "");
});

Deno.test("chartTicks: 1-2-5 steps over a few decades, powers of ten beyond", () => {
  assert.deepEqual(chartTicks(0.5, 3), [0.5, 1, 2, 5]);
  assert.deepEqual(chartTicks(0.06, 1.2), [0.05, 0.1, 0.2, 0.5, 1, 2]);
  assert.deepEqual(chartTicks(0.1, 5000), [0.1, 1, 10, 100, 1000, 10000]);
  assert.deepEqual(chartTicks(0.03, 30000), [
    0.01,
    0.1,
    1,
    10,
    100,
    1000,
    10000,
    100000,
  ]);
});

/** The bars of a chart: [x, width, fill] of each rect that has a tooltip. */
function bars(
  svg: string,
): { x: number; width: number; fill: string; title: string }[] {
  return [
    ...svg.matchAll(
      /<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="\d+" fill="(#\w+)"><title>([^<]*)<\/title>/g,
    ),
  ]
    .map((m) => ({
      x: Number(m[1]),
      width: Number(m[2]),
      fill: m[3],
      title: m[4],
    }));
}

Deno.test("renderSvgChart draws faster bars right of 1×, slower left, coloured by target", () => {
  const ratios = [
    {
      scenario: "Files <small>",
      ours: "server_files.ts",
      reference: "nginx",
      role: "peer" as const,
      value: 0.5,
    },
    {
      scenario: "Files <small>",
      ours: "server_files.ts",
      reference: "python & co",
      role: "floor" as const,
      value: 10,
    },
    {
      scenario: "Posts",
      ours: "message_board.ts",
      reference: "textbook board",
      role: "peer" as const,
      value: 2,
    },
  ];
  const svg = renderSvgChart(ratios, "Title & more", {
    "Files <small>|server_files.ts|nginx": 1,
    "Posts|message_board.ts|textbook board": 3,
  });
  assert.match(
    svg,
    /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" [^>]*viewBox="0 0 960 \d+"/,
  );
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.ok(svg.includes("<title>Title &amp; more</title>"));
  assert.ok(
    svg.includes(">Files &lt;small&gt;</text>") &&
      svg.includes(">vs python &amp; co (floor)</text>"),
  );
  assert.ok(!svg.includes("<small>"), "labels are escaped");
  const oneX = Number(
    /<line x1="([\d.]+)"[^>]*stroke="#111" stroke-width="1.5"\/>/.exec(svg)![1],
  );
  const [slow, fast, missed] = bars(svg);
  assert.ok(
    Math.abs(slow.x + slow.width - oneX) < 0.2,
    "a slower bar ends at 1×",
  );
  assert.ok(
    Math.abs(fast.x - oneX) < 0.2 && Math.abs(missed.x - oneX) < 0.2,
    "faster bars start at 1×",
  );
  assert.ok(fast.width > missed.width, "10× is longer than 2×");
  assert.equal(slow.fill, "#c62828", "0.5× misses its 1× target");
  assert.equal(fast.fill, "#3b6fb6", "no target");
  assert.equal(missed.fill, "#c62828", "2× misses its 3× target");
  assert.deepEqual([slow.title, fast.title].map((t) => t.split(", ").at(-1)), [
    "0.5×",
    "10×",
  ]);
  assert.equal(
    [...svg.matchAll(/<title>target /g)].length,
    2,
    "one tick per target",
  );
  const met = bars(
    renderSvgChart([{ ...ratios[2], value: 4 }], "t", {
      "Posts|message_board.ts|textbook board": 3,
    }),
  );
  assert.equal(met[0].fill, "#2e7d32");
  // Two servers of ours in one scenario: each bar names which one it is.
  const two = renderSvgChart([
    {
      scenario: "PG",
      ours: "PostgreSQL, 1 process",
      reference: "file store",
      role: "peer",
      value: 0.5,
    },
    {
      scenario: "PG",
      ours: "PostgreSQL, 2 processes",
      reference: "file store",
      role: "peer",
      value: 0.4,
    },
  ], "t");
  assert.ok(two.includes(">PostgreSQL, 1 process vs file store</text>"));
  assert.ok(two.includes(">PostgreSQL, 2 processes vs file store</text>"));
  assert.match(renderSvgChart([], "Empty"), /No ratios/);
});

Deno.test("selectScenarios picks by id or prefix and rejects unknown names", () => {
  const ids = (only: string[]) =>
    selectScenarios(SCENARIOS, only).map((s) => s.id);
  assert.deepEqual(ids([]), SCENARIOS.map((s) => s.id));
  assert.deepEqual(ids(["tiny"]), ["tiny"]);
  assert.deepEqual(ids(["files"]), [
    "files-small",
    "files-css-gzip",
    "files-100kb",
    "files-100mb",
  ]);
  assert.deepEqual(ids(["board-post", "tiny"]), [
    "tiny",
    "board-post-1k",
    "board-post-100k",
  ]);
  assert.throws(
    () => ids(["fil"]),
    /unknown scenario "fil"; choose from: tiny, files-small/,
  );
});

Deno.test("the scenarios put ours beside the floors and the peers", () => {
  const byId = Object.fromEntries(SCENARIOS.map((s) => [s.id, s]));
  const keys = (id: string) => byId[id].servers.map((s) => s.key);
  assert.deepEqual(byId["tiny"].headers, ["Connection: close"]);
  assert.deepEqual(keys("tiny"), [
    "ours",
    "deno-listen-loop",
    "node-net-loop",
    "textbook-tiny",
  ]);
  assert.deepEqual(keys("files-small"), [
    "ours",
    "deno-serve-floor",
    "nginx",
    "caddy",
    "lighttpd",
    "hono",
    "serve",
    "http-server",
    "sirv",
    "std-file-server",
    "python-http-server",
  ]);
  assert.deepEqual(
    byId["files-small"].servers.filter((s) => s.javascript).map((s) => s.key),
    ["hono", "serve", "http-server", "sirv", "std-file-server"],
  );
  assert.deepEqual(byId["files-css-gzip"].headers, [
    "Accept-Encoding: gzip, br",
  ]);
  assert.deepEqual(keys("files-css-gzip").slice(0, 4), [
    "ours",
    "deno-serve-floor",
    "nginx-gzip",
    "caddy-encode",
  ]);
  assert.equal(
    byId["files-css-gzip"].expectBytes,
    undefined,
    "compressed: any size",
  );
  assert.equal(byId["files-100mb"].metric, "bytes");
  assert.equal(byId["files-100mb"].client, "curl");
  assert.equal(byId["files-100mb"].pulls, 4);
  assert.deepEqual(keys("files-100mb").slice(0, 2), ["ours", "nginx"]);
  for (const scenario of SCENARIOS) {
    assert.equal(
      scenario.servers.filter((s) => s.role === "ours").length,
      scenario.id.startsWith("board-pg") ? 2 : 1,
      scenario.id,
    );
  }
  for (const id of ["board-post-1k", "board-post-100k"]) {
    const form = new URLSearchParams(byId[id].postBody);
    assert.deepEqual([...form.keys()], ["message"]);
    assert.match(
      byId[id].postBody!,
      /^[\w%+=.*-]+$/,
      "urlencoded, safe in a Lua string",
    );
    assert.equal(byId[id].connections, 32);
    assert.equal(byId[id].freshEachRun, true);
  }
  assert.deepEqual(
    SCENARIOS.filter((s) => s.boardMessages).map((s) => s.boardMessages),
    [1000, 100_000, 1000, 100_000, 1000, 1000],
  );
});

Deno.test("the PostgreSQL scenarios put 1 and 2 processes beside the file store at 1,000", () => {
  assert.deepEqual(selectScenarios(SCENARIOS, ["board-pg"]).map((s) => s.id), [
    "board-pg-page",
    "board-pg-post",
  ]);
  for (const id of ["board-pg-page", "board-pg-post"]) {
    const scenario = SCENARIOS.find((s) => s.id === id)!;
    assert.equal(scenario.boardMessages, 1000);
    assert.equal(scenario.connections, 32);
    assert.deepEqual(
      scenario.servers.map((
        s,
      ) => [s.key, s.role, s.instances ?? 1, s.postgres ?? false]),
      [["board-file", "peer", 1, false], ["board-pg-1", "ours", 1, true], [
        "board-pg-2",
        "ours",
        2,
        true,
      ]],
    );
    // Every one of them is our board, which answers a stored post with 303.
    for (const server of scenario.servers) {
      assert.equal(
        expectedStatus(scenario, server),
        scenario.postBody ? 303 : 200,
      );
    }
  }
  assert.equal(
    SCENARIOS.find((s) => s.id === "board-pg-post")!.postBody,
    POST_BODY,
  );
});

Deno.test("combineWrkResults sums the rates of simultaneous runs and keeps the worse latencies", () => {
  const a = parseWrkOutput(WRK_WITH_LATENCY);
  const b: WrkResult = {
    requests: 20_000,
    seconds: 5.01,
    requestsPerSec: 4000,
    bytesPerSec: 1000,
    latencyAvgMs: 2,
    latencyP50Ms: 0.3,
    latencyP90Ms: 3,
    latencyP99Ms: 9,
    errors: 2,
  };
  const both = combineWrkResults([a, b]);
  assert.equal(both.requests, a.requests + 20_000);
  assert.equal(both.seconds, 5.01);
  assert.equal(both.requestsPerSec, a.requestsPerSec + 4000);
  assert.equal(both.bytesPerSec, a.bytesPerSec + 1000);
  assert.equal(both.errors, a.errors + 2);
  assert.equal(both.latencyP50Ms, 0.405, "the worse p50 (a's)");
  assert.equal(both.latencyP90Ms, 3, "the worse p90 (b's)");
  assert.equal(both.latencyP99Ms, 9);
  const weighted = (a.latencyAvgMs * a.requests + 2 * 20_000) /
    (a.requests + 20_000);
  assert.ok(
    Math.abs(both.latencyAvgMs - weighted) < 1e-9,
    "mean weighted by requests",
  );
  assert.equal(combineWrkResults([b]), b, "one run stays as it is");
  assert.equal(
    combineWrkResults([b, { ...b, latencyP99Ms: null }]).latencyP99Ms,
    null,
  );
  assert.throws(() => combineWrkResults([]), RangeError);
});

Deno.test("renderPgSeed loads the same messages as the JSON Lines seed, ids and times included", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeBoardData(join(dir, "seed.jsonl"), 3);
    const lines = (await Deno.readTextFile(join(dir, "seed.jsonl"))).trim()
      .split("\n");
    const expected = lines.map((line) => JSON.parse(line)).map((m) =>
      `${m.id}\t${m.text}\t${m.postedAt}`
    );
    const sql = renderPgSeed(3).split("\n");
    assert.match(
      sql[0],
      /^truncate board_messages, board_clears, board_archive restart identity;$/,
    );
    assert.equal(
      sql[1],
      "copy board_messages (id, text, posted_at) from stdin;",
    );
    assert.deepEqual(sql.slice(2, 5), expected);
    assert.equal(sql[5], "\\.");
    assert.match(
      sql[6],
      /setval\(pg_get_serial_sequence\('board_messages', 'id'\), 3, true\)/,
    );
    assert.match(renderPgSeed(0), /, 1, false\);/, "empty: the next id is 1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the post script sends the form, and posts must get the board's own answer", () => {
  const script = renderPostScript("message=Hello+%22you%22");
  assert.ok(script.includes('wrk.method = "POST"'));
  assert.ok(
    script.includes(
      'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    ),
  );
  assert.ok(script.includes('wrk.body = "message=Hello+%22you%22"'));
  const posts = SCENARIOS.find((s) => s.id === "board-post-1k")!;
  const page = SCENARIOS.find((s) => s.id === "board-page-1k")!;
  const [ours, textbook] = posts.servers;
  assert.equal(
    expectedStatus(posts, ours),
    303,
    "ours redirects after a durable post",
  );
  assert.equal(
    expectedStatus(posts, textbook),
    200,
    "the textbook answers with the page",
  );
  assert.equal(expectedStatus(page, ours), 200);
});

Deno.test("renderNginxConfig: one worker, sendfile, no access log, everything in the work folder", () => {
  const config = renderNginxConfig(8123, "/tmp/b/site", "/tmp/b/start-1");
  for (
    const line of [
      "worker_processes 1;",
      "daemon off;",
      "pid /tmp/b/start-1/nginx.pid;",
      "sendfile on;",
      "access_log off;",
      "listen 127.0.0.1:8123;",
      "root /tmp/b/site;",
      "client_body_temp_path /tmp/b/start-1/client_body;",
    ]
  ) {
    assert.ok(config.includes(line), line);
  }
  assert.ok(!config.includes("/var/"), "nothing outside the work folder");
  assert.ok(!config.includes("gzip"), "no compression unless asked");
  const gzip = renderNginxConfig(8123, "/tmp/b/site", "/tmp/b/start-1", {
    gzip: true,
  });
  for (
    const line of [
      "gzip on;",
      "gzip_comp_level 1;",
      "gzip_types text/css",
      "text/css css;",
    ]
  ) {
    assert.ok(gzip.includes(line), line);
  }
});

Deno.test("renderCaddyfile and renderLighttpdConfig: loopback only, no admin, compression when asked", () => {
  const caddy = renderCaddyfile(8124, "/tmp/b/site");
  for (
    const line of [
      "admin off",
      "auto_https off",
      "http://127.0.0.1:8124 {",
      "root * /tmp/b/site",
      "gzip 1",
      "file_server",
    ]
  ) {
    assert.ok(caddy.includes(line), line);
  }
  const plain = renderLighttpdConfig(8125, "/tmp/b/site", "/tmp/b/start-2");
  for (
    const line of [
      'server.document-root = "/tmp/b/site"',
      'server.bind = "127.0.0.1"',
      "server.port = 8125",
      'server.errorlog = "/tmp/b/start-2/error.log"',
    ]
  ) {
    assert.ok(plain.includes(line), line);
  }
  assert.ok(!plain.includes("mod_deflate"));
  const deflate = renderLighttpdConfig(8125, "/tmp/b/site", "/tmp/b/w", {
    deflate: true,
  });
  assert.ok(deflate.includes('server.modules = ( "mod_deflate" )'));
  assert.ok(deflate.includes("deflate.compression-level = 1"));
});

Deno.test("parseVmHwm reads the peak resident set in bytes", () => {
  assert.equal(
    parseVmHwm(
      "Name:\tdeno\nVmPeak:\t 999 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 1 kB\n",
    ),
    51234 * 1024,
  );
  assert.equal(parseVmHwm("Name:\tzombie\n"), null);
});

Deno.test("fixtures: an exact-size page and messages in the board's JSON Lines format", async () => {
  for (const size of [300, 500, 1000]) {
    assert.equal(renderSmallPage(size).length, size);
  }
  assert.throws(() => renderSmallPage(10), RangeError);
  for (const size of [2000, 15 * 1024]) {
    const css = renderStylesheet(size);
    assert.equal(css.length, size);
    assert.equal(css, renderStylesheet(size), "the same file every run");
    assert.match(css, /^\/\* A stylesheet[^]*\}\n\/\* *\*\/\n$/);
  }
  // Compressible like real CSS, not like a repeated string or random bytes.
  const css = new TextEncoder().encode(renderStylesheet(15 * 1024));
  const gzipped = await new Response(
    new Blob([css]).stream().pipeThrough(new CompressionStream("gzip")),
  ).arrayBuffer();
  const ratio = css.length / gzipped.byteLength;
  assert.ok(ratio > 2 && ratio < 8, `compresses ${ratio.toFixed(1)}:1`);
  assert.equal(
    formatMessageLine(1, 'say "hi"', "2026-11-21T22:44:51.000Z"),
    '{"id":1,"text":"say \\"hi\\"","postedAt":"2026-11-21T22:44:51.000Z"}\n',
  );
  assert.equal(
    messageText(1),
    "Message 1: from the tiny message board where every message is kept safe on disk",
  );
  assert.notEqual(messageText(1), messageText(2));

  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "messages.jsonl");
    await writeBoardData(path, 2500);
    const lines = (await Deno.readTextFile(path)).split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    assert.equal(lines.length, 2500);
    const messages = lines.map((line) => JSON.parse(line));
    assert.deepEqual(
      messages.map((m) => m.id),
      Array.from({ length: 2500 }, (_, i) => i + 1),
    );
    assert.deepEqual(Object.keys(messages[0]), ["id", "text", "postedAt"]);
    assert.equal(messages.at(-1).postedAt, "2026-11-21T22:44:51.000Z");
    for (let i = 1; i < messages.length; i++) {
      assert.ok(messages[i - 1].postedAt < messages[i].postedAt);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseBenchArgs: defaults, --quick, and partial runs write to bench/out", () => {
  const full = parseBenchArgs([]);
  assert.ok(full !== "help");
  assert.deepEqual([
    full.duration,
    full.runs,
    full.threads,
    full.warmup,
    full.only,
  ], [
    5,
    3,
    2,
    1,
    [],
  ]);
  assert.match(full.outDir, /bench\/$/);
  const quick = parseBenchArgs(["--quick"]);
  assert.ok(quick !== "help");
  assert.deepEqual([quick.duration, quick.runs], [2, 1]);
  assert.match(quick.outDir, /bench\/out$/);
  const only = parseBenchArgs([
    "--only",
    "tiny,files",
    "--runs",
    "5",
    "--out",
    "/tmp/x",
  ]);
  assert.ok(only !== "help");
  assert.deepEqual([only.only, only.runs, only.outDir], [
    ["tiny", "files"],
    5,
    "/tmp/x",
  ]);
  const partial = parseBenchArgs(["--only", "tiny"]);
  assert.ok(partial !== "help" && partial.outDir.endsWith("bench/out"));
  assert.equal(full.updateReadme, false);
  const noted = parseBenchArgs(["--note", "Other work ran."]);
  assert.ok(noted !== "help" && noted.note === "Other work ran.");
  const readme = parseBenchArgs(["--update-readme"]);
  assert.ok(readme !== "help" && readme.updateReadme);
  assert.match(readme.outDir, /bench\/$/, "reads the published results");
  assert.equal(parseBenchArgs(["--help"]), "help");
  assert.throws(
    () => parseBenchArgs(["--runs", "zero"]),
    /--runs needs a number >= 1/,
  );
  assert.throws(
    () => parseBenchArgs(["--duration", "0"]),
    /--duration needs a number >= 1/,
  );
  assert.throws(() => parseBenchArgs(["--bogus"]));
});

Deno.test("the README summary has one row per scenario with the floor, the fastest peer and the fastest server", () => {
  const summary = renderReadmeSummary(REPORT);
  assert.match(
    summary,
    /^Ratios from one run of `deno task bench` on 2026-11-22: 2 × Test CPU, with the client/,
  );
  assert.ok(
    summary.includes(
      "| Scenario | Ours | Ours ÷ floor | Ours ÷ fastest peer | Fastest in this row |",
    ),
  );
  assert.ok(
    summary.includes(
      "| Files, 500 B page | server_files.ts | 0.96× floor | 0.9× nginx | nginx (ours 2nd of 3) |",
    ),
  );
  assert.ok(
    summary.includes(
      "| Files, 100 MiB file | server_files.ts | – | 0.9× nginx | nginx (ours 2nd of 2) |",
    ),
  );
  assert.match(
    summary,
    /Targets: 2 of 2 met in this run \(11 not measured\)\./,
  );
  const pg = renderReadmeSummary({
    ...REPORT,
    scenarios: [{
      id: "board-pg-post",
      title: "Board posts, PostgreSQL",
      load: "32 connections",
      metric: "requests",
      results: [
        server("board-file", "peer", 1000, { label: "file store" }),
        server("board-pg-1", "ours", 500, { label: "PostgreSQL, 1 process" }),
        server("board-pg-2", "ours", 400, { label: "PostgreSQL, 2 processes" }),
      ],
    }],
  });
  assert.ok(
    pg.includes(
      "| Board posts, PostgreSQL | PostgreSQL, 1 process | – | 0.5× file store | file store (ours 2nd of 3) |",
    ),
  );
  assert.ok(
    pg.includes(
      "| Board posts, PostgreSQL | PostgreSQL, 2 processes | – | 0.4× file store | file store (ours 3rd of 3) |",
    ),
  );

  const { start, end } = README_MARKERS;
  const readme =
    `# Title\n\n## Benchmarks\n\nIntro.\n\n${start}\nold table\n${end}\n\n## License\n`;
  assert.equal(
    replaceBetween(readme, start, end, "new table"),
    `# Title\n\n## Benchmarks\n\nIntro.\n\n${start}\nnew table\n${end}\n\n## License\n`,
  );
  assert.equal(replaceBetween("no markers here", start, end, "x"), null);
  assert.equal(
    replaceBetween(`${end}\n${start}\n`, start, end, "x"),
    null,
    "end before start",
  );
});

Deno.test("curl: arguments for a download or a form post, and its write-out line", () => {
  const args = curlArgs({ url: "http://127.0.0.1:9/x", timeout: 5 });
  assert.deepEqual(args.slice(0, 6), [
    "--silent",
    "--show-error",
    "--output",
    "/dev/null",
    "--max-time",
    "5",
  ]);
  assert.equal(args.at(-1), "http://127.0.0.1:9/x");
  assert.ok(
    !args.includes("--location"),
    "redirects are answers, not followed",
  );
  const post = curlArgs({
    url: "http://127.0.0.1:9/",
    timeout: 2,
    headers: ["Accept-Encoding: gzip, br"],
    form: "message=hi",
  });
  assert.deepEqual(post.slice(-5), [
    "--header",
    "Accept-Encoding: gzip, br",
    "--data-raw",
    "message=hi",
    "http://127.0.0.1:9/",
  ]);
  assert.deepEqual(parseCurlWriteOut("200 104857600 0.101 1038194059 br\n"), {
    status: 200,
    bytes: 104857600,
    seconds: 0.101,
    bytesPerSec: 1038194059,
    encoding: "br",
  });
  assert.equal(parseCurlWriteOut("303 0 0.002 0 \n").encoding, "");
  for (const bad of ["", "000", "curl: (7) Failed to connect"]) {
    assert.throws(() => parseCurlWriteOut(bad), /curl printed no report/);
  }
});

Deno.test("progress: estimates, the time left and one line per measured run", () => {
  const settings = { duration: 5, runs: 3, warmup: 1 };
  assert.equal(estimateSeconds({}, settings), 3 + 1 + 3 * 5.5);
  assert.equal(estimateSeconds({ freshEachRun: true }, settings), 3 * 8.5);
  assert.equal(estimateSeconds({ client: "curl", pulls: 4 }, settings), 3 + 6);
  assert.equal(runsOf({ client: "curl", pulls: 4 }, 3), 4);
  assert.equal(runsOf({ pulls: 4 }, 3), 3, "pulls only count for curl");
  assert.equal(formatTimeLeft(42), "about 42 s left");
  assert.equal(formatTimeLeft(0.2), "about 1 s left");
  assert.equal(formatTimeLeft(754), "about 12 min 30 s left");
  assert.equal(formatTimeLeft(600), "about 10 min left");
  assert.equal(secondsLeft(100, 10, 50), 100, "too early to correct");
  assert.equal(secondsLeft(100, 50, 100), 200, "twice as slow as planned");
  assert.equal(secondsLeft(100, 50, 1000), 300, "at most 3×");
  assert.equal(secondsLeft(100, 50, 5), 50, "at least 0.5×");
  assert.equal(
    progressLine({
      scenario: "files-small",
      server: "nginx",
      run: 2,
      runs: 3,
      step: 4,
      steps: 40,
      secondsLeft: 500,
    }),
    "[4/40] files-small · nginx · run 2 of 3 · about 8 min 20 s left",
  );
  let now = 0;
  const progress = new Progress([
    { scenario: "a", server: "x", runs: 2, seconds: 40 },
    { scenario: "b", server: "y", runs: 1, seconds: 60 },
  ], () => now);
  assert.equal(
    progress.line(0, 1),
    "[1/2] a · x · run 1 of 2 · about 1 min 40 s left",
  );
  progress.complete(0);
  now = 20_000; // run 2 of the first step, on plan
  assert.equal(
    progress.line(0, 2),
    "[1/2] a · x · run 2 of 2 · about 1 min 20 s left",
  );
  progress.complete(0);
  now = 80_000; // twice as slow as planned: 60 s planned left become 120 s
  assert.equal(
    progress.line(1, 1),
    "[2/2] b · y · run 1 of 1 · about 2 min left",
  );
});
