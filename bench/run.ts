#!/usr/bin/env -S deno run --allow-all
/**
 * The benchmark: our three servers against the servers our users know.
 *
 * ```sh
 * deno task bench                      # full run: writes bench/RESULTS.md, results.svg, results.json
 * deno task bench --quick              # 1 run of 2 s each, written to bench/out/
 * deno task bench --only files --runs 5 --duration 10
 * ```
 *
 * For every scenario it starts each server on a free port on 127.0.0.1,
 * waits until it answers, warms it up, drives it with wrk for a bounded time
 * several times and keeps the median, reads the server's peak memory, and
 * stops it. References (nginx, `python3 -m http.server`, the textbook's
 * programs in bench/reference/) are skipped with a line when not installed,
 * and so is any of our scripts that does not exist yet. Every process it
 * started is stopped on error and on Ctrl-C. Needs wrk (`apt-get install wrk`).
 *
 * It runs with --allow-all because it starts other programs (wrk, nginx,
 * python3, Deno); the servers themselves run with their own narrow flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, relative, resolve } from "node:path";
import {
  renderPgSeed,
  SITE_FILES,
  writeBoardData,
  writeSiteFiles,
} from "./fixtures.ts";
import {
  countPgMessages,
  type PgServer,
  runPsql,
  startPostgres,
} from "./postgres.ts";
import {
  findFreePort,
  readPeakMemory,
  type RunningServer,
  startServer,
  stopAll,
  stopServer,
  track,
  waitUntilIdle,
} from "./processes.ts";
import {
  type BenchReport,
  computeRatios,
  median,
  README_MARKERS,
  renderReadmeSummary,
  renderResultsMarkdown,
  renderResultsTable,
  renderSvgChart,
  renderTargetsTable,
  replaceBetween,
  type ScenarioResult,
  type ServerResult,
} from "./report.ts";
import {
  chartTargets,
  checkTargets,
  expectedStatus,
  type LaunchContext,
  OUR_BOARD_PG_1,
  renderPostScript,
  type ScenarioDef,
  SCENARIOS,
  selectScenarios,
  type ServerDef,
} from "./scenarios.ts";
import { combineWrkResults, runWrk, type WrkResult } from "./wrk.ts";

/** Settings of one benchmark run. */
export interface BenchOptions {
  /** Seconds per measured wrk run. @default 5 */
  duration: number;
  /** Measured runs per server and scenario; the median is reported. @default 3 */
  runs: number;
  /** wrk threads. @default 2 */
  threads: number;
  /** Seconds of the warm-up run before the measured ones (0: none). @default 1 */
  warmup: number;
  /** Scenario ids or prefixes to run; empty runs all. @default [] */
  only: string[];
  /** Folder holding server_tiny.ts, server_files.ts, message_board.ts. @default the repository root */
  serversDir: string;
  /** Where RESULTS.md and results.svg go. @default bench/ for a full run, bench/out/ otherwise */
  outDir: string;
}

const REPO_ROOT = new URL("../", import.meta.url).pathname;
const BENCH_DIR = new URL("./", import.meta.url).pathname;

const HELP = `deno task bench [options]

Runs every scenario against our servers and the references, prints the
tables, and writes RESULTS.md, results.svg and results.json.

  --duration S   seconds per measured run (default 5)
  --runs N       measured runs per server; the median is kept (default 3)
  --threads N    wrk threads (default 2)
  --warmup S     seconds of warm-up before measuring, 0 for none (default 1)
  --only LIST    comma-separated scenario ids or prefixes (tiny, files, board,
                 board-post...): ${
  SCENARIOS.map((s) => s.id).join(", ").replace(
    /(.{40,}?), /g,
    "$1,\n                 ",
  )
}
  --quick        smoke check: 1 run of 2 s, 1 s warm-up
  --servers DIR  folder with our three scripts (default: the repository root)
  --out DIR      where to write RESULTS.md, results.svg and results.json
                 (default bench/ for a full run, which also refreshes the
                 README's summary; bench/out/ with --quick, --only or fewer or
                 shorter runs, so published results always come from a full run)
  --help         this text
`;

/** Reads the command line into options; throws on a bad value. */
export function parseBenchArgs(args: string[]): BenchOptions | "help" {
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: "string" },
      runs: { type: "string" },
      threads: { type: "string" },
      warmup: { type: "string" },
      only: { type: "string", multiple: true },
      quick: { type: "boolean", default: false },
      servers: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return "help";
  const number = (
    name: string,
    text: string | undefined,
    fallback: number,
    min: number,
  ) => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min) {
      throw new Error(`--${name} needs a number >= ${min}, got "${text}"`);
    }
    return value;
  };
  const quick = values.quick;
  const duration = number("duration", values.duration, quick ? 2 : 5, 1);
  const runs = Math.round(number("runs", values.runs, quick ? 1 : 3, 1));
  const only = (values.only ?? []).flatMap((list) => list.split(",")).map((s) =>
    s.trim()
  ).filter(
    Boolean,
  );
  const complete = !quick && only.length === 0 && duration >= 5 && runs >= 3;
  return {
    duration,
    runs,
    threads: Math.round(number("threads", values.threads, 2, 1)),
    warmup: number("warmup", values.warmup, 1, 0),
    only,
    serversDir: values.servers ?? REPO_ROOT,
    outDir: values.out ?? (complete ? BENCH_DIR : join(BENCH_DIR, "out")),
  };
}

/** Prints a progress line at once (stderr, so the table on stdout stays clean). */
function log(line: string): void {
  console.error(line);
}

/** The data every scenario needs, prepared once per benchmark run. */
interface Prepared {
  tempDir: string;
  siteDir: string;
  /** Message count -> JSON Lines seed file. */
  seeds: Map<number, string>;
  /** Scenario id -> generated wrk script. */
  scripts: Map<string, string>;
  /** The throwaway PostgreSQL, when a selected server needs it and it is installed. */
  postgres?: PgServer;
}

async function prepareData(
  tempDir: string,
  scenarios: ScenarioDef[],
  serversDir: string,
): Promise<Prepared> {
  const siteDir = join(tempDir, "site");
  await Deno.mkdir(siteDir);
  if (scenarios.some((s) => s.id.startsWith("files"))) {
    log(
      `preparing files in ${siteDir} (${
        SITE_FILES.large.size / 1024 ** 2
      } MiB)`,
    );
    await writeSiteFiles(siteDir);
  }
  const seeds = new Map<number, string>();
  for (
    const count of new Set(scenarios.flatMap((s) => s.boardMessages ?? []))
  ) {
    const seed = join(tempDir, `messages-${count}.jsonl`);
    log(`preparing ${count.toLocaleString("en-US")} stored messages`);
    await writeBoardData(seed, count);
    seeds.set(count, seed);
  }
  const scripts = new Map<string, string>();
  for (const scenario of scenarios) {
    if (scenario.postBody === undefined) continue;
    const script = join(tempDir, `${scenario.id}.lua`);
    await Deno.writeTextFile(script, renderPostScript(scenario.postBody));
    scripts.set(scenario.id, script);
  }
  const prepared: Prepared = { tempDir, siteDir, seeds, scripts };
  const pgScenario = scenarios.find((s) =>
    s.servers.some((server) => server.postgres)
  );
  if (pgScenario) {
    const pgServer = pgScenario.servers.find((server) => server.postgres)!;
    if (await pgServer.unavailable(serversDir) === null) {
      log("starting a throwaway PostgreSQL (initdb, pg_ctl on 127.0.0.1)");
      try {
        postgres = await startPostgres();
        // One board start creates the tables, which the seeding then fills before each start.
        const context = await newContext(
          { ...prepared, postgres },
          pgScenario,
          serversDir,
        );
        await stopServer(
          await startServer(await OUR_BOARD_PG_1.launch(context)),
        );
        prepared.postgres = postgres;
      } catch (error) {
        if (interrupted) throw error;
        // The other scenarios still run; each PostgreSQL row fails with a line saying why.
        log(
          `PostgreSQL could not be set up: ${
            error instanceof Error ? error.message : error
          }`,
        );
      }
    }
  }
  return prepared;
}

let startCount = 0;
/** Set by Ctrl-C: what fails after it is the shutdown, not a server. */
let interrupted = false;
/** The shutdown after Ctrl-C, which ends the process; an error it causes must wait for it. */
let stopping: Promise<void> | undefined;
/** Temporary folders to remove on the way out, also after Ctrl-C. */
const tempDirs = new Set<string>();
/** The throwaway PostgreSQL (started with pg_ctl, so not a child `stopAll` knows). */
let postgres: PgServer | undefined;

/** Stops the throwaway PostgreSQL and removes every temporary folder. */
async function removeTempDirs(): Promise<void> {
  const pg = postgres;
  postgres = undefined;
  await pg?.destroy().catch((error) =>
    log(`could not stop PostgreSQL: ${error.message}`)
  );
  for (const dir of tempDirs) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    tempDirs.delete(dir);
  }
}

/** A fresh context: a free port and an empty folder for one server start. */
async function newContext(
  prepared: Prepared,
  scenario: ScenarioDef,
  serversDir: string,
) {
  const workDir = join(prepared.tempDir, `start-${++startCount}`);
  await Deno.mkdir(workDir);
  const context: LaunchContext = {
    port: findFreePort(),
    serversDir,
    siteDir: prepared.siteDir,
    workDir,
    seedFile: scenario.boardMessages
      ? prepared.seeds.get(scenario.boardMessages)
      : undefined,
    databaseUrl: prepared.postgres?.url,
  };
  return context;
}

async function countLines(path: string): Promise<number> {
  const bytes = await Deno.readFile(path);
  let lines = 0;
  for (const byte of bytes) if (byte === 10) lines++;
  return lines;
}

/**
 * Drives the servers on `ports` with wrk for `duration` seconds: one wrk per port, all at
 * the same time, sharing the scenario's connections and threads; their reports combined.
 */
async function wrkRun(
  prepared: Prepared,
  scenario: ScenarioDef,
  ports: number[],
  duration: number,
  threads: number,
) {
  const connections = Math.floor(scenario.connections / ports.length);
  const results = await Promise.all(ports.map((port) =>
    runWrk({
      url: `http://127.0.0.1:${port}${scenario.path}`,
      duration,
      connections,
      threads: Math.max(
        1,
        Math.min(Math.floor(threads / ports.length), connections),
      ),
      headers: scenario.headers,
      script: prepared.scripts.get(scenario.id),
      timeout: scenario.timeout,
    }, track)
  ));
  return combineWrkResults(results);
}

/**
 * Sends the scenario's request once and checks the answer (status, and the
 * body length for files), so a server that answers the wrong thing fast is
 * never measured as fast.
 */
async function checkAnswer(
  scenario: ScenarioDef,
  server: ServerDef,
  port: number,
): Promise<void> {
  const url = `http://127.0.0.1:${port}${scenario.path}`;
  const post = scenario.postBody !== undefined;
  const response = await fetch(url, {
    method: post ? "POST" : "GET",
    headers: post
      ? { "content-type": "application/x-www-form-urlencoded" }
      : {},
    body: scenario.postBody,
    redirect: "manual",
    signal: AbortSignal.timeout(scenario.timeout * 1000),
  });
  let bytes = 0;
  for await (const chunk of response.body ?? []) bytes += chunk.length;
  const expected = expectedStatus(scenario, server);
  const request = `${post ? "POST" : "GET"} ${scenario.path}`;
  if (response.status !== expected) {
    throw new Error(
      `${request} answered ${response.status}, expected ${expected}`,
    );
  }
  if (scenario.expectBytes !== undefined && bytes !== scenario.expectBytes) {
    throw new Error(
      `${request} sent ${bytes} bytes, expected ${scenario.expectBytes}`,
    );
  }
}

function describeRun(result: WrkResult): string {
  const mib = (result.bytesPerSec / 1024 ** 2).toFixed(1);
  const p99 = result.latencyP99Ms === null
    ? ""
    : `, p99 ${result.latencyP99Ms} ms`;
  const errors = result.errors ? `, ${result.errors} errors` : "";
  return `${
    Math.round(result.requestsPerSec)
  } req/s, ${mib} MiB/s${p99}${errors}`;
}

/** Runs one scenario against one server: warm-up, measured runs, peak memory. */
async function measureServer(
  options: BenchOptions,
  prepared: Prepared,
  scenario: ScenarioDef,
  server: ServerDef,
): Promise<ServerResult> {
  const runs: WrkResult[] = [];
  let peak: number | null = null;
  let storedAtEnd = 0;
  let lost = 0;
  const starts = scenario.freshEachRun ? options.runs : 1;
  const instances = server.instances ?? 1;
  const databaseUrl = prepared.postgres?.url;
  for (let start = 0; start < starts; start++) {
    const contexts: LaunchContext[] = [];
    for (let i = 0; i < instances; i++) {
      contexts.push(await newContext(prepared, scenario, options.serversDir));
    }
    const context = contexts[0];
    const ports = contexts.map((c) => c.port);
    if (server.postgres) {
      if (databaseUrl === undefined) {
        throw new Error("the throwaway PostgreSQL is not running");
      }
      await runPsql(databaseUrl, renderPgSeed(scenario.boardMessages ?? 0));
    }
    const servers: RunningServer[] = [];
    const idle = () => Promise.all(servers.map(waitUntilIdle));
    try {
      for (const c of contexts) {
        servers.push(await startServer(await server.launch(c)));
      }
      for (const port of ports) await checkAnswer(scenario, server, port);
      if (!scenario.freshEachRun && options.warmup > 0) {
        await wrkRun(
          prepared,
          scenario,
          ports,
          options.warmup,
          options.threads,
        );
        await idle();
      }
      for (let i = 0; i < (scenario.freshEachRun ? 1 : options.runs); i++) {
        const result = await wrkRun(
          prepared,
          scenario,
          ports,
          options.duration,
          options.threads,
        );
        await idle();
        log(`    run ${runs.length + 1}: ${describeRun(result)}`);
        if (result.errors > result.requests / 100) {
          log(
            `    WARNING: ${result.errors} errors for ${result.requests} answers: this figure is not a fair one`,
          );
        }
        runs.push(result);
      }
      // Several processes: the largest of them (each holds the same page and pool).
      for (const running of servers) {
        const memory = await readPeakMemory(running);
        if (memory !== null) peak = Math.max(peak ?? 0, memory);
      }
    } finally {
      await Promise.all(servers.map(stopServer));
    }
    if (
      scenario.postBody !== undefined && scenario.boardMessages !== undefined
    ) {
      // The check's one post per process, plus every post wrk saw answered.
      const acknowledged = scenario.boardMessages + instances +
        runs.at(-1)!.requests;
      let stored = acknowledged;
      if (server.ourBoard) {
        // Every 303 means "stored": the file or table must hold every acknowledged post.
        stored = server.postgres
          ? await countPgMessages(databaseUrl!)
          : await countLines(join(context.workDir, "messages.jsonl"));
        if (stored < acknowledged) {
          log(
            `    WARNING: ${stored} messages stored but ${acknowledged} acknowledged`,
          );
          lost += acknowledged - stored;
        }
      }
      storedAtEnd = Math.max(storedAtEnd, stored);
    }
  }
  const medianOf = (pick: (r: WrkResult) => number | null) => {
    const values = runs.map(pick).filter((v): v is number => v !== null);
    return values.length ? median(values) : null;
  };
  return {
    key: server.key,
    label: server.label,
    role: server.role,
    runs: runs.length,
    samples: runs.map((r) => r.requestsPerSec),
    requestsPerSec: medianOf((r) => r.requestsPerSec)!,
    bytesPerSec: medianOf((r) => r.bytesPerSec)!,
    p50Ms: medianOf((r) => r.latencyP50Ms),
    p99Ms: medianOf((r) => r.latencyP99Ms),
    peakMemoryBytes: peak,
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    note: [
      instances > 1
        ? `${instances} wrk at once, req/s summed, p50/p99 the worse`
        : "",
      storedAtEnd
        ? `${scenario.boardMessages!.toLocaleString("en-US")} → ${
          storedAtEnd.toLocaleString("en-US")
        } stored${lost ? `, ${lost} acknowledged posts LOST` : ""}`
        : "",
    ].filter(Boolean).join("; ") || undefined,
  };
}

async function readMachine(): Promise<BenchReport["machine"]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const memoryKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? 0);
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ??
      "unknown CPU",
    memoryBytes: memoryKiB * 1024,
    kernel: Deno.osRelease(),
  };
}

/** First match of `pattern` in what a command prints, or "not installed". */
async function versionOf(
  command: string,
  args: string[],
  pattern: RegExp,
): Promise<string> {
  try {
    const { stdout, stderr } = await new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const text = new TextDecoder().decode(stdout) +
      new TextDecoder().decode(stderr);
    return pattern.exec(text)?.[1] ?? "unknown";
  } catch {
    return "not installed";
  }
}

async function readVersions(): Promise<Record<string, string>> {
  return {
    Deno: Deno.version.deno,
    nginx: await versionOf("nginx", ["-v"], /nginx\/(\S+)/),
    Python: await versionOf("python3", ["--version"], /Python (\S+)/),
    wrk: await versionOf("wrk", ["-v"], /wrk (\S+)/),
  };
}

/** Lays the written files out as `deno fmt` would (it formats SVG too), so `deno task check` passes. */
async function formatFiles(paths: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    // --no-config: deno.json excludes bench/out/, where partial runs write.
    args: ["fmt", "--quiet", "--no-config", "--line-width", "100", ...paths],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    log(
      `deno fmt could not format the results: ${
        new TextDecoder().decode(stderr).trim()
      }`,
    );
  }
}

/** Runs the selected scenarios and returns the report (does not write files). */
export async function runBenchmark(
  options: BenchOptions,
  command: string,
): Promise<BenchReport> {
  const started = Date.now();
  const scenarios = selectScenarios(SCENARIOS, options.only);
  const tempDir = await Deno.makeTempDir({ prefix: "deno-servers-bench-" });
  tempDirs.add(tempDir);
  // nginx's worker runs as an unprivileged user and must read the site files.
  await Deno.chmod(tempDir, 0o755);
  const skipped: string[] = [];
  const results: ScenarioResult[] = [];
  try {
    const prepared = await prepareData(tempDir, scenarios, options.serversDir);
    for (const scenario of scenarios) {
      log(`\n${scenario.title} (${scenario.load})`);
      const scenarioResult: ScenarioResult = {
        id: scenario.id,
        title: scenario.title,
        load: scenario.load,
        metric: scenario.metric,
        results: [],
      };
      for (const server of scenario.servers) {
        const reason = await server.unavailable(options.serversDir);
        if (reason) {
          log(`  skipped ${server.label}: ${reason}`);
          skipped.push(
            `${scenario.title}: ${server.label} skipped, ${reason}.`,
          );
          continue;
        }
        log(`  ${server.label}`);
        try {
          const began = Date.now();
          scenarioResult.results.push(
            await measureServer(options, prepared, scenario, server),
          );
          log(`    (${((Date.now() - began) / 1000).toFixed(1)} s)`);
        } catch (error) {
          if (interrupted) throw error;
          const message = error instanceof Error
            ? error.message
            : String(error);
          log(`  FAILED ${server.label}: ${message}`);
          skipped.push(
            `${scenario.title}: ${server.label} failed, ${
              message.split("\n")[0]
            }`,
          );
        }
      }
      results.push(scenarioResult);
    }
  } finally {
    await stopAll();
    await removeTempDirs();
  }
  return {
    date: new Date(started).toISOString(),
    machine: await readMachine(),
    versions: await readVersions(),
    command,
    settings: {
      duration: options.duration,
      runs: options.runs,
      threads: options.threads,
    },
    scenarios: results,
    targets: checkTargets(results),
    skipped,
    elapsedSeconds: (Date.now() - started) / 1000,
  };
}

async function main(): Promise<void> {
  const options = parseBenchArgs(Deno.args);
  if (options === "help") {
    console.log(HELP);
    return;
  }
  const wrk = await versionOf("wrk", ["-v"], /wrk (\S+)/);
  if (wrk === "not installed") {
    console.error("wrk is not installed: apt-get install wrk");
    Deno.exit(1);
  }
  const stop = async (signal: Deno.Signal) => {
    interrupted = true;
    log(`\n${signal}: stopping every server the benchmark started`);
    await stopAll();
    await removeTempDirs();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", () => stopping ??= stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stopping ??= stop("SIGTERM"));

  const command = ["deno task bench", ...Deno.args].join(" ");
  const report = await runBenchmark(options, command);

  const chartFile = "results.svg";
  await Deno.mkdir(options.outDir, { recursive: true });
  const resultsPath = join(options.outDir, "RESULTS.md");
  const chartPath = join(options.outDir, chartFile);
  await Deno.writeTextFile(
    resultsPath,
    renderResultsMarkdown(report, chartFile),
  );
  // The raw figures too, for anyone who wants to draw their own comparison.
  await Deno.writeTextFile(
    join(options.outDir, "results.json"),
    JSON.stringify(report, null, 2) + "\n",
  );
  await Deno.writeTextFile(
    chartPath,
    renderSvgChart(
      computeRatios(report.scenarios),
      "Our servers against the references",
      chartTargets(),
    ),
  );

  const written = [
    resultsPath,
    chartPath,
    join(options.outDir, "results.json"),
  ];
  if (resolve(options.outDir) === resolve(BENCH_DIR)) {
    // A full run into bench/ also refreshes the README's summary, so the two always agree.
    const readmePath = join(REPO_ROOT, "README.md");
    const readme = await Deno.readTextFile(readmePath);
    const { start, end } = README_MARKERS;
    const updated = replaceBetween(
      readme,
      start,
      end,
      renderReadmeSummary(report),
    );
    if (updated === null) {
      log(
        `README.md has no "${start}" ... "${end}" lines: its summary was not updated`,
      );
    } else {
      await Deno.writeTextFile(readmePath, updated);
      written.push(readmePath);
    }
  }
  await formatFiles(written);

  // Print the tables as written, columns aligned by deno fmt.
  const results = await Deno.readTextFile(resultsPath);
  const from = results.indexOf("## Results");
  const to = results.indexOf("## How the runner measures");
  console.log(
    from >= 0 && to > from
      ? `\n${results.slice(from, to).trim()}`
      : `\n${renderResultsTable(report.scenarios)}\n\n${
        renderTargetsTable(report.targets)
      }`,
  );
  const where = (path: string) => relative(Deno.cwd(), path) || path;
  console.log(
    `\nWrote ${where(resultsPath)}, ${where(chartPath)} and results.json in ${
      Math.round(report.elapsedSeconds)
    } s.`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    // After Ctrl-C the error is the shutdown's doing: let it finish (it exits) rather than
    // leave the database's folder behind.
    if (stopping) await stopping;
    await stopAll();
    await removeTempDirs();
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
