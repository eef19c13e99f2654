// Helpers for the browser tests (tests/e2e_test.ts): find and launch Debian's
// Chromium through playwright-core, save screenshots a person can look at, and
// check pages for accessibility problems with axe-core. The servers are started
// with startScript from _process.ts.
//
// Playwright's own browser download is never used: it needs the internet and
// fetches a build Debian does not patch. We drive the system Chromium instead.
import {
  type Browser,
  type BrowserContext,
  chromium,
  type Page,
} from "npm:playwright-core@1.65.1";
import axe from "npm:axe-core@4.14.1";

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

/** Time limit for one browser action. */
export const ACTION_TIMEOUT_MS = 10_000;

/**
 * Time limit for one start of the browser, and how many starts are tried.
 * A start takes about a second, but CI saw one take more than 15 s on a
 * fresh machine under the suite's load (`.ci/run` now starts it once before
 * the tests); a start that fails or hangs is killed and tried again.
 */
const BROWSER_START_TIMEOUT_MS = 30_000;
const BROWSER_START_ATTEMPTS = 3;

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

/**
 * Launches headless Chromium with the offline flags, trying again (up to
 * {@link BROWSER_START_ATTEMPTS} starts) when a start fails or times out;
 * each failed start is logged, and the error names them all.
 */
export async function launchChromium(): Promise<Browser> {
  const failures: string[] = [];
  for (let attempt = 1;; attempt++) {
    const started = Date.now();
    try {
      return await chromium.launch({
        executablePath: CHROMIUM_PATH,
        headless: true,
        args: CHROMIUM_ARGS,
        timeout: BROWSER_START_TIMEOUT_MS,
      });
    } catch (error) {
      const first = String(error).split("\n")[0];
      failures.push(`start ${attempt} (${Date.now() - started} ms): ${first}`);
      console.error(`Chromium did not start: ${failures.at(-1)}`);
      if (attempt === BROWSER_START_ATTEMPTS) {
        throw new Error(`Chromium did not start:\n${failures.join("\n")}`, {
          cause: error,
        });
      }
    }
  }
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

/**
 * The axe-core rules every page is held to: WCAG 2.0 and 2.1 at levels A and
 * AA, plus Deque's best practices (one `main` landmark, all content inside a
 * landmark, headings in order, ...).
 */
export const AXE_TAGS = [
  "wcag2a",
  "wcag2aa",
  "wcag21a",
  "wcag21aa",
  "best-practice",
];

/** One rule a page breaks, as axe-core reports it. */
export interface AxeViolation {
  /** The rule, for example `landmark-one-main`. */
  id: string;
  impact: string | null;
  /** One line on what the rule asks for. */
  help: string;
  helpUrl: string;
  /** Each offending element: its CSS selector and what to fix. */
  nodes: { target: string; failureSummary: string }[];
}

/** What the page sees of axe-core once injected (the page has DOM types; Deno does not). */
interface AxeInPage {
  run(
    context: unknown,
    options: unknown,
  ): Promise<{ violations: AxeRawViolation[] }>;
}
interface AxeRawViolation {
  id: string;
  impact?: string | null;
  help: string;
  helpUrl: string;
  nodes: { target: unknown[]; failureSummary?: string }[];
}

/**
 * Runs axe-core on the page that is open in `page` and returns what it
 * breaks (an empty list for a clean page).
 *
 * The script is injected as an inline `<script>`, which our pages'
 * Content-Security-Policy forbids (as it should), so `page` must belong to a
 * context made with `bypassCSP: true`: see {@link openAccessibilityAudit}.
 * Only tests do this; axe-core is never loaded by the servers.
 */
export async function findAxeViolations(page: Page): Promise<AxeViolation[]> {
  await page.addScriptTag({ content: axe.source });
  return await page.evaluate(async (tags) => {
    const inPage = globalThis as unknown as {
      axe: AxeInPage;
      document: unknown;
    };
    const { violations } = await inPage.axe.run(inPage.document, {
      runOnly: { type: "tag", values: tags },
      resultTypes: ["violations"],
    });
    return violations.map((v) => ({
      id: v.id,
      impact: v.impact ?? null,
      help: v.help,
      helpUrl: v.helpUrl.replace(/\?.*$/, ""),
      nodes: v.nodes.map((n) => ({
        target: n.target.map(String).join(" "),
        failureSummary: n.failureSummary ?? "",
      })),
    }));
  }, AXE_TAGS);
}

/**
 * Describes violations for a person: one block per rule with its impact,
 * what it asks for, each element and the fix.
 *
 * @example
 * ```ts
 * formatAxeViolations("files /", [{ id: "region", impact: "moderate",
 *   help: "All page content should be contained by landmarks",
 *   helpUrl: "https://dequeuniversity.com/rules/axe/4.14/region",
 *   nodes: [{ target: "h1", failureSummary: "Fix any of the following: ..." }] }]);
 * // files /: 1 rule broken
 * //   region (moderate): All page content should be contained by landmarks
 * //     https://dequeuniversity.com/rules/axe/4.14/region
 * //     h1: Fix any of the following: ...
 * ```
 */
export function formatAxeViolations(
  label: string,
  violations: AxeViolation[],
): string {
  const lines = [
    `${label}: ${violations.length} rule${
      violations.length === 1 ? "" : "s"
    } broken`,
  ];
  for (const v of violations) {
    lines.push(`  ${v.id} (${v.impact ?? "no impact given"}): ${v.help}`);
    lines.push(`    ${v.helpUrl}`);
    for (const node of v.nodes) {
      const fix = node.failureSummary.replace(/\s*\n\s*/g, " ").trim();
      lines.push(`    ${node.target}: ${fix}`);
    }
  }
  return lines.join("\n");
}

/** Checks pages with axe-core in a tab of its own and remembers what each breaks. */
export interface AccessibilityAudit {
  /** Opens `url` in the audit tab and checks the page it shows. */
  check(label: string, url: string): Promise<void>;
  /**
   * Lets `open` bring the audit tab to a page that a URL alone does not give
   * (a form's answer, for example), then checks it.
   */
  checkAfter(
    label: string,
    open: (page: Page) => Promise<unknown>,
  ): Promise<void>;
  /** Labels of the pages checked so far, in order. */
  readonly checked: string[];
  /** Throws one error listing every violation on every page checked so far. */
  assertNoViolations(): void;
  close(): Promise<void>;
}

/**
 * Opens a browser context whose pages ignore Content-Security-Policy (so
 * axe-core can be injected) and returns an audit that checks pages in it.
 * The pages people see in the tests keep their CSP: they are in other
 * contexts.
 */
export async function openAccessibilityAudit(
  browser: Browser,
): Promise<AccessibilityAudit> {
  const context: BrowserContext = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  const checked: string[] = [];
  const reports: string[] = [];
  const checkAfter = async (
    label: string,
    open: (page: Page) => Promise<unknown>,
  ) => {
    let violations: AxeViolation[];
    try {
      await open(page);
      await page.waitForLoadState("load");
      violations = await findAxeViolations(page);
    } finally {
      // `open` may have emulated dark mode or a phone: back to the defaults.
      await page.emulateMedia({ colorScheme: "light" });
    }
    checked.push(label);
    if (violations.length > 0) {
      reports.push(formatAxeViolations(`${label} (${page.url()})`, violations));
    }
  };
  return {
    checked,
    checkAfter,
    check: (label, url) => checkAfter(label, (p) => p.goto(url)),
    assertNoViolations() {
      if (reports.length === 0) return;
      throw new Error(
        `axe-core (${axe.version}, ${
          AXE_TAGS.join(", ")
        }) found problems on ${reports.length} of ${checked.length} pages:\n\n${
          reports.join("\n\n")
        }`,
      );
    },
    close: () => context.close(),
  };
}
