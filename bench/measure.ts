/**
 * Measuring: preparing the data, starting each server, checking its answer, driving it with wrk
 * or curl in turns with the others of its scenario, reading its peak memory (VmHWM of the process
 * that serves: the child itself, or nginx's one worker), and stopping it; {@link cleanUp} stops
 * every process it started, also after Ctrl-C. bench/run.ts is the command line around it.
 *
 * @module
 */

import { join } from "node:path";
import { findPgBin, type PgServer, startPostgres } from "../tests/_postgres.ts";
import {
  type RunningProcess,
  runProcess,
  startProcess,
} from "../tests/_process.ts";
import * as fixtures from "./fixtures.ts";
import * as parse from "./parse.ts";
import * as report from "./report.ts";
import { pairedServers, type ScenarioDef, TARGETS } from "./scenarios.ts";
import * as servers from "./servers.ts";
import type { LaunchContext, LaunchSpec, ServerDef } from "./servers.ts";

/** What a run measures, and how long. */
export interface RunSettings {
  /** Seconds per measured wrk run. */
  duration: number;
  /** Measured runs per server and scenario; the median is reported. */
  runs: number;
  /** Measured runs, in all, of ours and its paired servers (pairedServers). */
  pairs: number;
  /** Seconds of the warm-up run before the measured ones (0: none). */
  warmup: number;
  /** A line on the run's conditions for RESULTS.md. */
  note?: string;
}

const READY_TIMEOUT_MS = 15_000;
const IDLE_TIMEOUT_MS = 60_000;
/** A bound on wrk, curl and psql, far above any run's length. */
const TOOL_TIMEOUT_MS = 10 * 60_000;
const LOCAL = servers.LOCAL;

/** Prints a progress line at once (stderr: the tables on stdout stay clean). */
export const log = (line: string) => console.error(line);

// Processes, started with the test suite's one spawner (tests/_process.ts).

/** The servers running now, to stop on the way out, also after Ctrl-C. */
const running = new Set<RunningProcess>();
/** The run's temporary folder, to remove on the way out. */
let tempDir: string | undefined;
/** The throwaway PostgreSQL (started by pg_ctl, so not one of `running`). */
let postgres: PgServer | undefined;
/** Set by Ctrl-C: what fails after it is the shutdown, not a server. */
let interrupted = false;

/** Runs a tool (wrk, curl, psql) to its end; resolves what it printed. */
async function runTool(command: string, args: string[]) {
  const options = { timeoutMs: TOOL_TIMEOUT_MS };
  const { code, stdout, stderr } = await runProcess(command, args, options);
  if (code === 0) return stdout.trim();
  throw new Error(`${command} failed (exit ${code}): ${stderr.trim()}`);
}

/** A started server: its process, how it was started, its URL. */
type Running = Awaited<ReturnType<typeof startServer>>;

/** HEAD /: any answer will do (the textbook board draws its page for a GET). */
async function answers(url: string, timeoutMs: number): Promise<boolean> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    await (await fetch(url, { method: "HEAD", signal })).body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/** Starts a server and waits until it answers (not every peer prints its address). */
async function startServer(label: string, spec: LaunchSpec, port: number) {
  const { command, args, cwd, env } = spec;
  const child = await startProcess(command, args, { cwd, env, ready: null });
  running.add(child);
  child.output.finally(() => running.delete(child));
  let exited = false;
  child.output.then(() => exited = true);
  const url = `http://${LOCAL}:${port}/`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!exited && Date.now() < deadline) {
    if (await answers(url, 2000)) return { child, spec, url };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await child.stop();
  const why = exited ? "exited during start-up" : "did not answer in time";
  const output = child.lines.slice(-20).join("\n") || "(none)";
  throw new Error(`${label} ${why}. Its output:\n${output}`);
}

/** Peak memory of the process that serves, in bytes; null when unreadable. */
async function readPeakMemory({ child, spec }: Running) {
  let pid = child.pid;
  if (spec.memoryOfChild) {
    const list = `/proc/${pid}/task/${pid}/children`;
    const children = await Deno.readTextFile(list).catch(() => "");
    pid = Number(children.trim().split(/\s+/)[0]);
  }
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  return parse.parseVmHwm(status);
}

/** Stops every process and the PostgreSQL this run started, removes its folders. */
export async function cleanUp({ interrupt = false } = {}): Promise<void> {
  if (interrupt) interrupted = true;
  await Promise.all([...running].map((child) => child.stop()));
  const pg = postgres;
  postgres = undefined;
  await pg?.destroy().catch((e) => log(`could not stop PostgreSQL: ${e}`));
  if (tempDir) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
  tempDir = undefined;
}

// The clients.

/** Runs psql with `sql` (`--command` or `--file`); resolves what it printed. */
function runPsql(url: string, sql: string[]): Promise<string> {
  const args = ["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"];
  args.push("-v", "ON_ERROR_STOP=1", ...sql, url);
  return runTool(`${findPgBin()}/psql`, args);
}

/** Sends the scenario's request (or form) to the measurement's server once with curl. */
async function runCurl({ scenario, context }: Measurement, form?: string) {
  const { path, timeout = 2, headers } = scenario;
  const url = `http://${LOCAL}:${context!.port}${path}`;
  const args = parse.curlArgs(url, timeout, headers, form);
  return parse.parseCurlWriteOut(await runTool("curl", args));
}

/** Drives the measurement's server with wrk for `duration` seconds. */
async function runWrk(m: Measurement, duration: number, script?: string) {
  const { path, timeout = 2, headers } = m.scenario;
  const url = `http://${LOCAL}:${m.context!.port}${path}`;
  const args = parse.wrkArgs(url, duration, timeout, headers, script);
  return parse.parseWrkOutput(await runTool("wrk", args));
}

/** One download with curl, as a one-request run. */
async function download(m: Measurement): Promise<parse.RunResult> {
  const { status, bytes, seconds, bytesPerSec } = await runCurl(m);
  const errors = status >= 400 || bytes !== m.scenario.expectBytes ? 1 : 0;
  return { requests: 1, requestsPerSec: 1 / seconds, bytesPerSec, errors };
}

/**
 * Sends the scenario's request once and checks the answer (status, and the
 * body's length for files), so a server that answers the wrong thing fast is
 * never measured as fast. Resolves its Content-Encoding ("" for none).
 */
async function checkAnswer(m: Measurement) {
  const { scenario: { path, postBody, expectBytes }, server } = m;
  const answer = await runCurl(m, postBody);
  // A post: our board's 303 See Other once stored, the textbook board's page.
  const expected = postBody !== undefined && server.ourBoard ? 303 : 200;
  const request = `${postBody ? "POST" : "GET"} ${path}`;
  if (answer.status !== expected) {
    throw new Error(`${request} answered ${answer.status}, not ${expected}`);
  }
  if (expectBytes !== undefined && answer.bytes !== expectBytes) {
    throw new Error(`${request} sent ${answer.bytes} B, not ${expectBytes}`);
  }
  return answer.encoding;
}

// The run.

/** What the whole run shares. */
interface Run {
  settings: RunSettings;
  tempDir: string;
  siteDir: string;
  toolsDir: string;
  /** Message count -> JSON Lines seed file. */
  seeds: Map<number, string>;
  /** The throwaway PostgreSQL's URL, once it started. */
  databaseUrl?: string;
  starts: number;
  /** One line per server not measured, with the reason. */
  skipped: string[];
  /** For the time left: each measurement's estimated seconds, how many are done, and since when. */
  plan: number[];
  done: number;
  measuring: number;
}

/** One server measured in one scenario: its process and what its runs gathered. */
interface Measurement {
  scenario: ScenarioDef;
  server: ServerDef;
  /** Its place in the plan, for the progress lines. */
  index: number;
  context?: LaunchContext;
  running?: Running;
  runs: parse.RunResult[];
  /** The turn of each run. */
  turns: number[];
  /** How many runs it gets (plannedRuns). */
  planned: number;
  peak?: number;
  /** The Content-Encoding of its answer ("" for none). */
  encoding?: string;
  /** After posts: the most messages stored at the end of a run. */
  stored?: number;
  lost: number;
  /** Why it stopped early; its figures are then left out. */
  failed?: string;
}

/** A server's runs: ours and its paired servers `pairs` or the scenario's (not posts: 8 s, fresh data). */
export function plannedRuns(
  scenario: ScenarioDef,
  server: ServerDef,
  settings: RunSettings,
) {
  const runs = scenario.pulls ?? settings.runs;
  const paired = pairedServers(scenario, TARGETS);
  const extra = !scenario.postBody && paired.length > 0 &&
    (server.role === "ours" || paired.includes(server));
  const pairs = Math.max(settings.pairs, scenario.pairs ?? 0);
  return extra && settings.pairs > 1 ? Math.max(runs, pairs) : runs;
}

/** Estimated seconds for one server in one scenario (starts, warm-up, `runs` runs), for the time left. */
export function estimateSeconds(
  scenario: ScenarioDef,
  settings: RunSettings,
  runs: number,
) {
  const { duration, warmup } = settings;
  if (scenario.pulls) return 3 + runs * 1.5;
  if (scenario.postBody) return runs * (3 + duration + 0.5);
  return 3 + (warmup && (scenario.warmup ?? warmup)) + runs * (duration + 0.5);
}

/**
 * A scenario's runs, turn by turn: ours first, then its paired servers, then the rest as listed,
 * every other turn backwards (A B, B A, A B ...: none always runs after the same one), each in as
 * many turns as it has runs (`planned`). So ours and its paired servers run back to back in every
 * turn, and alone in the turns after the rest.
 */
export function scheduleTurns<T extends { server: ServerDef; planned: number }>(
  items: T[],
  paired: ServerDef[],
): T[][] {
  const rank = new Map(paired.map((server, i) => [server, i]));
  const place = ({ server }: T) =>
    server.role === "ours" ? -1 : rank.get(server) ?? paired.length;
  const order = items.toSorted((a, b) => place(a) - place(b));
  const turns = Math.max(0, ...items.map((m) => m.planned));
  return Array.from({ length: turns }, (_, turn) => {
    const these = order.filter((m) => turn < m.planned);
    return turn % 2 ? these.reverse() : these;
  });
}

/** Prints the line of a measured run as it starts: which, and the time left. */
function logProgress(run: Run, m: Measurement) {
  const total = run.plan.reduce((a, b) => a + b, 0);
  // The plan's estimate, scaled by how the run so far compares with it.
  const elapsed = (Date.now() - run.measuring) / 1000;
  const pace = run.done >= 20 ? elapsed / run.done : 1;
  const left = (total - run.done) * Math.min(3, Math.max(0.5, pace));
  const step = `[${m.index + 1}/${run.plan.length}] ${m.scenario.id}`;
  const which = `${m.server.label} · run ${m.runs.length + 1} of ${m.planned}`;
  log(`${step} · ${which} · ${report.formatTimeLeft(left)}`);
}

/** A free port and an empty folder for one server start. */
async function newContext(run: Run, scenario: ScenarioDef) {
  const workDir = join(run.tempDir, `start-${++run.starts}`);
  await Deno.mkdir(workDir);
  const listener = Deno.listen({ hostname: LOCAL, port: 0 });
  listener.close();
  const { siteDir, toolsDir, databaseUrl } = run;
  const seedFile = run.seeds.get(scenario.boardMessages ?? 0);
  const port = listener.addr.port;
  return { port, workDir, siteDir, toolsDir, seedFile, databaseUrl };
}

/** Starts a server (on freshly seeded data), checks its answer, and warms it up. */
async function startMeasurement(run: Run, m: Measurement) {
  const { scenario, server } = m;
  const context = m.context = await newContext(run, scenario);
  if (server.postgres) {
    if (!run.databaseUrl) throw new Error("the throwaway PostgreSQL is not up");
    const file = join(context.workDir, "seed.sql");
    const sql = fixtures.renderPgSeed(scenario.boardMessages ?? 0);
    await Deno.writeTextFile(file, sql);
    await runPsql(run.databaseUrl, ["--file", file]);
  }
  const spec = await server.launch(context);
  m.running = await startServer(server.label, spec, context.port);
  m.encoding = await checkAnswer(m);
  const { warmup } = run.settings;
  if (!scenario.postBody && !scenario.pulls && warmup > 0) {
    await runWrk(m, scenario.warmup ?? warmup);
    await answers(m.running.url, IDLE_TIMEOUT_MS);
  }
}

/** One measured run: wrk for the scenario's duration, or one curl download. */
async function measureRun(run: Run, m: Measurement, script?: string) {
  const result = m.scenario.pulls
    ? await download(m)
    : await runWrk(m, run.settings.duration, script);
  // A server that serves one request at a time still has wrk's queue to
  // answer: the next run must not start behind it.
  await answers(m.running!.url, IDLE_TIMEOUT_MS);
  const rate = report.formatCount(result.requestsPerSec);
  const mib = report.formatRate(result.bytesPerSec);
  log(`    ${rate} req/s, ${mib} MiB/s, ${result.errors} errors`);
  if (result.errors > result.requests / 100) {
    log("    WARNING: more than 1% errors: this figure is not a fair one");
  }
  m.runs.push(result);
}

/** Stops the server after reading its peak memory; after posts, checks that every acknowledged post was stored. */
async function stopMeasurement(run: Run, m: Measurement) {
  const { scenario, server } = m;
  const started = m.running;
  m.running = undefined;
  if (!started) return;
  try {
    const memory = await readPeakMemory(started);
    if (memory !== null) m.peak = Math.max(m.peak ?? 0, memory);
  } finally {
    await started.child.stop();
  }
  if (!scenario.postBody || !scenario.boardMessages) return;
  // The check's one post, plus every post wrk saw answered.
  const acknowledged = scenario.boardMessages + 1 + m.runs.at(-1)!.requests;
  let stored = acknowledged;
  if (server.postgres) {
    const count = ["--command", "select count(*) from board_messages;"];
    stored = Number(await runPsql(run.databaseUrl!, count));
  } else if (server.ourBoard) {
    const file = join(m.context!.workDir, "messages.jsonl");
    stored = (await Deno.readTextFile(file)).split("\n").length - 1;
  }
  // Our board answers 303 only once a post is stored: every one must be there.
  if (stored < acknowledged) {
    log(`    WARNING: ${stored} messages stored, ${acknowledged} acknowledged`);
    m.lost += acknowledged - stored;
  }
  m.stored = Math.max(m.stored ?? 0, stored);
}

/** A measurement's medians and notes, as the report shows them. */
function summarize(m: Measurement): report.ServerResult {
  const { scenario, server, runs, stored, lost } = m;
  const medianOf = (pick: (r: parse.RunResult) => number) =>
    report.median(runs.map(pick));
  const count = report.formatCount;
  const compressed = scenario.headers?.some((h) => /^accept-encoding/i.test(h));
  const notes = [];
  if (compressed) notes.push(m.encoding || "not compressed");
  if (stored) {
    const lostPosts = lost ? `, ${lost} acknowledged posts LOST` : "";
    notes.push(
      `${count(scenario.boardMessages!)} → ${count(stored)} stored${lostPosts}`,
    );
  }
  const { key, label, role } = server;
  return {
    ...{ key, label, role },
    samples: runs.map((r) => scenario.pulls ? r.bytesPerSec : r.requestsPerSec),
    turns: m.turns,
    requestsPerSec: medianOf((r) => r.requestsPerSec),
    bytesPerSec: medianOf((r) => r.bytesPerSec),
    bytesPerResponse: medianOf((r) =>
      r.requests ? r.bytesPerSec / r.requestsPerSec : 0
    ),
    peakMemoryBytes: m.peak ?? null,
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    ...(notes.length ? { note: notes.join("; ") } : {}),
  };
}

/**
 * Measures every server of one scenario in the turns of scheduleTurns, so that a change in the
 * machine's load falls on all of them alike. Posts change the data, so there every turn starts
 * the server anew on a fresh copy (and a fresh seeding of the database).
 */
async function measureScenario(run: Run, measurements: Measurement[]) {
  const scenario = measurements[0].scenario;
  const fresh = scenario.postBody !== undefined;
  const script = fresh ? join(run.tempDir, `${scenario.id}.lua`) : undefined;
  if (script) {
    const lua = parse.renderPostScript(scenario.postBody!);
    await Deno.writeTextFile(script, lua);
  }
  const attempt = async (m: Measurement, work: () => Promise<void>) => {
    if (m.failed) return;
    try {
      await work();
    } catch (error) {
      if (interrupted) throw error;
      m.failed = error instanceof Error ? error.message : String(error);
      log(`  FAILED ${m.server.label}: ${m.failed}`);
      const why = m.failed.split("\n")[0];
      run.skipped.push(`${scenario.title}: ${m.server.label} failed, ${why}`);
      run.done += run.plan[m.index] * (m.planned - m.runs.length) / m.planned;
      await m.running?.child.stop();
      m.running = undefined;
    }
  };
  const paired = pairedServers(scenario, TARGETS);
  for (const [turn, order] of scheduleTurns(measurements, paired).entries()) {
    for (const m of order) {
      if (fresh || turn === 0) await attempt(m, () => startMeasurement(run, m));
      await attempt(m, async () => {
        logProgress(run, m);
        await measureRun(run, m, script);
        m.turns.push(turn);
        run.done += run.plan[m.index] / m.planned;
      });
      if (fresh || turn === m.planned - 1) {
        await attempt(m, () => stopMeasurement(run, m));
      }
    }
  }
  return measurements.filter((m) => !m.failed).map(summarize);
}

/** Writes the site's files and the boards' seeds; starts PostgreSQL, its tables made by one board start. */
async function prepareData(run: Run, plan: Measurement[]) {
  if (plan.some((m) => m.scenario.id.startsWith("files"))) {
    const mib = fixtures.SITE_FILES.large.size / 1024 ** 2;
    log(`preparing files in ${run.siteDir} (${mib} MiB)`);
    await fixtures.writeSiteFiles(run.siteDir);
  }
  for (const count of new Set(plan.map((m) => m.scenario.boardMessages ?? 0))) {
    if (count === 0) continue;
    const seed = join(run.tempDir, `messages-${count}.jsonl`);
    log(`preparing ${report.formatCount(count)} stored messages`);
    await fixtures.writeBoardData(seed, count);
    run.seeds.set(count, seed);
  }
  const onPg = plan.find((m) => m.server.postgres);
  if (!onPg) return;
  log("starting a throwaway PostgreSQL (initdb, pg_ctl on 127.0.0.1)");
  try {
    postgres = await startPostgres();
    run.databaseUrl = postgres.url;
    const context = await newContext(run, onPg.scenario);
    const spec = await onPg.server.launch(context);
    const board = await startServer(onPg.server.label, spec, context.port);
    await board.child.stop();
  } catch (error) {
    if (interrupted) throw error;
    // The other scenarios still run; each PostgreSQL row fails with a line saying why.
    run.databaseUrl = undefined;
    log(`PostgreSQL could not be set up: ${error}`);
  }
}

/** Each tool's version for RESULTS.md: the first version-like figure it prints. */
async function readVersions(): Promise<Record<string, string>> {
  const flags = "node --version, nginx -v, caddy version, lighttpd -v, " +
    "python3 --version, wrk -v, curl --version";
  const versions: Record<string, string> = { deno: Deno.version.deno };
  for (const [tool, flag] of flags.split(", ").map((t) => t.split(" "))) {
    const output = await runProcess(tool, [flag]).catch(() => null);
    const text = output ? output.stdout + output.stderr : "";
    versions[tool] = /\d+\.\d+[\w.+~-]*/.exec(text)?.[0] ?? "not installed";
  }
  const hono = new URL("./reference/hono_static.ts", import.meta.url);
  const pinned = /npm:hono@([\d.]+)/.exec(await Deno.readTextFile(hono));
  versions.hono = pinned?.[1] ?? "?";
  return { ...versions, ...servers.NODE_PEER_VERSIONS };
}

/** Runs the scenarios and returns the report (writes no files). */
export async function runBenchmark(
  settings: RunSettings,
  scenarios: ScenarioDef[],
  command: string,
): Promise<report.BenchReport> {
  const started = Date.now();
  const loadAtStart = Deno.loadavg()[0];
  tempDir = await Deno.makeTempDir({ prefix: "deno-servers-bench-" });
  // nginx's worker runs as an unprivileged user and must read the site files.
  await Deno.chmod(tempDir, 0o755);
  const siteDir = join(tempDir, "site");
  await Deno.mkdir(siteDir);
  const run: Run = {
    ...{ settings, tempDir, siteDir, toolsDir: join(tempDir, "npm") },
    ...{ seeds: new Map(), starts: 0, skipped: [], plan: [], done: 0 },
    measuring: 0,
  };
  const results: report.ScenarioResult[] = [];
  try {
    // Ask each server once whether it can run here (this installs the Node peers).
    const reasons = new Map<ServerDef, string | null>();
    for (const server of new Set(scenarios.flatMap((s) => s.servers))) {
      reasons.set(server, await server.unavailable?.(run.toolsDir) ?? null);
    }
    const plan: Measurement[] = [];
    for (const scenario of scenarios) {
      for (const server of scenario.servers) {
        const reason = reasons.get(server);
        if (reason) {
          log(`skipped ${server.label} in ${scenario.id}: ${reason}`);
          run.skipped.push(
            `${scenario.title}: ${server.label} skipped, ${reason}.`,
          );
          continue;
        }
        const planned = plannedRuns(scenario, server, settings);
        const fresh = { runs: [], turns: [], lost: 0 };
        plan.push({ scenario, server, index: plan.length, planned, ...fresh });
        run.plan.push(estimateSeconds(scenario, settings, planned));
      }
    }
    await prepareData(run, plan);
    run.measuring = Date.now();
    for (const scenario of scenarios) {
      log(`\n${scenario.title} (${scenario.load})`);
      const measured = plan.filter((m) => m.scenario === scenario);
      const { id, title, load } = scenario;
      results.push({
        ...{ id, title, load, metric: scenario.pulls ? "bytes" : "requests" },
        results: measured.length ? await measureScenario(run, measured) : [],
      });
    }
  } finally {
    await cleanUp();
  }
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const { duration, runs, pairs, note } = settings;
  return {
    date: new Date(started).toISOString(),
    machine: {
      cpus: navigator.hardwareConcurrency,
      cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown CPU",
      memoryBytes: Deno.systemMemoryInfo().total,
      kernel: Deno.osRelease(),
      loadAverage: [loadAtStart, Deno.loadavg()[0]],
    },
    versions: await readVersions(),
    command,
    settings: { duration, runs, pairs, threads: parse.THREADS },
    scenarios: results,
    targets: report.checkTargets(TARGETS, results),
    skipped: run.skipped,
    elapsedSeconds: (Date.now() - started) / 1000,
    ...(note ? { note } : {}),
  };
}
