#!/usr/bin/env -S deno run --allow-all
/**
 * The benchmark: our three servers against the runtime's floor and the servers our users
 * would pick instead.
 *
 * ```sh
 * deno task bench                  # full run: writes bench/RESULTS.md, results.svg, results.json
 * deno task bench --update-readme  # then: the README's summary from bench/results.json
 * deno task bench --quick          # 1 run of 2 s each, written to bench/out/
 * deno task bench --only files-small --runs 5 --duration 10
 * ```
 *
 * For every scenario (bench/scenarios.ts) it starts each server (bench/servers.ts) on a
 * free port of 127.0.0.1, checks its answer, warms it up, drives it with wrk (or
 * downloads the big file with curl), in turns with the others, several times, and keeps
 * the medians and peak memory (bench/measure.ts); then writes the report
 * (bench/report.ts, bench/chart.ts). A peer that is not installed is skipped with a line.
 * Every process it started is stopped on error and on Ctrl-C. Needs wrk and curl.
 *
 * It runs with --allow-all because it starts other programs (wrk, curl, nginx, npm, ...);
 * the servers themselves run with their own narrow flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, relative, resolve } from "node:path";
import { renderSvgChart } from "./chart.ts";
import {
  cleanUp,
  log,
  runBenchmark,
  type RunSettings,
  versionOf,
} from "./measure.ts";
import {
  type BenchReport,
  computeRatios,
  README_MARKERS,
  renderReadmeSummary,
  renderResultsMarkdown,
  replaceBetween,
} from "./report.ts";
import { SCENARIOS, selectScenarios, TARGETS } from "./scenarios.ts";

/** Settings of one benchmark run, from the command line. */
export interface BenchOptions extends RunSettings {
  /** Scenario ids or prefixes to run; empty runs all. */
  only: string[];
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
  --only LIST      comma-separated scenario ids or prefixes (tiny, files, board,
                   board-post, ...): ${SCENARIOS.map((s) => s.id).join(", ")}
  --quick          smoke check: 1 run of 2 s
  --out DIR        where to write the results (default bench/ for a full run;
                   bench/out/ for --quick, --only or fewer or shorter runs, so
                   published results always come from a full run)
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
      only: { type: "string", multiple: true },
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      note: { type: "string" },
      "update-readme": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return "help";
  const number = (name: string, text: string | undefined, fallback: number) => {
    const value = Number(text ?? fallback);
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`--${name} needs a whole number >= 1, got "${text}"`);
    }
    return value;
  };
  const { quick } = values;
  const duration = number("duration", values.duration, quick ? 2 : 5);
  const runs = number("runs", values.runs, quick ? 1 : 3);
  const only = (values.only ?? []).flatMap((list) => list.split(",")).map((s) =>
    s.trim()
  )
    .filter(Boolean);
  const updateReadme = values["update-readme"];
  const complete = updateReadme ||
    (!quick && only.length === 0 && duration >= 5 && runs >= 3);
  return {
    duration,
    runs,
    warmup: 1,
    only,
    outDir: values.out ?? (complete ? BENCH_DIR : join(BENCH_DIR, "out")),
    updateReadme,
    note: values.note,
  };
}

/** Lays the written files out as `deno fmt` would (it formats SVG too), so `deno task check` passes. */
async function formatFiles(paths: string[]): Promise<void> {
  // --no-config: deno.json excludes bench/out/, where partial runs write.
  const args = ["fmt", "--quiet", "--no-config", ...paths];
  const { success, stderr } = await new Deno.Command(Deno.execPath(), { args })
    .output();
  if (!success) {
    log(
      `deno fmt could not format the results: ${
        new TextDecoder().decode(stderr)
      }`,
    );
  }
}

/** Rewrites the README's summary from `outDir`'s results.json. */
async function updateReadme(outDir: string): Promise<void> {
  const report: BenchReport = JSON.parse(
    await Deno.readTextFile(join(outDir, "results.json")),
  );
  const readmePath = join(REPO_ROOT, "README.md");
  const { start, end } = README_MARKERS;
  const readme = await Deno.readTextFile(readmePath);
  const updated = replaceBetween(
    readme,
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

/** The shutdown after Ctrl-C, which ends the process; an error it causes must wait for it. */
let stopping: Promise<void> | undefined;

async function main(): Promise<void> {
  const options = parseBenchArgs(Deno.args);
  if (options === "help") return console.log(HELP);
  if (options.updateReadme) return await updateReadme(options.outDir);
  const scenarios = selectScenarios(SCENARIOS, options.only);
  for (const tool of ["wrk", "curl"]) {
    if (await versionOf(tool, ["--version"], /(.)/) === "not installed") {
      throw new Error(`${tool} is not installed: apt-get install ${tool}`);
    }
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () =>
      stopping ??= (async () => {
        log(`\n${signal}: stopping every server the benchmark started`);
        await cleanUp({ interrupt: true });
        Deno.exit(130);
      })());
  }
  // The command that reproduces the run (the note describes it, it is not part of it).
  const args = Deno.args.filter((arg, i, all) =>
    arg !== "--note" && all[i - 1] !== "--note" && !arg.startsWith("--note=")
  );
  const report = await runBenchmark(
    options,
    scenarios,
    ["deno task bench", ...args].join(" "),
  );

  await Deno.mkdir(options.outDir, { recursive: true });
  const [results, chart, json] = ["RESULTS.md", "results.svg", "results.json"]
    .map((name) => join(options.outDir, name));
  await Deno.writeTextFile(
    results,
    renderResultsMarkdown(report, "results.svg"),
  );
  // The raw figures too, for anyone who wants to draw their own comparison.
  await Deno.writeTextFile(json, JSON.stringify(report, null, 2) + "\n");
  const ratios = computeRatios(report.scenarios, TARGETS);
  await Deno.writeTextFile(
    chart,
    renderSvgChart(ratios, "Our servers against the floors and the peers"),
  );
  await formatFiles([results, chart, json]);

  // Print the tables as written, columns aligned by deno fmt.
  const text = await Deno.readTextFile(results);
  console.log(
    `\n${
      text.slice(text.indexOf("## Results"), text.indexOf("## How the runner"))
        .trim()
    }`,
  );
  const where = (path: string) => relative(Deno.cwd(), path) || path;
  const published = resolve(options.outDir) === resolve(BENCH_DIR);
  console.log(
    `\nWrote ${where(results)}, ${where(chart)} and results.json in ${
      Math.round(report.elapsedSeconds)
    } s.${
      published
        ? " `deno task bench --update-readme` puts its summary into README.md."
        : ""
    }`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    // After Ctrl-C the error is the shutdown's doing: let it finish (it exits).
    if (stopping) await stopping;
    await cleanUp();
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
