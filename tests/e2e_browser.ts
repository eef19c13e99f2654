// Helpers for the browser tests (tests/e2e_test.ts): find and launch Debian's
// Chromium through playwright-core, start one of our scripts as a real
// process on 127.0.0.1 port 0, and save screenshots a person can look at.
//
// Playwright's own browser download is never used: it needs the internet and
// fetches a build Debian does not patch. We drive the system Chromium instead.
import { type Browser, chromium, type Page } from "npm:playwright-core@1.65.1";

/** Where Debian's `chromium` package installs the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** The command that installs it, named in every skip or failure message. */
export const CHROMIUM_INSTALL = "apt-get install -y chromium";

/**
 * Flags that keep the browser offline and quiet: it may talk to 127.0.0.1
 * only, and never to Google's update, sync or field-trial services.
 */
const CHROMIUM_ARGS = [
  "--no-sandbox", // tests run as root, where Chromium refuses its sandbox
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  // Every host name fails to resolve, so a page cannot reach the internet.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

/** Time limits for one browser action and for a server to start or stop. */
export const ACTION_TIMEOUT_MS = 10_000;
const SERVER_START_TIMEOUT_MS = 15_000;
const SERVER_STOP_TIMEOUT_MS = 5_000;

const REPO_ROOT = new URL("../", import.meta.url);

/** What the browser tests should do on this machine. */
export interface BrowserPlan {
  /** True when the tests must be skipped (no Chromium, not in CI). */
  ignore: boolean;
  /** Set when Chromium is missing: the reason, for the log or the failure. */
  missing?: string;
}

/**
 * Decides whether the browser tests run. Without Chromium a developer gets a
 * loud skip; CI (env `CI=true`) gets a failure, because CI must run them.
 */
export function planBrowserTests(): BrowserPlan {
  if (isExecutable(CHROMIUM_PATH)) return { ignore: false };
  const missing =
    `Chromium not found at ${CHROMIUM_PATH}; install it with: ${CHROMIUM_INSTALL}`;
  const inCi = Deno.env.get("CI") === "true";
  if (!inCi) {
    console.error(
      `\n${"!".repeat(72)}\n!! BROWSER TESTS SKIPPED: ${missing}\n${
        "!".repeat(72)
      }\n`,
    );
  }
  return { ignore: !inCi, missing };
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Launches headless Chromium with the offline flags. */
export async function launchChromium(): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: SERVER_START_TIMEOUT_MS,
  });
}

/** A running script: its address, its console output, and a way to stop it. */
export interface ScriptServer {
  /** For example `http://127.0.0.1:41234`, without a trailing slash. */
  origin: string;
  /** Every line the process has printed so far (stdout and stderr). */
  lines: string[];
  /** Waits until a printed line matches, or fails after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL if it has not exited in time; returns the exit code. */
  stop(): Promise<number>;
}

/**
 * Runs `deno run <permissions> <script> <args> --hostname 127.0.0.1 --port 0`
 * from the repository root, exactly as the README does, and waits for the
 * line that gives the real address (`http://127.0.0.1:PORT/`).
 */
export async function startScript(
  script: string,
  permissions: string[],
  args: string[] = [],
): Promise<ScriptServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...permissions,
      script,
      ...args,
      "--hostname",
      "127.0.0.1",
      "--port",
      "0",
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();

  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const record = (line: string) => {
    lines.push(line);
    for (const wake of waiters) wake();
  };
  // Both pipes are read to the end, so the process never blocks on a full
  // pipe and the sanitizers see them closed.
  const reading = Promise.all([
    collectLines(child.stdout, record),
    collectLines(child.stderr, record),
  ]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    for (const wake of waiters) wake();
    return s;
  });

  const waitForLine = (pattern: RegExp, timeoutMs = ACTION_TIMEOUT_MS) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = lines.find((line) => pattern.test(line));
        if (found !== undefined) finish(() => resolve(found));
        else if (exited) {
          finish(() => reject(explain(`${script} exited before printing`)));
        }
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              explain(`no line matching ${pattern} within ${timeoutMs} ms`),
            )
          ),
        timeoutMs,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      waiters.add(check);
      check();
    });
  const explain = (what: string) =>
    new Error(`${what}\n--- ${script} output ---\n${lines.join("\n")}`);

  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, SERVER_STOP_TIMEOUT_MS);
    try {
      const { code } = await status;
      await reading;
      return code;
    } finally {
      clearTimeout(timer);
    }
  };

  try {
    const line = await waitForLine(
      /http:\/\/127\.0\.0\.1:\d+\//,
      SERVER_START_TIMEOUT_MS,
    );
    const origin = line.match(/http:\/\/127\.0\.0\.1:(\d+)/)![0];
    return { origin, lines, waitForLine, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function collectLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split(/\r?\n/);
    rest = parts.pop()!;
    for (const part of parts) onLine(part);
  }
  if (rest) onLine(rest);
}

/** The eight bytes every PNG file starts with (PNG spec, section 5.2). */
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Reads the width and height of a PNG from its IHDR chunk, or returns null
 * when the bytes are not a PNG. Example: a 1x1 PNG -> `{ width: 1, height: 1 }`.
 */
export function readPngSize(
  bytes: Uint8Array,
): { width: number; height: number } | null {
  if (bytes.length < 24) return null;
  if (PNG_SIGNATURE.some((byte, i) => bytes[i] !== byte)) return null;
  // The first chunk is IHDR: length (4), type (4), then width and height.
  if (new TextDecoder().decode(bytes.subarray(12, 16)) !== "IHDR") return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** Saves a full-page screenshot as `<folder>/<name>.png` and returns the path. */
export async function saveScreenshot(
  page: Page,
  folder: string,
  name: string,
): Promise<string> {
  const path = `${folder}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}
