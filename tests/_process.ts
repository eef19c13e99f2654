/**
 * The one way the tests start a program: {@link startProcess} (or {@link startScript} for
 * `deno run`) spawns it, collects every line it prints, waits for the line with its
 * address, and stops it with SIGTERM, then SIGKILL when it has not exited in time.
 * {@link runProcess} / {@link runScript} run a program to its end (a bad flag, a start-up
 * failure). Every wait is bounded, and a process that fails to start is killed before the
 * error is thrown, so a test never leaks one.
 *
 * @example
 * ```ts ignore
 * await using server = await startScript("server_tiny.ts", ["--allow-net=127.0.0.1"], [
 *   "--port",
 *   "0",
 * ]);
 * const response = await fetch(server.url); // http://127.0.0.1:PORT/
 * const { code, stdout } = await server.stop(); // SIGTERM; SIGKILL after 5 s
 * ```
 * @module
 */
import { basename } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root, where the README's commands run. */
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

/** How long a program may take to print its address. */
export const START_TIMEOUT_MS = 20_000;
/** How long a stopped program may take to exit before it gets SIGKILL. */
export const STOP_TIMEOUT_MS = 5_000;
/** How long a program run to its end may take before it gets SIGKILL. */
export const RUN_TIMEOUT_MS = 30_000;

/** The default ready line: any line with an address such as `http://127.0.0.1:41234/`. */
const ADDRESS = /\bhttps?:\/\/[^\s/]+:\d+\//;

/** How a program ended, with everything it printed. */
export interface ProcessResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** How {@link startProcess} and {@link runProcess} run a program. */
export interface ProcessOptions {
  /** The working folder. @default {REPO_ROOT} */
  cwd?: string;
  /** Extra environment variables (NO_COLOR and DENO_NO_UPDATE_CHECK are always set). */
  env?: Record<string, string>;
  /** Start from an empty environment (then only `env` and the two above). @default false */
  clearEnv?: boolean;
  /** A command the program runs under, such as `["prlimit", "--nofile=256"]`. @default [] */
  wrapper?: string[];
  /**
   * The line that says the program is ready (stdout or stderr); the first address in it
   * becomes {@link RunningProcess.url}. Null: do not wait for any line.
   * @default any line with `http(s)://HOST:PORT/`
   */
  ready?: RegExp | null;
  /** Bound on the wait for the ready line, or on a run to the end. */
  timeoutMs?: number;
}

/** A running program. `await using` stops it (SIGTERM, then SIGKILL). */
export interface RunningProcess extends AsyncDisposable {
  /** The program's pid; under a `wrapper` such as runuser, the wrapped program's. */
  readonly pid: number;
  /** The address from the ready line, like `http://127.0.0.1:41234/` ("" with `ready: null`). */
  readonly url: string;
  /** `url` without the trailing slash, like `http://127.0.0.1:41234`. */
  readonly origin: string;
  /** The port in `url` (0 with `ready: null`). */
  readonly port: number;
  /** Every line printed so far on stdout and stderr, in the order they came. */
  readonly lines: string[];
  /** Every line printed so far on stdout. */
  readonly stdout: string[];
  /** Every line printed so far on stderr. */
  readonly stderr: string[];
  /** Resolves once the program has exited and both pipes are read to the end. */
  readonly output: Promise<ProcessResult>;
  /** Waits until a printed line matches, or throws (with the output) after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends a signal, without waiting; a program that has exited is left alone. */
  kill(signal?: Deno.Signal): void;
  /** Sends `signal`, waits `timeoutMs` for the exit, then SIGKILL; resolves with {@link output}. */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<ProcessResult>;
  /** Waits `timeoutMs` for the program to exit by itself, then SIGKILL; resolves with {@link output}. */
  waitForExit(timeoutMs?: number): Promise<ProcessResult>;
}

/**
 * Starts `program args` and waits (bounded) for its ready line. Throws with everything it
 * printed when it exits first or takes too long; it is killed before the throw.
 */
export async function startProcess(
  program: string,
  args: string[],
  options: ProcessOptions = {},
): Promise<RunningProcess> {
  const {
    cwd = REPO_ROOT,
    env = {},
    clearEnv = false,
    wrapper = [],
    ready = ADDRESS,
    timeoutMs = START_TIMEOUT_MS,
  } = options;
  const [command, ...commandArgs] = [...wrapper, program, ...args];
  const child = new Deno.Command(command, {
    args: commandArgs,
    cwd,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
    clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  const lines: string[] = [];
  const stdout: string[] = [];
  const stderr: string[] = [];
  const wakers = new Set<() => void>();
  const wake = () => {
    for (const waker of wakers) waker();
  };
  // Both pipes are read to the end, so the program never blocks on a full pipe and the
  // sanitizers see them closed.
  const reading = Promise.all([
    collectLines(child.stdout, (line) => {
      stdout.push(line);
      lines.push(line);
      wake();
    }),
    collectLines(child.stderr, (line) => {
      stderr.push(line);
      lines.push(line);
      wake();
    }),
  ]);
  let exited = false;
  const output = Promise.all([child.status, reading]).then(
    ([status, [stdoutText, stderrText]]) => {
      exited = true;
      wake();
      return {
        code: status.code,
        signal: status.signal,
        stdout: stdoutText,
        stderr: stderrText,
      };
    },
  );
  const explain = (what: string) =>
    new Error(
      `${what}\n--- ${[program, ...args].join(" ")} printed ---\n${
        lines.join("\n")
      }`,
    );

  const waitForLine = (pattern: RegExp, ms = START_TIMEOUT_MS) =>
    new Promise<string>((resolve, reject) => {
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        wakers.delete(check);
        settle();
      };
      const check = () => {
        const found = lines.find((line) => pattern.test(line));
        if (found !== undefined) finish(() => resolve(found));
        else if (exited) {
          finish(() => reject(explain(`it exited before printing ${pattern}`)));
        }
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(explain(`no line matching ${pattern} within ${ms} ms`))
          ),
        ms,
      );
      wakers.add(check);
      check();
    });

  let pid = child.pid;
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    if (exited) return;
    try {
      if (pid === child.pid) child.kill(signal);
      else Deno.kill(pid, signal);
    } catch {
      // it exited meanwhile
    }
  };
  const stop = async (
    signal: Deno.Signal | null = "SIGTERM",
    ms = STOP_TIMEOUT_MS,
  ) => {
    if (signal !== null) kill(signal);
    const timer = setTimeout(() => {
      kill("SIGKILL");
      // A wrapper may outlive what it wraps: end it too.
      if (pid !== child.pid && !exited) {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone
        }
      }
    }, ms);
    try {
      return await output;
    } finally {
      clearTimeout(timer);
    }
  };

  let url = "";
  try {
    if (ready !== null) {
      const line = await waitForLine(ready, timeoutMs);
      url = line.match(ADDRESS)?.[0] ?? "";
    }
    // Through a wrapper that forks (runuser), the program is a child of the child.
    if (wrapper.length > 0) {
      pid = await findDescendant(child.pid, basename(program)) ?? child.pid;
    }
  } catch (error) {
    await stop("SIGKILL");
    throw error;
  }
  return {
    get pid() {
      return pid;
    },
    url,
    origin: url.replace(/\/$/, ""),
    port: url === "" ? 0 : Number(new URL(url).port),
    lines,
    stdout,
    stderr,
    output,
    waitForLine,
    kill,
    stop,
    waitForExit: (ms = STOP_TIMEOUT_MS) => stop(null, ms),
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/**
 * Runs `deno run <flags> <script> <args>` (from the repository root unless `cwd` says
 * otherwise) and waits for its address, as {@link startProcess}.
 */
export function startScript(
  script: string,
  flags: string[],
  args: string[] = [],
  options: ProcessOptions & { deno?: string } = {},
): Promise<RunningProcess> {
  const { deno = Deno.execPath(), ...rest } = options;
  return startProcess(deno, ["run", ...flags, script, ...args], rest);
}

/** Runs `program args` to its end (SIGKILL after `timeoutMs`) and returns what it printed. */
export async function runProcess(
  program: string,
  args: string[],
  options: Omit<ProcessOptions, "ready"> = {},
): Promise<ProcessResult> {
  const { timeoutMs = RUN_TIMEOUT_MS, ...rest } = options;
  const running = await startProcess(program, args, { ...rest, ready: null });
  const timer = setTimeout(() => running.kill("SIGKILL"), timeoutMs);
  try {
    return await running.output;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `deno run <flags> <script> <args>` to its end, as {@link runProcess}. */
export function runScript(
  script: string,
  flags: string[],
  args: string[] = [],
  options: Omit<ProcessOptions, "ready"> = {},
): Promise<ProcessResult> {
  return runProcess(
    Deno.execPath(),
    ["run", ...flags, script, ...args],
    options,
  );
}

const IN_CI = Deno.env.get("CI") === "true";

/** What of `tools` (and root, with `root`) this machine lacks; empty when all is there. */
async function findMissing(tools: string[], root: boolean): Promise<string[]> {
  const found = await Promise.all(tools.map(hasCommand));
  const missing = tools.filter((_, i) => !found[i]);
  if (root && Deno.uid() !== 0) missing.push("root");
  return missing;
}

/**
 * Test options for a test that needs `tools` (and root, with `root: true`): when something
 * is missing it says so loudly and the test is ignored, except under CI=true, where the
 * test runs (and fails: CI never passes by skipping).
 */
export async function toolTestOptions(
  what: string,
  tools: string[],
  { root = false }: { root?: boolean } = {},
): Promise<{ ignore: boolean }> {
  const missing = await findMissing(tools, root);
  if (missing.length === 0) return { ignore: false };
  console.warn(
    `\n!! ${IN_CI ? "FAILING (CI=true)" : "SKIPPING"} ${what}: it needs ${
      missing.join(", ")
    }\n`,
  );
  return { ignore: !IN_CI };
}

/**
 * True when a test may use `tools` (and root, with `root: true`). Otherwise it says loudly
 * why `what` is skipped and returns false; under CI=true it throws instead, so CI never
 * passes by skipping.
 */
export async function canRun(
  what: string,
  tools: string[],
  { root = false }: { root?: boolean } = {},
): Promise<boolean> {
  const missing = await findMissing(tools, root);
  if (missing.length === 0) return true;
  const why = `SKIPPED: ${what} needs ${missing.join(", ")}`;
  if (IN_CI) throw new Error(`${why} (CI=true)`);
  console.warn(`\n!! ${why}\n`);
  return false;
}

/** True when root-only tools (runuser, prlimit, mkfifo) may be used; see {@link canRun}. */
export function canRunAsRoot(what: string): Promise<boolean> {
  return canRun(what, ["runuser", "prlimit", "mkfifo"], { root: true });
}

/** True when `command -v name` finds it. */
export async function hasCommand(name: string): Promise<boolean> {
  const { success } = await new Deno.Command("sh", {
    args: ["-c", `command -v ${name}`],
    stdout: "null",
  }).output();
  return success;
}

/** How many descriptors (files and sockets) a process has open, from /proc. */
export function countOpenFds(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it), for a program that cannot take port 0. */
export function pickFreePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** The resident set size of a process in bytes, from /proc. */
export async function readRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** How {@link measureRssGrowth} times its two readings. */
export interface RssGrowthOptions {
  /** The quiet wait before the first reading (the last answer settles). @default 300 */
  settleMs?: number;
  /** How long what `load` opened is held before the second reading. @default 2000 */
  holdMs?: number;
}

/**
 * How many MB (10^6 bytes) the resident set of `pid` grows while it holds what `load`
 * opens: read after `settleMs`, then `holdMs` after `load` resolved; what it opened is
 * closed before this returns. Logs the figure, so a test's output shows it.
 *
 * @example
 * ```ts ignore
 * const grown = await measureRssGrowth(server.pid, () =>
 *   openStalledStreams(server.port, pem, { connections: 3, perConnection: 200, path })
 * );
 * assert.ok(grown < 60, `RSS grew by ${grown.toFixed(0)} MB`);
 * ```
 */
export async function measureRssGrowth(
  pid: number,
  load: () => Promise<Disposable>,
  { settleMs = 300, holdMs = 2000 }: RssGrowthOptions = {},
): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const before = await readRss(pid);
  using _held = await load();
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  const grown = (await readRss(pid) - before) / 1e6;
  console.log(`RSS grew by ${grown.toFixed(0)} MB`);
  return grown;
}

/** How many descriptors this test process has open on the file `path`. */
export async function countFdsOn(path: string): Promise<number> {
  let count = 0;
  for await (const { name } of Deno.readDir("/proc/self/fd")) {
    try {
      if (await Deno.readLink(`/proc/self/fd/${name}`) === path) count++;
    } catch {
      // Closed since the listing (the listing's own descriptor, say).
    }
  }
  return count;
}

/** The first process at or below `pid` named `name` (runuser forks; prlimit execs). */
async function findDescendant(
  pid: number,
  name: string,
): Promise<number | null> {
  try {
    const comm = (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
    if (comm === name.slice(0, 15)) return pid;
    const children = await Deno.readTextFile(
      `/proc/${pid}/task/${pid}/children`,
    );
    for (const child of children.trim().split(/\s+/).filter(Boolean)) {
      const found = await findDescendant(Number(child), name);
      if (found !== null) return found;
    }
  } catch {
    // it exited meanwhile
  }
  return null;
}

/**
 * Calls `onLine` with each line of a stream (the last one even without a newline) and
 * resolves with the whole text.
 */
async function collectLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<string> {
  let text = "";
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    const parts = (rest + chunk).split(/\r?\n/);
    rest = parts.pop()!;
    for (const part of parts) onLine(part);
  }
  if (rest) onLine(rest);
  return text;
}
