/**
 * What the measuring tools are told and what they print: wrk's and curl's arguments and reports,
 * and the peak memory in /proc/PID/status. Pure (tested in tests/bench_test.ts, timed in
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
  /** Socket errors (connect, read, write, timeout) plus answers with status >= 400. */
  errors: number;
}

/** wrk's connections, and its threads: one per core of the machine the bench was written for. */
export const CONNECTIONS = 32;
export const THREADS = 2;

/** Reads a wrk size: "2.00MB" is 2 MiB (wrk's prefixes are binary). */
function parseSize(text: string): number {
  const match = /^([\d.]+)(B|KB|MB|GB)$/.exec(text.trim());
  if (!match) throw new Error(`not a wrk size: ${JSON.stringify(text)}`);
  return Number(match[1]) * 1024 ** ["B", "KB", "MB", "GB"].indexOf(match[2]);
}

/** Parses wrk's report; throws when a line is missing, so a failed run is never read as zero. */
export function parseWrkOutput(output: string): RunResult {
  const line = (pattern: RegExp) => pattern.exec(output)?.[1];
  const requests = line(/^\s*(\d+) requests in [\d.]+\w+, [\d.]+\w+ read/m);
  const rate = line(/^Requests\/sec:\s+([\d.]+)\s*$/m);
  const transfer = line(/^Transfer\/sec:\s+([\d.]+\w+)\s*$/m);
  if (!requests || !rate || !transfer) {
    throw new Error(`wrk printed no complete report:\n${output.trim()}`);
  }
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(output)?.slice(1) ?? [];
  const status = line(/Non-2xx or 3xx responses: (\d+)/) ?? 0;
  return {
    requests: Number(requests),
    requestsPerSec: Number(rate),
    bytesPerSec: parseSize(transfer),
    errors: [...socket, status].reduce((sum: number, n) => sum + Number(n), 0),
  };
}

/** wrk's arguments: `duration` and `timeout` in seconds, a Lua `script` for POST bodies. */
export function wrkArgs(
  url: string,
  duration: number,
  timeout: number,
  headers: string[] = [],
  script?: string,
): string[] {
  const args = ["-t", String(THREADS), "-c", String(CONNECTIONS)];
  args.push("-d", `${duration}s`, "--timeout", `${timeout}s`);
  for (const header of headers) args.push("-H", header);
  if (script) args.push("-s", script);
  return [...args, url];
}

/** The wrk script that posts `body` as a form: a static request wrk builds once, so it stays cheap. */
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
 * curl's report, one line: status, body bytes as sent on the wire (curl does not decompress
 * without --compressed), seconds, bytes per second, and the Content-Encoding last ("" for none).
 */
const WRITE_OUT =
  "%{http_code} %{size_download} %{time_total} %{speed_download} %header{content-encoding}\\n";

/** curl's arguments: silent, body discarded, no redirects followed, `form` posted as a browser does. */
export function curlArgs(
  url: string,
  timeout: number,
  headers: string[] = [],
  form?: string,
): string[] {
  const args = ["--silent", "--show-error", "--output", "/dev/null"];
  args.push("--max-time", String(timeout), "--write-out", WRITE_OUT);
  for (const header of headers) args.push("--header", header);
  if (form !== undefined) args.push("--data-raw", form);
  return [...args, url];
}

/** Reads what curl printed for WRITE_OUT. */
export function parseCurlWriteOut(text: string) {
  const match = /^(\d{3}) (\d+) ([\d.]+) ([\d.]+) ?(\S*)$/.exec(text.trim());
  if (!match) {
    throw new Error(`curl printed no report: ${JSON.stringify(text)}`);
  }
  const [status, bytes, seconds, bytesPerSec] = match.slice(1, 5).map(Number);
  return { status, bytes, seconds, bytesPerSec, encoding: match[5] };
}

/** The peak resident set (VmHWM) in the text of /proc/PID/status, in bytes. */
export function parseVmHwm(status: string): number | null {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : null;
}
