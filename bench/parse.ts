/**
 * What the measuring tools are told and what they print: wrk's arguments and
 * report, curl's arguments and `--write-out` line, and the peak memory in
 * /proc/PID/status. Pure (tested in tests/bench_test.ts, timed in
 * parse_bench.ts); bench/measure.ts runs the tools.
 *
 * @module
 */

/** What one wrk run (or one curl download) measured. */
export interface RunResult {
  /** Completed responses. */
  requests: number;
  requestsPerSec: number;
  /** Bytes read per second (heads and bodies). */
  bytesPerSec: number;
  /** Latency percentiles; null when wrk did not print them. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** Socket errors (connect, read, write, timeout) plus answers with status >= 400. */
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
  /** Seconds before wrk counts a request as timed out. */
  timeout: number;
}

const TIME_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
// wrk prints sizes with binary prefixes (its format_binary divides by 1024).
const SIZE_BYTES = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/**
 * Reads a wrk figure with its unit.
 *
 * @example parseUnit("1.13ms", TIME_MS) === 1.13; parseUnit("2.00MB", SIZE_BYTES) === 2 * 1024 ** 2
 */
function parseUnit(text: string, units: Record<string, number>): number {
  const match = /^([\d.]+)([a-zA-Z]+)$/.exec(text.trim());
  const scale = match ? units[match[2]] : undefined;
  if (!match || scale === undefined) {
    throw new Error(`not a wrk figure: ${JSON.stringify(text)}`);
  }
  return Number(match[1]) * scale;
}

/**
 * Parses the report wrk prints at the end of a run. Throws when a required
 * line is missing, so a failed run is never read as zero.
 *
 * @example parseWrkOutput("  280071 requests in 5.00s, 3.52GB read\nRequests/sec:  56013.11\n...")
 *   // => { requests: 280071, requestsPerSec: 56013.11, ... }
 */
export function parseWrkOutput(output: string): RunResult {
  const line = (pattern: RegExp) => pattern.exec(output)?.[1];
  const requests = line(/^\s*(\d+) requests in [\d.]+\w+, [\d.]+\w+ read/m);
  const rate = line(/^Requests\/sec:\s+([\d.]+)\s*$/m);
  const transfer = line(/^Transfer\/sec:\s+([\d.]+\w+)\s*$/m);
  if (!requests || !rate || !transfer || !/^\s*Latency\s/m.test(output)) {
    throw new Error(`wrk printed no complete report:\n${output.trim()}`);
  }
  const percentile = (p: number) => {
    const time = line(new RegExp(`^\\s*${p}%\\s+([\\d.]+\\w+)\\s*$`, "m"));
    return time ? parseUnit(time, TIME_MS) : null;
  };
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(output)?.slice(1) ?? [];
  const status = line(/Non-2xx or 3xx responses: (\d+)/) ?? 0;
  return {
    requests: Number(requests),
    requestsPerSec: Number(rate),
    bytesPerSec: parseUnit(transfer, SIZE_BYTES),
    p50Ms: percentile(50),
    p99Ms: percentile(99),
    errors: [...socket, status].reduce((sum: number, n) => sum + Number(n), 0),
  };
}

/**
 * Builds wrk's argument list; `--latency` is always on so percentiles are printed.
 *
 * @example wrkArgs({ url: "http://127.0.0.1:8080/", duration: 5, connections: 32, threads: 2, timeout: 2 })
 *   // => ["--latency", "-t", "2", "-c", "32", "-d", "5s", "--timeout", "2s", "http://127.0.0.1:8080/"]
 */
export function wrkArgs(options: WrkOptions): string[] {
  const { url, duration, connections, threads, timeout } = options;
  const args = ["--latency", "-t", String(threads), "-c", String(connections)];
  args.push("-d", `${duration}s`, "--timeout", `${timeout}s`);
  for (const header of options.headers ?? []) args.push("-H", header);
  if (options.script) args.push("-s", options.script);
  return [...args, url];
}

/**
 * The wrk script that sends `body` as a form POST. A static request: wrk
 * builds it once, so the load generator stays cheap.
 *
 * @example renderPostScript("message=hi") includes 'wrk.body = "message=hi"'
 */
export function renderPostScript(body: string): string {
  return [
    "-- Written by bench/measure.ts: every request posts the board's form.",
    'wrk.method = "POST"',
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    // A JSON string is a valid Lua string literal for this ASCII body.
    `wrk.body = ${JSON.stringify(body)}`,
    "",
  ].join("\n");
}

/**
 * Combines the reports of wrk runs that drove several processes at the same
 * time (one wrk each): rates and counts are summed, each percentile is the
 * worst of the runs (a percentile of the whole cannot be rebuilt from the
 * parts; the worst is an upper bound for it).
 */
export function combineResults(results: RunResult[]): RunResult {
  if (results.length === 1) return results[0];
  const sum = (pick: (r: RunResult) => number) =>
    results.reduce((total, r) => total + pick(r), 0);
  const worst = (pick: (r: RunResult) => number | null) => {
    const values = results.map(pick);
    return values.includes(null) ? null : Math.max(...values as number[]);
  };
  return {
    requests: sum((r) => r.requests),
    requestsPerSec: sum((r) => r.requestsPerSec),
    bytesPerSec: sum((r) => r.bytesPerSec),
    p50Ms: worst((r) => r.p50Ms),
    p99Ms: worst((r) => r.p99Ms),
    errors: sum((r) => r.errors),
  };
}

/** What curl's `--write-out` reported for one request. */
export interface CurlResult {
  status: number;
  /** Body bytes as sent on the wire (curl does not decompress without --compressed). */
  bytes: number;
  seconds: number;
  bytesPerSec: number;
  /** The response's Content-Encoding, "" for none. */
  encoding: string;
}

/** Options for one curl request. */
export interface CurlOptions {
  url: string;
  /** Seconds before curl gives up. */
  timeout: number;
  headers?: string[];
  /** An urlencoded form body to POST. */
  form?: string;
}

/** curl's `--write-out` format: one line, fields separated by spaces, the encoding last. */
const WRITE_OUT =
  "%{http_code} %{size_download} %{time_total} %{speed_download} %header{content-encoding}\\n";

/**
 * Builds curl's argument list: silent, body discarded, no redirects followed.
 *
 * @example curlArgs({ url: "http://127.0.0.1:1/x", timeout: 5 })
 *   // => ["--silent", "--show-error", "--output", "/dev/null", "--max-time", "5", "--write-out", ..., "http://127.0.0.1:1/x"]
 */
export function curlArgs({ url, timeout, headers, form }: CurlOptions) {
  const args = ["--silent", "--show-error", "--output", "/dev/null"];
  args.push("--max-time", String(timeout), "--write-out", WRITE_OUT);
  for (const header of headers ?? []) args.push("--header", header);
  // --data-raw posts as application/x-www-form-urlencoded, like a browser's form.
  if (form !== undefined) args.push("--data-raw", form);
  return [...args, url];
}

/**
 * Reads what curl printed for {@link WRITE_OUT}.
 *
 * @example parseCurlWriteOut("200 104857600 0.101 1038194059 br\n")
 *   // => { status: 200, bytes: 104857600, seconds: 0.101, bytesPerSec: 1038194059, encoding: "br" }
 */
export function parseCurlWriteOut(text: string): CurlResult {
  const match = /^(\d{3}) (\d+) ([\d.]+) ([\d.]+) ?(\S*)$/.exec(text.trim());
  if (!match) {
    throw new Error(`curl printed no report: ${JSON.stringify(text)}`);
  }
  const [status, bytes, seconds, bytesPerSec] = match.slice(1, 5).map(Number);
  return { status, bytes, seconds, bytesPerSec, encoding: match[5] };
}

/**
 * Reads the peak resident set (VmHWM) from the text of /proc/PID/status, in bytes.
 *
 * @example parseVmHwm("Name:\tdeno\nVmHWM:\t   51234 kB\n") === 51234 * 1024
 */
export function parseVmHwm(status: string): number | null {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : null;
}
