#!/usr/bin/env -S deno run --allow-all
/**
 * The benchmark: our three servers against the runtime's floors and the servers our users would
 * pick instead (`deno task bench --help`). It measures each scenario (scenarios.ts) on each server
 * (servers.ts) in measure.ts, then writes the report (report.ts, chart.ts). It runs with
 * --allow-all because it starts other programs (wrk, curl, nginx, npm, ...); our servers run
 * with their own narrow flags.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hasCommand, REPO_ROOT, runProcess } from "../tests/_process.ts";
import { join, relative, resolve } from "node:path";
import { renderSvgChart } from "./chart.ts";
import { cleanUp, log, runBenchmark, type RunSettings } from "./measure.ts";
import * as report from "./report.ts";
import { SCENARIOS, selectScenarios, TARGETS } from "./scenarios.ts";

/** Settings of one benchmark run, from the command line. */
export interface BenchOptions extends RunSettings {
  /** Scenario ids or prefixes to run; empty runs all. */
  only: string[];
  /** Where the results go. @default bench/ for a full run, else bench/out/ */
  outDir: string;
  /** Instead of measuring: write the README's summary from `outDir`. */
  updateReadme: boolean;
}

const BENCH_DIR = new URL("./", import.meta.url).pathname;

const HELP = `deno task bench [options]

Runs every scenario against our servers, the floors and the peers, prints the
tables, and writes RESULTS.md, results.svg and results.json. Needs wrk and curl.

  --duration S     seconds per measured run (default 5)
  --runs N         measured runs per server; the median is kept (default 3)
  --pairs N        runs, in all, of ours and each server a target compares it
                   with, back to back in each turn (default 7)
  --only LIST      comma-separated scenario ids or prefixes (tiny, files,
                   board, board-post, ...):
${SCENARIOS.map((s) => `                     ${s.id}`).join("\n")}
  --quick          smoke check: 1 run of 2 s, no more paired
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
      pairs: { type: "string" },
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
  const { quick, note } = values;
  const duration = number("duration", values.duration, quick ? 2 : 5);
  const runs = number("runs", values.runs, quick ? 1 : 3);
  const pairs = number("pairs", values.pairs, quick ? 1 : 7);
  const lists = (values.only ?? []).flatMap((list) => list.split(","));
  const only = lists.map((s) => s.trim()).filter(Boolean);
  const updateReadme = values["update-readme"];
  const complete = updateReadme ||
    (!quick && only.length === 0 && duration >= 5 && runs >= 3 && pairs >= 7);
  const outDir = values.out ?? (complete ? BENCH_DIR : join(BENCH_DIR, "out"));
  return { duration, runs, pairs, warmup: 1, only, outDir, updateReadme, note };
}

/** Lays the written files out as `deno fmt` would (it formats SVG too). */
async function formatFiles(paths: string[]): Promise<void> {
  // --no-config: deno.json excludes bench/out/, where partial runs write.
  const args = ["fmt", "--quiet", "--no-config", ...paths];
  const { code, stderr } = await runProcess(Deno.execPath(), args);
  if (code) log(`deno fmt could not format the results: ${stderr}`);
}

/** The separate step: rewrites the README's summary from `outDir`'s results.json. */
async function updateReadme(outDir: string): Promise<void> {
  const json = await Deno.readTextFile(join(outDir, "results.json"));
  const run: report.BenchReport = JSON.parse(json);
  const path = join(REPO_ROOT, "README.md");
  const { start, end } = report.README_MARKERS;
  const summary = report.renderReadmeSummary(run);
  const old = await Deno.readTextFile(path);
  const readme = report.replaceBetween(old, start, end, summary);
  if (readme === null) throw new Error(`README.md has no "${start}" line`);
  await Deno.writeTextFile(path, readme);
  await formatFiles([path]);
  console.log(`Wrote the summary of the ${run.date} run into README.md.`);
}

/** The shutdown after Ctrl-C, which exits; an error it causes must wait for it. */
let stopping: Promise<void> | undefined;

async function main(): Promise<void> {
  const options = parseBenchArgs(Deno.args);
  if (options === "help") return console.log(HELP);
  if (options.updateReadme) return await updateReadme(options.outDir);
  const scenarios = selectScenarios(SCENARIOS, options.only);
  for (const tool of ["wrk", "curl"]) {
    if (!await hasCommand(tool)) {
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
  // The command that reproduces the run (the note describes it, is not part of it).
  const args = Deno.args.filter((arg, i, all) =>
    arg !== "--note" && all[i - 1] !== "--note" && !arg.startsWith("--note=")
  );
  const command = ["deno task bench", ...args].join(" ");
  const run = await runBenchmark(options, scenarios, command);

  await Deno.mkdir(options.outDir, { recursive: true });
  const names = ["RESULTS.md", "results.svg", "results.json"];
  const [results, chart, json] = names.map((n) => join(options.outDir, n));
  await Deno.writeTextFile(results, report.renderResultsMarkdown(run));
  const ratios = report.computeRatios(run.scenarios, TARGETS);
  const title = "Our servers against the floors and the peers";
  await Deno.writeTextFile(chart, renderSvgChart(ratios, title));
  // The raw figures too, for anyone who wants to draw their own comparison.
  await Deno.writeTextFile(json, JSON.stringify(run, null, 2) + "\n");
  await formatFiles([results, chart, json]);

  // Print the tables as written, columns aligned by deno fmt.
  const text = await Deno.readTextFile(results);
  console.log(text.slice(text.indexOf("## Results"), text.indexOf("## How")));
  const where = relative(Deno.cwd(), options.outDir) || ".";
  const seconds = Math.round(run.elapsedSeconds);
  console.log(`Wrote ${names.join(", ")} into ${where} in ${seconds} s.`);
  if (resolve(options.outDir) === resolve(BENCH_DIR)) {
    console.log("Then `deno task bench --update-readme` updates README.md.");
  }
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
