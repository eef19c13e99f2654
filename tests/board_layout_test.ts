// The board page in a real Chromium on a phone-sized screen: no poster's name or message
// may make the page wider than the screen (a sideways scroll for every reader).
import assert from "node:assert/strict";
import { launchChromium, planBrowserTests } from "./_browser.ts";
import { postJson, startBoard, tempFolder } from "./_board.ts";

const plan = planBrowserTests();

Deno.test({
  name:
    "layout: a 40-character name of wide letters stays within a 360 px screen",
  ignore: plan.ignore,
  async fn() {
    if (plan.missing) throw new Error(plan.missing);
    await using folder = await tempFolder();
    await Deno.mkdir(`${folder.path}/data`);
    await using board = await startBoard(folder.path);
    // U+FDFA, one of the widest letters there is, and plain W: names with no place to break.
    for (const name of ["\uFDFA".repeat(40), "W".repeat(40)]) {
      assert.equal(
        (await postJson(board.url, { text: "hi", name })).status,
        201,
      );
    }
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({
        viewport: { width: 360, height: 640 },
      });
      await page.goto(board.url);
      // Runs in the page (no DOM types here): the root element's scrolling and visible width.
      const { scroll, client } = await page.locator("html").evaluate((
        html,
      ) => ({ scroll: html.scrollWidth, client: html.clientWidth }));
      assert.ok(
        scroll <= client,
        `the page is ${scroll} px wide on a ${client} px screen`,
      );
    } finally {
      await browser.close();
    }
  },
});
