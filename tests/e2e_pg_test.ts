// Browser test of live updates across processes: two pages in Debian's Chromium, each on its
// own board process, both on one PostgreSQL database. A message posted in one page appears in
// the other without a reload, as text; a clear in one empties the other.
//
// Chromium is driven through npm:playwright-core with /usr/bin/chromium (Playwright's own
// browser download is never used). Skipped with a loud message when Chromium or PostgreSQL
// is missing, except with CI=true, where it fails.
import assert from "node:assert/strict";
import { chromium } from "npm:playwright-core@1.65.1";
import { startPgBoard } from "./pg_board.ts";
import { pgTestOptions, startPostgres } from "./pg_harness.ts";

const CHROMIUM_PATH = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox", // tests run as root, where Chromium refuses its sandbox
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  // Every host name fails to resolve, so a page cannot reach the internet.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];
const ACTION_TIMEOUT_MS = 10_000;

function chromiumMissing(): boolean {
  try {
    return !Deno.statSync(CHROMIUM_PATH).isFile;
  } catch {
    return true;
  }
}

const IN_CI = Deno.env.get("CI") === "true";
if (chromiumMissing()) {
  console.error(
    `\n${"!".repeat(72)}\n!! ${IN_CI ? "FAILING" : "SKIPPING"} the live-update browser test: ` +
      `no ${CHROMIUM_PATH}; install it with: apt-get install -y chromium\n${"!".repeat(72)}\n`,
  );
}

Deno.test({
  name: "browser: a message posted on one board process appears live on another's page",
  ignore: pgTestOptions().ignore || (chromiumMissing() && !IN_CI),
  async fn() {
    await using pg = await startPostgres();
    await using a = await startPgBoard(pg);
    await using b = await startPgBoard(pg);
    const browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: ACTION_TIMEOUT_MS,
    });
    try {
      const context = await browser.newContext();
      context.setDefaultTimeout(ACTION_TIMEOUT_MS);
      const writer = await context.newPage();
      const reader = await context.newPage();
      const dialogs: string[] = [];
      const failures: string[] = [];
      for (const page of [writer, reader]) {
        page.on("dialog", (dialog) => {
          dialogs.push(dialog.message());
          void dialog.dismiss();
        });
        page.on("pageerror", (error) => failures.push(error.message));
        page.on("console", (message) => {
          if (message.type() === "error") failures.push(message.text());
        });
      }
      await writer.goto(a.url);
      // The reader's live script is connected once its event stream has answered.
      const connected = reader.waitForResponse((r) => new URL(r.url()).pathname === "/events");
      await reader.goto(b.url);
      assert.equal((await connected).status(), 200);
      let readerLoads = 0;
      reader.on("load", () => readerLoads++);

      const text = `Hello from A <script>alert("x")</script>`;
      await writer.fill("#name", "Ann");
      await writer.fill("#message", text);
      await writer.click("text=Save Message");
      await writer.waitForURL(a.url);

      const live = reader.locator("article.message").first();
      await live.waitFor();
      assert.equal(await live.locator("p.text").textContent(), text, "shown as text");
      assert.equal(await live.locator("span.name").textContent(), "Ann");
      assert.match((await live.locator("time").getAttribute("datetime")) ?? "", /Z$/);
      assert.equal(await reader.locator("p.empty").count(), 0);

      await writer.click("text=Clear Messages");
      await reader.locator("p.empty", { hasText: "No messages yet." }).waitFor();
      assert.equal(await reader.locator("article.message").count(), 0);

      assert.equal(readerLoads, 0, "the reader's page never reloaded");
      assert.deepEqual(dialogs, [], "no script from a message ran");
      assert.deepEqual(failures, [], "no script errors or CSP violations");
      await context.close();
    } finally {
      await browser.close();
    }
  },
});
