/**
 * Running curl: one request at a time, as a user downloads a file, and the
 * runner's check of each server's answer before it is measured.
 *
 * `curlArgs` and `parseCurlWriteOut` are pure (tested in tests/bench_test.ts).
 *
 * @module
 */

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
export function curlArgs(options: CurlOptions): string[] {
  const { url, timeout, headers = [], form } = options;
  const args = ["--silent", "--show-error", "--output", "/dev/null"];
  args.push("--max-time", String(timeout), "--write-out", WRITE_OUT);
  for (const header of headers) args.push("--header", header);
  // --data-raw posts as application/x-www-form-urlencoded, like a browser's form.
  if (form !== undefined) args.push("--data-raw", form);
  args.push(url);
  return args;
}

/**
 * Reads what curl printed for {@link WRITE_OUT}.
 *
 * @example parseCurlWriteOut("200 104857600 0.101 1038194059 br\n")
 *   // => { status: 200, bytes: 104857600, seconds: 0.101, bytesPerSec: 1038194059, encoding: "br" }
 */
export function parseCurlWriteOut(text: string): CurlResult {
  const match = /^(\d{3}) (\d+) ([\d.]+) ([\d.]+) ?(\S*)\s*$/.exec(text.trim());
  if (!match) {
    throw new Error(`curl printed no report: ${JSON.stringify(text)}`);
  }
  return {
    status: Number(match[1]),
    bytes: Number(match[2]),
    seconds: Number(match[3]),
    bytesPerSec: Number(match[4]),
    encoding: match[5],
  };
}

/** Runs curl once; `onSpawn` receives the child so the caller can stop it on Ctrl-C. */
export async function runCurl(
  options: CurlOptions,
  onSpawn?: (child: Deno.ChildProcess) => void,
): Promise<CurlResult> {
  const child = new Deno.Command("curl", {
    args: curlArgs(options),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  onSpawn?.(child);
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    throw new Error(
      `curl ${options.url} failed (exit ${code}): ${
        new TextDecoder().decode(stderr).trim()
      }`,
    );
  }
  return parseCurlWriteOut(new TextDecoder().decode(stdout));
}
