#!/usr/bin/env -S deno run --allow-all
/**
 * The benchmark: our three servers against the runtime's floor and the servers our users
 * would pick instead.
 *
 * ```sh
 * deno task bench                      # full run: writes bench/RESULTS.md, results.svg, results.json
 * deno task bench --update-readme      # then: the README's summary from bench/results.json
 * deno task bench --quick              # 1 run of 2 s each, written to bench/out/
 * deno task bench --only files-small --runs 5 --duration 10
 * ```
 *
 * For every scenario it starts each server on a free port on 127.0.0.1, checks its answer
 * and warms it up; then drives the servers with wrk for a bounded time (or downloads the big
 * file with curl, one at a time), in turns, several times, and keeps each one's median; reads
 * each server's peak memory, and stops it (bench/measure.ts). A peer that is not installed
 * is skipped with a line, and so is any of our scripts that does not exist yet. Every
 * process it started is stopped on error and on Ctrl-C. Needs wrk and curl.
 *
 * It runs with --allow-all because it starts other programs (wrk, curl, nginx, npm, ...);
 * the servers themselves run with their own narrow flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, relative, resolve } from "node:path";
import { chartTargets, renderSvgChart } from "./chart.ts";
import {
  cleanUp,
  log,
  runBenchmark,
  type RunSettings,
  versionOf,
} from "./measure.ts";
import {
  README_MARKERS,
  renderReadmeSummary,
  replaceBetween,
} from "./readme.ts";
import {
  type BenchReport,
  computeRatios,
  renderResultsMarkdown,
  renderResultsTable,
  renderTargetsTable,
} from "./report.ts";
import { SCENARIOS, TARGETS } from "./scenarios.ts";

/** Settings of one benchmark run, from the command line. */
export interface BenchOptions extends RunSettings {
  /** Where RESULTS.md, results.svg and results.json go. @default bench/ for a full run, bench/out/ otherwise */
  outDir: string;
  /** Instead of measuring: rewrite the README's summary from `outDir`'s results.json. */
  updateReadme: boolean;
}

const REPO_ROOT = new URL("../", import.meta.url).pathname;
const BENCH_DIR = new URL("./", import.meta.url).pathname;

const HELP = `deno task bench [options]

Runs every scenario against our servers, the floors and the peers, prints the
tables, and writes RESULTS.md, results.svg and results.json.

  --duration S     seconds per measured run (default 5)
  --runs N         measured runs per server; the median is kept (default 3)
  --threads N      wrk threads (default 2)
  --warmup S       seconds of warm-up before measuring, 0 for none (default 1)
  --only LIST      comma-separated scenario ids or prefixes (tiny, files, board,
                   board-post...): ${
  SCENARIOS.map((s) => s.id).join(", ").replace(
    /(.{40,}?), /g,
    "$1,\n                   ",
  )
}
  --quick          smoke check: 1 run of 2 s, 1 s warm-up
  --servers DIR    folder with our scripts (default: the repository root)
  --out DIR        where to write RESULTS.md, results.svg and results.json
                   (default bench/ for a full run; bench/out/ with --quick,
                   --only or fewer or shorter runs, so published results
                   always come from a full run)
  --note TEXT      a line on the run's conditions, printed in RESULTS.md
  --update-readme  measure nothing: write the README's summary from the
                   results.json in --out (default bench/)
  --help           this text
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
      note: { type: "string" },
      "update-readme": { type: "boolean", default: false },
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
  const only = (values.only ?? []).flatMap((list) => list.split(","))
    .map((s) => s.trim()).filter(Boolean);
  const updateReadme = values["update-readme"];
  const complete = updateReadme ||
    (!quick && only.length === 0 && duration >= 5 && runs >= 3);
  return {
    duration,
    runs,
    threads: Math.round(number("threads", values.threads, 2, 1)),
    warmup: number("warmup", values.warmup, 1, 0),
    only,
    serversDir: values.servers ?? REPO_ROOT,
    outDir: values.out ?? (complete ? BENCH_DIR : join(BENCH_DIR, "out")),
    updateReadme,
    note: values.note,
  };
}

/** Lays the written files out as `deno fmt` would (it formats SVG too), so `deno task check` passes. */
async function formatFiles(paths: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    // --no-config: deno.json excludes bench/out/, where partial runs write.
    args: ["fmt", "--quiet", "--no-config", ...paths],
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

/** The shutdown after Ctrl-C, which ends the process; an error it causes must wait for it. */
let stopping: Promise<void> | undefined;

/** Rewrites the README's summary from `outDir`'s results.json. */
async function updateReadme(outDir: string): Promise<void> {
  const report: BenchReport = JSON.parse(
    await Deno.readTextFile(join(outDir, "results.json")),
  );
  const readmePath = join(REPO_ROOT, "README.md");
  const { start, end } = README_MARKERS;
  const updated = replaceBetween(
    await Deno.readTextFile(readmePath),
    start,
    end,
    renderReadmeSummary(report),
  );
  if (updated === null) {
    throw new Error(`README.md has no "${start}" ... "${end}" lines`);
  }
  await Deno.writeTextFile(readmePath, updated);
  await formatFiles([readmePath]);
  console.log(`Wrote the summary of the ${report.date} run into README.md.`);
}

async function main(): Promise<void> {
  const options = parseBenchArgs(Deno.args);
  if (options === "help") {
    console.log(HELP);
    return;
  }
  if (options.updateReadme) return await updateReadme(options.outDir);
  for (
    const [tool, args] of [["wrk", ["-v"]], ["curl", ["--version"]]] as const
  ) {
    if (await versionOf(tool, [...args], /(.)/) === "not installed") {
      console.error(`${tool} is not installed: apt-get install ${tool}`);
      Deno.exit(1);
    }
  }
  const stop = async (signal: Deno.Signal) => {
    log(`\n${signal}: stopping every server the benchmark started`);
    await cleanUp({ interrupt: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", () => stopping ??= stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stopping ??= stop("SIGTERM"));

  // The command that reproduces the run (the note describes it, it is not part of it).
  const args = Deno.args.filter((arg, i, all) =>
    arg !== "--note" && all[i - 1] !== "--note" && !arg.startsWith("--note=")
  );
  const command = ["deno task bench", ...args].join(" ");
  const report = await runBenchmark(options, command);

  const chartFile = "results.svg";
  await Deno.mkdir(options.outDir, { recursive: true });
  const resultsPath = join(options.outDir, "RESULTS.md");
  const chartPath = join(options.outDir, chartFile);
  const jsonPath = join(options.outDir, "results.json");
  await Deno.writeTextFile(
    resultsPath,
    renderResultsMarkdown(report, chartFile),
  );
  // The raw figures too, for anyone who wants to draw their own comparison.
  await Deno.writeTextFile(jsonPath, JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(
    chartPath,
    renderSvgChart(
      computeRatios(report.scenarios),
      "Our servers against the floors and the peers",
      chartTargets(TARGETS, report.scenarios),
    ),
  );
  await formatFiles([resultsPath, chartPath, jsonPath]);

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
    } s.` +
      (resolve(options.outDir) === resolve(BENCH_DIR)
        ? " `deno task bench --update-readme` puts its summary into README.md."
        : ""),
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    // After Ctrl-C the error is the shutdown's doing: let it finish (it exits) rather than
    // leave the database's folder behind.
    if (stopping) await stopping;
    await cleanUp();
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
