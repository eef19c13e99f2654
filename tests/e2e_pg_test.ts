// Browser test of live updates across processes: two pages in Debian's Chromium, each on its
// own board process, both on one PostgreSQL database. A message posted in one page appears in
// the other without a reload, as text; a clear in one empties the other.
//
// Chromium is driven through npm:playwright-core with /usr/bin/chromium (Playwright's own
// browser download is never used). Skipped with a loud message when Chromium or PostgreSQL
// is missing, except with CI=true, where it fails.
import assert from "node:assert/strict";
import {
  ACTION_TIMEOUT_MS,
  launchChromium,
  planBrowserTests,
} from "./_browser.ts";
import { startPgBoard } from "./_board.ts";
import { pgTestOptions, startPostgres } from "./_postgres.ts";

// Without Chromium: a loud skip for a developer, a failure under CI=true.
const browserPlan = planBrowserTests();

Deno.test({
  name:
    "browser: a message posted on one board process appears live on another's page",
  ignore: pgTestOptions().ignore || browserPlan.ignore,
  async fn() {
    if (browserPlan.missing) {
      throw new Error(`${browserPlan.missing} (CI=true: it must run)`);
    }
    await using pg = await startPostgres();
    await using a = await startPgBoard(pg);
    await using b = await startPgBoard(pg);
    const browser = await launchChromium();
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
      const connected = reader.waitForResponse((r) =>
        new URL(r.url()).pathname === "/events"
      );
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
      assert.equal(
        await live.locator("p.text").textContent(),
        text,
        "shown as text",
      );
      assert.equal(await live.locator("span.name").textContent(), "Ann");
      assert.match(
        (await live.locator("time").getAttribute("datetime")) ?? "",
        /Z$/,
      );
      assert.equal(await reader.locator("p.empty").count(), 0);

      await writer.click("text=Clear Messages");
      await reader.locator("p.empty", { hasText: "No messages yet." })
        .waitFor();
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
