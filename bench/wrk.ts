/**
 * Running wrk and reading its report.
 *
 * `parseWrkOutput` is pure (tested in tests/bench_test.ts); `runWrk` starts
 * the Debian `wrk` binary with a bounded duration and parses what it prints.
 *
 * @module
 */

/** What one wrk run measured. Times in milliseconds, sizes in bytes. */
export interface WrkResult {
  /** Completed responses. */
  requests: number;
  /** Wall time of the run as wrk reports it, in seconds. */
  seconds: number;
  requestsPerSec: number;
  /** Bytes read per second (heads and bodies). */
  bytesPerSec: number;
  latencyAvgMs: number;
  /** Latency percentiles from `--latency`; null when wrk did not print them. */
  latencyP50Ms: number | null;
  latencyP90Ms: number | null;
  latencyP99Ms: number | null;
  /** Socket errors (connect, read, write, timeout) plus responses with status >= 400. */
  errors: number;
}

/** Options for one wrk run against one URL. */
export interface WrkOptions {
  url: string;
  /** Seconds to run. */
  duration: number;
  connections: number;
  threads: number;
  /** Extra request header lines, e.g. `"Connection: close"`. */
  headers?: string[];
  /** A Lua script file (for POST bodies). */
  script?: string;
  /** Seconds before wrk counts a request as timed out. @default 2 */
  timeout?: number;
}

const TIME_UNITS_MS: Record<string, number> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
// wrk prints sizes with binary prefixes (its format_binary divides by 1024).
const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};
// wrk prints counts with decimal prefixes (format_metric): 28.15k.
const COUNT_UNITS: Record<string, number> = { "": 1, k: 1e3, M: 1e6, G: 1e9 };

/**
 * Reads a wrk duration into milliseconds.
 *
 * @example parseWrkTime("635.91us") === 0.63591; parseWrkTime("1.13ms") === 1.13
 */
export function parseWrkTime(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!match) throw new Error(`not a wrk time: ${JSON.stringify(text)}`);
  return Number(match[1]) * TIME_UNITS_MS[match[2]];
}

/**
 * Reads a wrk size into bytes.
 *
 * @example parseWrkSize("720.19MB") === 720.19 * 1024 ** 2; parseWrkSize("512B") === 512
 */
export function parseWrkSize(text: string): number {
  const match = /^([\d.]+)(B|KB|MB|GB|TB)$/.exec(text.trim());
  if (!match) throw new Error(`not a wrk size: ${JSON.stringify(text)}`);
  return Number(match[1]) * SIZE_UNITS[match[2]];
}

/**
 * Reads a wrk count, which may carry a decimal prefix.
 *
 * @example parseWrkCount("28.15k") === 28150; parseWrkCount("280071") === 280071
 */
export function parseWrkCount(text: string): number {
  const match = /^([\d.]+)([kMG]?)$/.exec(text.trim());
  if (!match) throw new Error(`not a wrk count: ${JSON.stringify(text)}`);
  return Number(match[1]) * COUNT_UNITS[match[2]];
}

/**
 * Parses the report wrk prints at the end of a run.
 *
 * Throws when a required line (the request count, Requests/sec, Transfer/sec
 * or the latency row) is missing, so a failed run is never read as zero.
 *
 * @example
 * parseWrkOutput("...  280071 requests in 5.00s, 3.52GB read\nRequests/sec:  56013.11\n...")
 *   // => { requests: 280071, seconds: 5, requestsPerSec: 56013.11, ... }
 */
export function parseWrkOutput(output: string): WrkResult {
  const total = /^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read\s*$/m.exec(
    output,
  );
  const rate = /^Requests\/sec:\s+([\d.]+)\s*$/m.exec(output);
  const transfer = /^Transfer\/sec:\s+([\d.]+\w+)\s*$/m.exec(output);
  const latency = /^\s*Latency\s+([\d.]+\w+)\s/m.exec(output);
  if (!total || !rate || !transfer || !latency) {
    throw new Error(`wrk printed no complete report:\n${output.trim()}`);
  }
  const percentile = (p: number): number | null => {
    const match = new RegExp(`^\\s*${p}(?:\\.0+)?%\\s+([\\d.]+\\w+)\\s*$`, "m")
      .exec(output);
    return match ? parseWrkTime(match[1]) : null;
  };
  let errors = 0;
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
      output,
    );
  if (socket) {
    errors += socket.slice(1).reduce((sum, count) => sum + Number(count), 0);
  }
  const status = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  if (status) errors += Number(status[1]);
  return {
    requests: Number(total[1]),
    seconds: parseWrkTime(total[2]) / 1000,
    requestsPerSec: Number(rate[1]),
    bytesPerSec: parseWrkSize(transfer[1]),
    latencyAvgMs: parseWrkTime(latency[1]),
    latencyP50Ms: percentile(50),
    latencyP90Ms: percentile(90),
    latencyP99Ms: percentile(99),
    errors,
  };
}

/**
 * Builds wrk's argument list; `--latency` is always on so percentiles are printed.
 *
 * @example wrkArgs({ url: "http://127.0.0.1:8080/", duration: 5, connections: 32, threads: 2 })
 *   // => ["--latency", "-t", "2", "-c", "32", "-d", "5s", "--timeout", "2s", "http://127.0.0.1:8080/"]
 */
export function wrkArgs(options: WrkOptions): string[] {
  const {
    url,
    duration,
    connections,
    threads,
    headers = [],
    script,
    timeout = 2,
  } = options;
  const args = ["--latency", "-t", String(threads), "-c", String(connections)];
  args.push("-d", `${duration}s`, "--timeout", `${timeout}s`);
  for (const header of headers) args.push("-H", header);
  if (script) args.push("-s", script);
  args.push(url);
  return args;
}

/**
 * Runs wrk once and parses its report. `onSpawn` receives the child so the
 * caller can stop it on Ctrl-C.
 */
export async function runWrk(
  options: WrkOptions,
  onSpawn?: (child: Deno.ChildProcess) => void,
): Promise<WrkResult> {
  const command = new Deno.Command("wrk", {
    args: wrkArgs(options),
    stdout: "piped",
    stderr: "piped",
  });
  const child = command.spawn();
  onSpawn?.(child);
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder().decode(stdout);
  if (code !== 0) {
    throw new Error(
      `wrk exited with ${code}: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
  return parseWrkOutput(text);
}

/**
 * Combines the reports of wrk runs that drove several servers at the same time (one wrk per
 * board instance): counts and rates are summed, the run time is the longest, the mean latency
 * is weighted by requests, and each percentile is the worst of the runs (a percentile of the
 * whole cannot be rebuilt from the parts; the worst is an upper bound for it).
 *
 * @example combineWrkResults([a, b]).requestsPerSec === a.requestsPerSec + b.requestsPerSec
 */
export function combineWrkResults(results: WrkResult[]): WrkResult {
  if (results.length === 0) throw new RangeError("no wrk results to combine");
  if (results.length === 1) return results[0];
  const sum = (pick: (r: WrkResult) => number) =>
    results.reduce((total, r) => total + pick(r), 0);
  const worst = (pick: (r: WrkResult) => number | null) => {
    const values = results.map(pick);
    return values.includes(null) ? null : Math.max(...(values as number[]));
  };
  const requests = sum((r) => r.requests);
  return {
    requests,
    seconds: Math.max(...results.map((r) => r.seconds)),
    requestsPerSec: sum((r) => r.requestsPerSec),
    bytesPerSec: sum((r) => r.bytesPerSec),
    latencyAvgMs: requests === 0
      ? Math.max(...results.map((r) => r.latencyAvgMs))
      : sum((r) => r.latencyAvgMs * r.requests) / requests,
    latencyP50Ms: worst((r) => r.latencyP50Ms),
    latencyP90Ms: worst((r) => r.latencyP90Ms),
    latencyP99Ms: worst((r) => r.latencyP99Ms),
    errors: sum((r) => r.errors),
  };
}
