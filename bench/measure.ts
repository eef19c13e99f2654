/**
 * Measuring: preparing the data, starting each server, checking its answer,
 * driving it with wrk or curl in turns with the others of its scenario, reading
 * its peak memory, and stopping it; the report of a whole run. bench/run.ts is
 * the command line around it.
 *
 * @module
 */

import { join } from "node:path";
import { runCurl } from "./curl.ts";
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
  estimateSeconds,
  type PlannedStep,
  Progress,
  runsOf,
} from "./progress.ts";
import {
  type BenchReport,
  checkTargets,
  median,
  type ScenarioResult,
  type ServerResult,
} from "./report.ts";
import {
  expectedStatus,
  renderPostScript,
  type ScenarioDef,
  SCENARIOS,
  selectScenarios,
  TARGETS,
} from "./scenarios.ts";
import {
  type LaunchContext,
  NODE_PEER_VERSIONS,
  OUR_BOARD_PG_1,
  type ProbeContext,
  type ServerDef,
} from "./servers.ts";
import { combineWrkResults, runWrk, type WrkResult } from "./wrk.ts";

/** What a run measures, and how long. */
export interface RunSettings {
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
  /** Folder holding our scripts. @default the repository root */
  serversDir: string;
  /** A line on the run's conditions for RESULTS.md (e.g. what else ran on the machine). */
  note?: string;
}

/** Prints a progress line at once (stderr, so the table on stdout stays clean). */
export function log(line: string): void {
  console.error(line);
}

/** The data every scenario needs, prepared once per benchmark run. */
interface Prepared {
  tempDir: string;
  siteDir: string;
  toolsDir: string;
  /** Message count -> JSON Lines seed file. */
  seeds: Map<number, string>;
  /** Scenario id -> generated wrk script. */
  scripts: Map<string, string>;
  /** The throwaway PostgreSQL, when a selected server needs it and it is installed. */
  postgres?: PgServer;
}

/** One server to measure in one scenario, found available. */
interface Step {
  scenario: ScenarioDef;
  server: ServerDef;
}

/**
 * Asks every server of the selected scenarios whether it can run here (each once: this
 * installs the Node peers), prints a line for each that cannot, and returns the rest.
 */
async function planSteps(
  scenarios: ScenarioDef[],
  probe: ProbeContext,
  skipped: string[],
): Promise<Step[]> {
  const reasons = new Map<ServerDef, Promise<string | null>>();
  if (scenarios.some((s) => s.servers.some((server) => server.javascript))) {
    log(
      `installing ${
        Object.entries(NODE_PEER_VERSIONS).map(([n, v]) => `${n}@${v}`).join(
          ", ",
        )
      } with npm into ${probe.toolsDir}`,
    );
  }
  const steps: Step[] = [];
  for (const scenario of scenarios) {
    for (const server of scenario.servers) {
      if (!reasons.has(server)) reasons.set(server, server.unavailable(probe));
      const reason = await reasons.get(server)!;
      if (reason) {
        log(`skipped ${server.label} in ${scenario.id}: ${reason}`);
        skipped.push(`${scenario.title}: ${server.label} skipped, ${reason}.`);
      } else {
        steps.push({ scenario, server });
      }
    }
  }
  return steps;
}

async function prepareData(
  tempDir: string,
  scenarios: ScenarioDef[],
  steps: Step[],
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
  const toolsDir = join(tempDir, "npm");
  const prepared: Prepared = { tempDir, siteDir, toolsDir, seeds, scripts };
  const pgStep = steps.find((s) => s.server.postgres);
  if (pgStep) {
    log("starting a throwaway PostgreSQL (initdb, pg_ctl on 127.0.0.1)");
    try {
      postgres = await startPostgres();
      // One board start creates the tables, which the seeding then fills before each start.
      const context = await newContext(
        { ...prepared, postgres },
        pgStep.scenario,
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
  return prepared;
}

let startCount = 0;
/** Set by Ctrl-C: what fails after it is the shutdown, not a server. */
let interrupted = false;
/** Temporary folders to remove on the way out, also after Ctrl-C. */
const tempDirs = new Set<string>();
/** The throwaway PostgreSQL (started with pg_ctl, so not a child `stopAll` knows). */
let postgres: PgServer | undefined;

/** Stops every process this run started, the throwaway PostgreSQL, and removes every temporary folder. */
export async function cleanUp({ interrupt = false } = {}): Promise<void> {
  if (interrupt) interrupted = true;
  await stopAll();
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
): Promise<LaunchContext> {
  const workDir = join(prepared.tempDir, `start-${++startCount}`);
  await Deno.mkdir(workDir);
  return {
    port: findFreePort(),
    serversDir,
    siteDir: prepared.siteDir,
    workDir,
    toolsDir: prepared.toolsDir,
    seedFile: scenario.boardMessages
      ? prepared.seeds.get(scenario.boardMessages)
      : undefined,
    databaseUrl: prepared.postgres?.url,
  };
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
): Promise<WrkResult> {
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

/** One download with curl, as a one-request wrk report (its time is the latency). */
async function curlRun(
  scenario: ScenarioDef,
  port: number,
): Promise<WrkResult> {
  const result = await runCurl({
    url: `http://127.0.0.1:${port}${scenario.path}`,
    timeout: scenario.timeout,
    headers: scenario.headers,
  }, track);
  const ms = result.seconds * 1000;
  return {
    requests: 1,
    seconds: result.seconds,
    requestsPerSec: 1 / result.seconds,
    bytesPerSec: result.bytesPerSec,
    latencyAvgMs: ms,
    latencyP50Ms: ms,
    latencyP90Ms: ms,
    latencyP99Ms: ms,
    errors: result.status >= 400 || result.bytes !== scenario.expectBytes
      ? 1
      : 0,
  };
}

/**
 * Sends the scenario's request once with curl and checks the answer (status, and the body
 * length for files), so a server that answers the wrong thing fast is never measured as
 * fast. Resolves the answer's Content-Encoding ("" for none).
 */
async function checkAnswer(
  scenario: ScenarioDef,
  server: ServerDef,
  port: number,
): Promise<string> {
  const answer = await runCurl({
    url: `http://127.0.0.1:${port}${scenario.path}`,
    timeout: scenario.timeout,
    headers: scenario.headers,
    form: scenario.postBody,
  }, track);
  const expected = expectedStatus(scenario, server);
  const request = `${scenario.postBody ? "POST" : "GET"} ${scenario.path}`;
  if (answer.status !== expected) {
    throw new Error(
      `${request} answered ${answer.status}, expected ${expected}`,
    );
  }
  if (
    scenario.expectBytes !== undefined && answer.bytes !== scenario.expectBytes
  ) {
    throw new Error(
      `${request} sent ${answer.bytes} bytes, expected ${scenario.expectBytes}`,
    );
  }
  return answer.encoding;
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

/** One server being measured in one scenario: its processes and what its runs gathered. */
interface Measurement {
  step: Step;
  /** Its place in the plan, for the progress lines. */
  index: number;
  contexts: LaunchContext[];
  servers: RunningServer[];
  runs: WrkResult[];
  peak: number | null;
  encoding: string;
  storedAtEnd: number;
  lost: number;
  /** Why it stopped early; its figures are then left out. */
  failed?: string;
}

/**
 * Starts a server's processes (after seeding the database when `seed`), checks the answer
 * of each, and warms them up unless the scenario starts fresh for every run.
 */
async function startMeasurement(
  options: RunSettings,
  prepared: Prepared,
  m: Measurement,
  seed: boolean,
): Promise<void> {
  const { scenario, server } = m.step;
  m.contexts = [];
  for (let i = 0; i < (server.instances ?? 1); i++) {
    m.contexts.push(await newContext(prepared, scenario, options.serversDir));
  }
  if (seed) await seedDatabase(prepared, scenario);
  for (const context of m.contexts) {
    m.servers.push(await startServer(await server.launch(context)));
  }
  const ports = m.contexts.map((c) => c.port);
  for (const port of ports) {
    m.encoding = await checkAnswer(scenario, server, port);
  }
  if (
    !scenario.freshEachRun && scenario.client !== "curl" && options.warmup > 0
  ) {
    await wrkRun(prepared, scenario, ports, options.warmup, options.threads);
    await Promise.all(m.servers.map(waitUntilIdle));
  }
}

/** Loads the scenario's messages into the throwaway database (our PostgreSQL boards). */
async function seedDatabase(prepared: Prepared, scenario: ScenarioDef) {
  if (prepared.postgres === undefined) {
    throw new Error("the throwaway PostgreSQL is not running");
  }
  await runPsql(
    prepared.postgres.url,
    renderPgSeed(scenario.boardMessages ?? 0),
  );
}

/** One measured run: wrk for the scenario's duration, or one curl download. */
async function measureRun(
  options: RunSettings,
  prepared: Prepared,
  m: Measurement,
): Promise<void> {
  const { scenario } = m.step;
  const ports = m.contexts.map((c) => c.port);
  const result = scenario.client === "curl"
    ? await curlRun(scenario, ports[0])
    : await wrkRun(
      prepared,
      scenario,
      ports,
      options.duration,
      options.threads,
    );
  await Promise.all(m.servers.map(waitUntilIdle));
  log(`    ${describeRun(result)}`);
  if (result.errors > result.requests / 100) {
    log(
      `    WARNING: ${result.errors} errors for ${result.requests} answers: this figure is not a fair one`,
    );
  }
  m.runs.push(result);
}

/**
 * Reads the peak memory and stops the processes; after posts, checks that every post
 * answered as stored is in the data file or table.
 */
async function stopMeasurement(
  prepared: Prepared,
  m: Measurement,
): Promise<void> {
  const { scenario, server } = m.step;
  try {
    // Several processes: the largest of them (each holds the same page and pool).
    for (const running of m.servers) {
      const memory = await readPeakMemory(running);
      if (memory !== null) m.peak = Math.max(m.peak ?? 0, memory);
    }
  } finally {
    await Promise.all(m.servers.map(stopServer));
    m.servers = [];
  }
  if (scenario.postBody === undefined || scenario.boardMessages === undefined) {
    return;
  }
  // The check's one post per process, plus every post wrk saw answered.
  const acknowledged = scenario.boardMessages + m.contexts.length +
    m.runs.at(-1)!.requests;
  let stored = acknowledged;
  if (server.ourBoard) {
    // Every 303 means "stored": the file or table must hold every acknowledged post.
    stored = server.postgres
      ? await countPgMessages(prepared.postgres!.url)
      : await countLines(join(m.contexts[0].workDir, "messages.jsonl"));
    if (stored < acknowledged) {
      log(
        `    WARNING: ${stored} messages stored but ${acknowledged} acknowledged`,
      );
      m.lost += acknowledged - stored;
    }
  }
  m.storedAtEnd = Math.max(m.storedAtEnd, stored);
}

/** A measurement's medians and notes, as the report shows them. */
function summarize(m: Measurement): ServerResult {
  const { scenario, server } = m.step;
  const runs = m.runs;
  const medianOf = (pick: (r: WrkResult) => number | null) => {
    const values = runs.map(pick).filter((v): v is number => v !== null);
    return values.length ? median(values) : null;
  };
  const metric = (r: WrkResult) =>
    scenario.metric === "bytes" ? r.bytesPerSec : r.requestsPerSec;
  const compressed = scenario.headers?.some((h) =>
    /^accept-encoding:/i.test(h)
  );
  const instances = server.instances ?? 1;
  return {
    key: server.key,
    label: server.label,
    role: server.role,
    javascript: server.javascript,
    runs: runs.length,
    samples: runs.map(metric),
    requestsPerSec: medianOf((r) => r.requestsPerSec)!,
    bytesPerSec: medianOf((r) => r.bytesPerSec)!,
    bytesPerResponse: scenario.client === "curl"
      ? scenario.expectBytes ?? null
      : medianOf((r) =>
        r.requests > 0 ? r.bytesPerSec / r.requestsPerSec : null
      ),
    p50Ms: medianOf((r) => r.latencyP50Ms),
    p99Ms: medianOf((r) => r.latencyP99Ms),
    peakMemoryBytes: m.peak,
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    note: [
      compressed ? m.encoding || "not compressed" : "",
      instances > 1
        ? `${instances} wrk at once, req/s summed, p50/p99 the worse`
        : "",
      m.storedAtEnd
        ? `${scenario.boardMessages!.toLocaleString("en-US")} → ${
          m.storedAtEnd.toLocaleString("en-US")
        } stored${m.lost ? `, ${m.lost} acknowledged posts LOST` : ""}`
        : "",
    ].filter(Boolean).join("; ") || undefined,
  };
}

/**
 * Measures every server of one scenario, taking them in turns: run 1 of each, then run 2
 * of each, and so on, so that a change in the machine's load (other work, a noisy
 * neighbour) falls on all of them alike rather than on whoever ran at that moment. Where
 * the data must be fresh for every run, each turn starts the server anew.
 */
async function measureScenario(
  options: RunSettings,
  prepared: Prepared,
  measurements: Measurement[],
  progress: Progress,
  skipped: string[],
): Promise<ServerResult[]> {
  const scenario = measurements[0].step.scenario;
  const runCount = runsOf(scenario, options.runs);
  const attempt = async (m: Measurement, work: () => Promise<void>) => {
    if (m.failed) return;
    try {
      await work();
    } catch (error) {
      if (interrupted) throw error;
      m.failed = error instanceof Error ? error.message : String(error);
      log(`  FAILED ${m.step.server.label}: ${m.failed}`);
      progress.complete(m.index, runCount - m.runs.length);
      await Promise.all(m.servers.map(stopServer));
      m.servers = [];
    }
  };
  const measure = (m: Measurement) =>
    attempt(m, async () => {
      log(progress.line(m.index, m.runs.length + 1));
      await measureRun(options, prepared, m);
      progress.complete(m.index);
    });
  if (scenario.freshEachRun) {
    for (let run = 0; run < runCount; run++) {
      for (const m of measurements) {
        await attempt(
          m,
          () =>
            startMeasurement(options, prepared, m, !!m.step.server.postgres),
        );
        await measure(m);
        await attempt(m, () => stopMeasurement(prepared, m));
      }
    }
  } else {
    // One seeding for the whole scenario: the servers on the database run side by side.
    let seeded = false;
    for (const m of measurements) {
      const seed: boolean = !!m.step.server.postgres && !seeded;
      await attempt(m, () => startMeasurement(options, prepared, m, seed));
      seeded ||= seed;
    }
    for (let run = 0; run < runCount; run++) {
      for (const m of measurements) await measure(m);
    }
    for (const m of measurements) {
      await attempt(m, () => stopMeasurement(prepared, m));
    }
  }
  for (const m of measurements) {
    if (m.failed) {
      skipped.push(
        `${scenario.title}: ${m.step.server.label} failed, ${
          m.failed.split("\n")[0]
        }`,
      );
    }
  }
  return measurements.filter((m) => !m.failed).map(summarize);
}

async function readLoadAverage(): Promise<number> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "0");
  return Number(text.split(" ")[0]) || 0;
}

async function readMachine(
  loadAtStart: number,
): Promise<BenchReport["machine"]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const memoryKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? 0);
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ??
      "unknown CPU",
    memoryBytes: memoryKiB * 1024,
    kernel: Deno.osRelease(),
    loadAverage: [loadAtStart, await readLoadAverage()],
  };
}

/** First match of `pattern` in what a command prints, or "not installed". */
export async function versionOf(
  command: string,
  args: string[],
  pattern: RegExp,
): Promise<string> {
  try {
    const { stdout, stderr } = await new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
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
    Node: await versionOf("node", ["--version"], /v(\S+)/),
    nginx: await versionOf("nginx", ["-v"], /nginx\/(\S+)/),
    Caddy: await versionOf("caddy", ["version"], /v?(\d\S*)/),
    lighttpd: await versionOf("lighttpd", ["-v"], /lighttpd\/(\S+)/),
    Python: await versionOf("python3", ["--version"], /Python (\S+)/),
    wrk: await versionOf("wrk", ["-v"], /wrk (\S+)/),
    curl: await versionOf("curl", ["--version"], /curl (\S+)/),
    ...NODE_PEER_VERSIONS,
    // The exact version its script imports.
    hono: /npm:hono@([\d.]+)/.exec(
      await Deno.readTextFile(
        new URL("./reference/hono_static.ts", import.meta.url),
      ),
    )?.[1] ?? "unknown",
  };
}

/** Runs the selected scenarios and returns the report (does not write files). */
export async function runBenchmark(
  options: RunSettings,
  command: string,
): Promise<BenchReport> {
  const started = Date.now();
  const loadAtStart = await readLoadAverage();
  const scenarios = selectScenarios(SCENARIOS, options.only);
  const tempDir = await Deno.makeTempDir({ prefix: "deno-servers-bench-" });
  tempDirs.add(tempDir);
  // nginx's worker runs as an unprivileged user and must read the site files.
  await Deno.chmod(tempDir, 0o755);
  const skipped: string[] = [];
  const results: ScenarioResult[] = [];
  try {
    const probe = {
      serversDir: options.serversDir,
      toolsDir: join(tempDir, "npm"),
    };
    const steps = await planSteps(scenarios, probe, skipped);
    const prepared = await prepareData(
      tempDir,
      scenarios,
      steps,
      options.serversDir,
    );
    const plan: PlannedStep[] = steps.map(({ scenario, server }) => ({
      scenario: scenario.id,
      server: server.label,
      runs: runsOf(scenario, options.runs),
      seconds: estimateSeconds(scenario, options),
    }));
    const progress = new Progress(plan);
    for (const scenario of scenarios) {
      log(`\n${scenario.title} (${scenario.load})`);
      const measurements = steps.flatMap((step, index): Measurement[] =>
        step.scenario === scenario
          ? [{
            step,
            index,
            contexts: [],
            servers: [],
            runs: [],
            peak: null,
            encoding: "",
            storedAtEnd: 0,
            lost: 0,
          }]
          : []
      );
      results.push({
        id: scenario.id,
        title: scenario.title,
        load: scenario.load,
        metric: scenario.metric,
        results: measurements.length
          ? await measureScenario(
            options,
            prepared,
            measurements,
            progress,
            skipped,
          )
          : [],
      });
    }
  } finally {
    await cleanUp();
  }
  return {
    date: new Date(started).toISOString(),
    machine: await readMachine(loadAtStart),
    versions: await readVersions(),
    command,
    settings: {
      duration: options.duration,
      runs: options.runs,
      threads: options.threads,
    },
    scenarios: results,
    targets: checkTargets(TARGETS, results),
    skipped,
    elapsedSeconds: (Date.now() - started) / 1000,
    ...(options.note ? { note: options.note } : {}),
  };
}
