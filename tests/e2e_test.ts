// Browser tests: a real Chromium does what a person does with each of our
// three servers, each started as the README starts it, on 127.0.0.1 port 0.
//
// Every page a visit shows is also checked with axe-core (WCAG 2.1 A and AA
// plus best practices) in a tab of its own, and a visit fails on any
// violation, listed page by page.
//
// Needs Debian's Chromium (`apt-get install -y chromium`). Without it these
// tests are skipped with a loud message, except in CI (CI=true), where they
// fail. Screenshots of every page are kept in a temp folder named in the log.
import assert from "node:assert/strict";
import type {
  Browser,
  BrowserContext,
  Page,
  Response,
} from "npm:playwright-core@1.65.1";
import {
  type AccessibilityAudit,
  ACTION_TIMEOUT_MS,
  launchChromium,
  openAccessibilityAudit,
  planBrowserTests,
  readPngSize,
  saveScreenshot,
} from "./_browser.ts";
import { type RunningProcess, startScript } from "./_process.ts";

/** Where each script listens, after the README command's own flags. */
const ON_PORT_0 = ["--hostname", "127.0.0.1", "--port", "0"];

const plan = planBrowserTests();
let screenshotFolder: string | undefined;

/**
 * One visit per server, run as the steps of one test that shares one browser
 * (a Chromium launch takes seconds). Each visit starts the server, runs, then
 * closes every tab and context it opened, so the next starts with no cookie
 * or page of the last. The steps of a visit are one person's session, so each
 * builds on the last. When the visit passed, no page it checked may break an
 * axe-core rule, and the server must stop cleanly on SIGTERM (exit code 0).
 */
interface Visit {
  name: string;
  startServer: () => Promise<RunningProcess>;
  visit: (
    t: Deno.TestContext,
    browser: Browser,
    server: RunningProcess,
    audit: AccessibilityAudit,
  ) => Promise<void>;
}

const visits: Visit[] = [];

/** Adds a visit to the browser test at the end of this file. */
function browserTest(
  name: Visit["name"],
  startServer: Visit["startServer"],
  visit: Visit["visit"],
) {
  visits.push({ name, startServer, visit });
}

/** Runs one visit in `browser`; closes what it opened, even when it fails. */
async function runVisit(
  t: Deno.TestContext,
  browser: Browser,
  { startServer, visit }: Visit,
): Promise<void> {
  try {
    const audit = await openAccessibilityAudit(browser);
    const server = await startServer();
    let visited = false;
    try {
      await visit(t, browser, server, audit);
      visited = true;
    } finally {
      await audit.close();
      const { code } = await server.stop();
      if (visited) {
        assert.equal(code, 0, "SIGTERM stops the server with exit code 0");
      }
    }
    assert.ok(audit.checked.length > 0, "the visit checked its pages");
    audit.assertNoViolations();
  } finally {
    for (const context of browser.contexts()) await context.close();
  }
}

/** Opens a tab; tabs of one context share cookies, like one person's browser. */
async function newPage(owner: Browser | BrowserContext): Promise<Page> {
  const page = await owner.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  return page;
}

/** Saves a screenshot of a page that shows text, and checks it is a real PNG image. */
async function screenshot(page: Page, name: string): Promise<void> {
  assert.notEqual(
    (await page.locator("body").innerText()).trim(),
    "",
    `${name}: blank page`,
  );
  if (screenshotFolder === undefined) {
    screenshotFolder = await Deno.makeTempDir({ prefix: "deno-servers-e2e-" });
    console.log(`screenshots: ${screenshotFolder}`);
  }
  const path = await saveScreenshot(page, screenshotFolder, name);
  const size = readPngSize(await Deno.readFile(path));
  assert.ok(size, `${path} is not a PNG`);
  assert.ok(size.width > 0 && size.height > 0, `${path} is empty`);
}

/** Fails when the page is wider than the window, so a person must scroll sideways. */
async function assertNoSidewaysScroll(page: Page): Promise<void> {
  const { content, window } = await page.locator("html").evaluate((html) => ({
    content: html.scrollWidth,
    window: html.clientWidth,
  }));
  assert.ok(
    content <= window,
    `${page.url()} is ${content}px wide in a ${window}px window`,
  );
}

/** Clicks, waits for the page it leads to, and returns that page's response. */
async function clickAndWait(
  page: Page,
  click: () => Promise<void>,
): Promise<Response> {
  const navigation = page.waitForNavigation();
  await click();
  const response = await navigation;
  assert.ok(response, "the click loaded a page");
  return response;
}

browserTest(
  "tiny server: the hello page shows the headers this browser sent",
  () => startScript("server_tiny.ts", ["--allow-net=127.0.0.1"], ON_PORT_0),
  async (_t, browser, server, audit) => {
    const page = await newPage(browser);
    const response = await page.goto(`${server.origin}/`);
    assert.ok(response);
    assert.equal(response.status(), 200);

    // What Chromium really put on the wire, as Playwright recorded it.
    const sent = await response.request().allHeaders();
    const userAgent = sent["user-agent"];
    assert.ok(userAgent, "Chromium sent a User-Agent");
    assert.equal(userAgent, await page.evaluate(() => navigator.userAgent));

    const text = await page.locator("body").innerText();
    assert.match(text, /\bGET\b/);
    for (const [name, value] of Object.entries(sent)) {
      if (name.startsWith(":")) continue; // HTTP/2 pseudo-headers; none on HTTP/1.1
      assert.ok(
        text.toLowerCase().includes(name),
        `the page names the ${name} header`,
      );
      // Values such as sec-ch-ua contain quotes: shown as text, not markup.
      assert.ok(text.includes(value), `the page shows ${name}: ${value}`);
    }

    // The console shows the same head, the chapter's point.
    await server.waitForLine(/^GET \/ HTTP\/1\.1$/);
    await server.waitForLine(
      new RegExp(`^user-agent: ${escapeRegExp(userAgent)}$`, "i"),
    );
    await screenshot(page, "tiny-hello");
    await audit.check("tiny: hello page", page.url());

    // Long header values (user-agent, sec-ch-ua) wrap on a phone-sized screen.
    await page.setViewportSize({ width: 360, height: 740 });
    assert.equal(
      await page.locator('meta[name="viewport"]').count(),
      1,
      "viewport",
    );
    await assertNoSidewaysScroll(page);

    const missing = await page.goto(`${server.origin}/no-such-page`);
    assert.equal(missing?.status(), 404);
    await screenshot(page, "tiny-404");
    await audit.check("tiny: 404 page", page.url());
  },
);

browserTest(
  "file server: a person browses the demo site and sends the form",
  () =>
    startScript(
      "server_files.ts",
      ["--allow-net=127.0.0.1", "--allow-read=./static"],
      ["--root", "./static", ...ON_PORT_0],
    ),
  async (t, browser, server, audit) => {
    const page = await newPage(browser);
    const failures: string[] = [];
    // Pages' own statuses are checked step by step; their parts (stylesheet,
    // picture) must all load.
    page.on("response", (r) => {
      if (!r.request().isNavigationRequest() && r.status() >= 400) {
        failures.push(`${r.status()} ${r.url()}`);
      }
    });
    page.on("requestfailed", (r) => failures.push(`failed ${r.url()}`));
    const stylesheets: Promise<Record<string, string>>[] = [];
    page.on("response", (r) => {
      if (new URL(r.url()).pathname === "/style.css") {
        stylesheets.push(r.allHeaders());
      }
    });
    const index = `${server.origin}/`;
    const pageHtml = `${server.origin}/page.html`;
    const formHtml = `${server.origin}/form.html`;

    await t.step("the index page opens", async () => {
      const response = await page.goto(index);
      assert.equal(response?.status(), 200);
      assert.equal(
        await page.locator("html").getAttribute("lang") !== null,
        true,
      );
      await screenshot(page, "files-index");
      await audit.check("files: index.html", page.url());
    });

    await t.step("the stylesheet arrives compressed with br", async () => {
      assert.ok(stylesheets.length > 0, "the index loads /style.css");
      const headers = await stylesheets[0];
      assert.equal(headers["content-encoding"], "br");
      assert.equal(headers["vary"], "Accept-Encoding");
    });

    await t.step(
      "the stylesheet styles the page",
      async () => {
        // h1 { color: #1e5aa0 } from static/style.css.
        // Runs in the page, where getComputedStyle exists (no DOM types here).
        const color = await page.locator("h1").first().evaluate((h) =>
          // deno-lint-ignore no-explicit-any
          (globalThis as any).getComputedStyle(h).color
        );
        assert.equal(color, "rgb(30, 90, 160)");
      },
    );

    await t.step(
      "its link opens page.html, whose picture really loads",
      async () => {
        await clickAndWait(
          page,
          () => page.locator('a[href$="page.html"]').first().click(),
        );
        assert.equal(page.url(), pageHtml);
        await page.waitForLoadState("load");
        const images = await page.locator("img").evaluateAll((imgs) =>
          imgs.map((img) => ({
            src: img.currentSrc,
            loaded: img.complete && img.naturalWidth > 0,
          }))
        );
        assert.ok(images.length > 0, "page.html shows a picture");
        for (const image of images) {
          assert.ok(image.loaded, `${image.src} loaded`);
        }
        await screenshot(page, "files-page");
        await audit.check("files: page.html", page.url());
      },
    );

    await t.step("the browser asks for the favicon and gets it", async () => {
      // Chromium fetches favicons outside the page, so Playwright does not
      // report them; the server's access log does.
      await server.waitForLine(/"GET \/favicon\.ico HTTP\/1\.1" 200 /);
    });

    await t.step(
      "back returns to the index and forward to page.html",
      async () => {
        await page.goBack();
        assert.equal(page.url(), index);
        await page.goForward();
        assert.equal(page.url(), pageHtml);
        await page.goBack();
        assert.equal(page.url(), index);
      },
    );

    const person = `Zoë <b>Ann</b> & "Co"`;
    await t.step("form.html filled and sent names the person", async () => {
      await clickAndWait(
        page,
        () => page.locator('a[href$="form.html"]').first().click(),
      );
      assert.equal(page.url(), formHtml);
      await page.getByLabel(/first\s*name/i).fill(person);
      const select = page.locator('select[name="food"]');
      if (await select.count() > 0) {
        await select.selectOption({ label: "Tacos" });
      } else await page.getByLabel("Tacos", { exact: true }).check();
      await screenshot(page, "files-form");
      await audit.check("files: form.html", page.url());

      const response = await clickAndWait(
        page,
        () => page.locator('form [type="submit"]').first().click(),
      );
      assert.equal(response.status(), 200);
      const url = new URL(page.url());
      assert.equal(url.pathname, "/suggest");
      assert.equal(url.searchParams.get("firstname"), person);
      assert.equal(url.searchParams.get("food"), "Tacos");
      const text = await page.locator("body").innerText();
      assert.ok(
        text.includes(person),
        "the suggestion names the person, as text",
      );
      assert.match(text, /tacos/i);
      assert.equal(
        await page.locator("body b").count(),
        0,
        "the name's <b> is not markup",
      );
      await screenshot(page, "files-suggest");
      await audit.check("files: /suggest answer", page.url());
    });

    await t.step(
      "back returns to the form and forward to the suggestion",
      async () => {
        const suggestion = page.url();
        await page.goBack();
        assert.equal(page.url(), formHtml);
        await page.goForward();
        assert.equal(page.url(), suggestion);
        assert.ok((await page.locator("body").innerText()).includes(person));
      },
    );

    await t.step("the demo pages fit a phone-sized screen", async () => {
      await page.setViewportSize({ width: 360, height: 740 });
      try {
        for (const url of [index, pageHtml, formHtml]) {
          await page.goto(url);
          assert.equal(
            await page.locator('meta[name="viewport"]').count(),
            1,
            `${url} viewport`,
          );
          await assertNoSidewaysScroll(page);
        }
        await screenshot(page, "files-form-phone");
      } finally {
        await page.setViewportSize({ width: 1280, height: 720 });
      }
    });

    await t.step(
      "a suggestion without a name gets 400 and a link back to the form",
      async () => {
        const response = await page.goto(
          `${server.origin}/suggest?firstname=&food=Tacos`,
        );
        assert.equal(response?.status(), 400);
        await screenshot(page, "files-suggest-400");
        await audit.check("files: /suggest 400 page", page.url());
        await clickAndWait(
          page,
          () => page.locator('a[href$="form.html"]').first().click(),
        );
        assert.equal(page.url(), formHtml);
      },
    );

    await t.step("a missing page gets 404", async () => {
      const response = await page.goto(`${server.origin}/no-such-page.html`);
      assert.equal(response?.status(), 404);
      await screenshot(page, "files-404");
      await audit.check("files: 404 page", page.url());
    });

    assert.deepEqual(
      failures,
      [],
      "every picture, stylesheet and script loaded",
    );
  },
);

browserTest(
  "message board: a person posts, reloads, is remembered and clears",
  () => startBoard(),
  async (t, browser, server, audit) => {
    const person = await browser.newContext();
    const page = await newPage(person);
    const dialogs: string[] = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss().catch(() => {});
    });
    const posts: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST") posts.push(r.url());
    });
    const messageBox = page.locator('textarea[name="message"]');
    const save = page.getByRole("button", { name: "Save Message" });

    /** Posts through the form; returns the response of the page it ends on. */
    const post = async (text: string): Promise<Response> => {
      await messageBox.fill(text);
      return await clickAndWait(page, () => save.click());
    };

    await t.step("the empty board opens", async () => {
      const response = await page.goto(`${server.origin}/`);
      assert.equal(response?.status(), 200);
      await page.getByRole("heading", { name: "Tiny Message Board" }).waitFor();
      assert.deepEqual(await readMessages(page), []);
      await screenshot(page, "board-empty");
      await audit.check("board: empty", page.url());
    });

    const first = "Hello from Chromium\nand a second line";
    await t.step("a posted message appears with its time", async () => {
      const before = Date.now();
      const response = await post(first);
      const after = Date.now();
      // POST answered 303 See Other, then the browser loaded the page by GET.
      assert.equal(response.status(), 200);
      assert.equal(response.request().method(), "GET");
      const postResponse = await response.request().redirectedFrom()
        ?.response();
      assert.equal(postResponse?.status(), 303);

      const messages = await readMessages(page);
      assert.equal(messages.length, 1);
      const [message] = messages;
      assert.ok(
        message.text.includes(first),
        "text shown with its line break kept",
      );
      assert.match(message.text, /Posted:/);
      const postedAt = Date.parse(message.datetime);
      assert.ok(
        !Number.isNaN(postedAt),
        `datetime ${message.datetime} is a date`,
      );
      // The board may drop milliseconds; allow a second on each side.
      assert.ok(
        postedAt >= before - 1000 && postedAt <= after + 1000,
        "time of posting",
      );
      await screenshot(page, "board-one-message");
      await audit.check("board: one message", page.url());
    });

    await t.step("reloading the page does not post again", async () => {
      const postsBefore = posts.length;
      await page.reload();
      await page.reload();
      assert.equal(posts.length, postsBefore, "no POST on reload");
      assert.equal((await readMessages(page)).length, 1);
    });

    await t.step(
      "a message containing <script> is shown as text and runs nothing",
      async () => {
        // Short enough for any sensible length limit.
        const payload =
          `<script>pwned=1;alert(1)</script><img src=/x onerror="pwned=2;alert(2)">`;
        await post(payload);
        const messages = await readMessages(page);
        assert.equal(messages.length, 2);
        assert.ok(
          messages.some((m) => m.text.includes(payload)),
          "payload shown as text",
        );
        assert.ok(
          messages.every((m) => !m.hasMarkup),
          "no script or img element in a message",
        );
        assert.equal(await page.evaluate(() => "pwned" in globalThis), false);
        assert.deepEqual(dialogs, []);
        await screenshot(page, "board-script-as-text");
      },
    );

    const name = "Ada Lovelace";
    await t.step("the name is remembered on the next visit", async () => {
      await page.getByLabel(/name/i).fill(name);
      await post("Signed message");
      const signed = (await readMessages(page)).find((m) =>
        m.text.includes("Signed message")
      );
      assert.ok(signed?.text.includes(name), "the message shows the name");

      const cookies = await person.cookies();
      const cookie = cookies.find((c) =>
        decodeURIComponent(c.value).includes(name)
      );
      assert.ok(cookie, "a cookie keeps the name");
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, "Lax");
      assert.equal(
        await page.locator("html").evaluate((html) =>
          html.ownerDocument.cookie
        ),
        "",
        "HttpOnly: hidden from scripts",
      );

      const nextVisit = await newPage(person);
      try {
        await nextVisit.goto(`${server.origin}/`);
        assert.equal(await nextVisit.getByLabel(/name/i).inputValue(), name);
      } finally {
        await nextVisit.close();
      }
    });

    await t.step(
      "a too long message gets an error and the text is kept",
      async () => {
        const limit = await readMessageLimit(page);
        const tooLong = "x".repeat(limit + 1);
        // A browser will not type past maxlength; a person with an old browser
        // or a script can still send it, so the server must refuse it too.
        await messageBox.evaluate((box) => box.removeAttribute("maxlength"));
        const response = await post(tooLong);
        assert.equal(response.status(), 422);
        assert.equal(response.request().method(), "POST");
        assert.match(
          await page.locator("body").innerText(),
          /too long|at most|characters/i,
        );
        assert.equal(
          await messageBox.inputValue(),
          tooLong,
          "the typed text is kept",
        );
        await screenshot(page, "board-too-long");
        await audit.checkAfter("board: a refused post", async (other) => {
          await other.goto(`${server.origin}/`);
          const box = other.locator('textarea[name="message"]');
          await box.evaluate((b) => b.removeAttribute("maxlength"));
          await box.fill(tooLong);
          const answer = await clickAndWait(
            other,
            () => other.getByRole("button", { name: "Save Message" }).click(),
          );
          assert.equal(answer.status(), 422);
        });
        await page.goto(`${server.origin}/`);
        assert.equal((await readMessages(page)).length, 3, "nothing stored");
      },
    );

    await t.step(
      "a long unbroken message needs no sideways scrolling on a phone",
      async () => {
        await page.setViewportSize({ width: 360, height: 740 });
        try {
          await post("Supercalifragilistic".repeat(15)); // one 300-letter word
          await assertNoSidewaysScroll(page);
          await screenshot(page, "board-phone");
          await audit.check("board: several messages", page.url());
        } finally {
          await page.setViewportSize({ width: 1280, height: 720 });
        }
      },
    );

    await t.step("Clear empties the board", async () => {
      await clickAndWait(
        page,
        () => page.getByRole("button", { name: "Clear Messages" }).click(),
      );
      assert.deepEqual(await readMessages(page), []);
      await page.reload();
      assert.deepEqual(await readMessages(page), []);
      await screenshot(page, "board-cleared");
      await audit.check("board: cleared", page.url());
      await audit.check("board: error page", `${server.origin}/no-such-page`);
    });

    assert.deepEqual(dialogs, [], "no dialog ever opened");
  },
);

browserTest(
  "file server: a person browses a folder listing, sorts it, on a phone and in dark mode",
  startSortableListingServer,
  async (t, browser, server, audit) => {
    const page = await newPage(browser);
    const fileNames = async () =>
      await page.locator("tbody td.name a span").allInnerTexts();

    await t.step(
      "the listing shows folders first, then files by name",
      async () => {
        const response = await page.goto(`${server.origin}/`);
        assert.equal(response?.status(), 200);
        assert.equal(await page.getByRole("main").count(), 1);
        assert.deepEqual(await fileNames(), [
          "photos/",
          "report.pdf",
          "small.txt",
          LONG_NAME,
        ]);
        await page.getByRole("cell", { name: "2.9 MB" }).waitFor();
        await screenshot(page, "listing-by-name");
        await audit.check("files: directory listing", page.url());
      },
    );

    await t.step(
      "a column header sorts, and sorts the other way again",
      async () => {
        await clickAndWait(
          page,
          () => page.getByRole("link", { name: /^Size/ }).click(),
        );
        assert.equal(new URL(page.url()).search, "?sort=size&order=desc");
        assert.equal(
          await page.getByRole("columnheader", { name: /^Size/ }).getAttribute(
            "aria-sort",
          ),
          "descending",
        );
        assert.deepEqual(await fileNames(), [
          "photos/",
          "report.pdf",
          "small.txt",
          LONG_NAME,
        ]);
        await clickAndWait(
          page,
          () => page.getByRole("link", { name: /^Size/ }).click(),
        );
        assert.equal(new URL(page.url()).search, "?sort=size&order=asc");
        assert.deepEqual(await fileNames(), [
          "photos/",
          LONG_NAME,
          "small.txt",
          "report.pdf",
        ]);
      },
    );

    await t.step(
      "into a folder and back by its breadcrumb, order kept",
      async () => {
        await clickAndWait(
          page,
          () => page.getByRole("link", { name: "photos/" }).click(),
        );
        assert.equal(new URL(page.url()).pathname, "/photos/");
        assert.equal(new URL(page.url()).search, "?sort=size&order=asc");
        await page.getByRole("link", { name: "Parent folder" }).waitFor();
        assert.equal(
          await page.locator('h1 [aria-current="page"]').innerText(),
          "photos/",
        );
        await screenshot(page, "listing-subfolder-by-size");
        await audit.check("files: subfolder listing, by size", page.url());
        await clickAndWait(
          page,
          () => page.locator("h1").getByRole("link", { name: "/" }).click(),
        );
        assert.equal(new URL(page.url()).pathname, "/");
        assert.equal(new URL(page.url()).search, "?sort=size&order=asc");
      },
    );

    await t.step(
      "a name with a right-to-left override reads in its real order",
      async () => {
        await page.goto(`${server.origin}/photos/`);
        const link = page.locator("tbody td.name a", { hasText: "evil" });
        // The characters as the screen shows them, left to right, against the
        // order they have in the page: an override obeyed reverses "txt.exe".
        const { shown, text } = await link.locator("span").first().evaluate(
          // deno-lint-ignore no-explicit-any
          (span: any) => {
            const doc = span.ownerDocument;
            const chars: { char: string; x: number }[] = [];
            const walker = doc.createTreeWalker(span, 4 /* text nodes */);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
              for (let i = 0; i < node.data.length; i++) {
                const range = doc.createRange();
                range.setStart(node, i);
                range.setEnd(node, i + 1);
                const { x, width } = range.getBoundingClientRect();
                if (width > 0) chars.push({ char: node.data[i], x });
              }
            }
            const text = chars.map(({ char }) => char).join("");
            chars.sort((a, b) => a.x - b.x);
            return { shown: chars.map(({ char }) => char).join(""), text };
          },
        );
        assert.equal(shown, text);
        assert.match(text, /^evil.*txt\.exe$/);
      },
    );

    await t.step(
      "on a 360 px phone, a long name wraps: no sideways scroll",
      async () => {
        await page.setViewportSize({ width: 360, height: 740 });
        try {
          await page.goto(`${server.origin}/`);
          assert.equal(await page.getByText(LONG_NAME).count(), 1);
          await assertNoSidewaysScroll(page);
        } finally {
          await page.setViewportSize({ width: 1280, height: 720 });
        }
      },
    );

    await t.step(
      "on a 360 px phone, every row's link is big enough to tap",
      async () => {
        await page.setViewportSize({ width: 360, height: 740 });
        try {
          await page.goto(`${server.origin}/`);
          const heights = await page.locator("tbody td.name a").evaluateAll((
            links,
          ) => links.map((link) => link.getBoundingClientRect().height));
          for (const height of heights) {
            assert.ok(height >= 44, `a row link is ${height}px tall`);
          }
          await screenshot(page, "listing-phone");
        } finally {
          await page.setViewportSize({ width: 1280, height: 720 });
        }
      },
    );

    await t.step("dark mode follows the system setting", async () => {
      const background = () =>
        // Runs in the page, where getComputedStyle exists (no DOM types here).
        page.locator("body").evaluate((body) =>
          // deno-lint-ignore no-explicit-any
          (globalThis as any).getComputedStyle(body).backgroundColor
        );
      await page.emulateMedia({ colorScheme: "light" });
      await page.goto(`${server.origin}/photos/`);
      assert.equal(await background(), "rgb(255, 255, 255)");
      await page.emulateMedia({ colorScheme: "dark" });
      assert.equal(await background(), "rgb(13, 17, 23)");
      await screenshot(page, "listing-dark");
      await audit.checkAfter("files: listing in dark mode", async (other) => {
        await other.emulateMedia({ colorScheme: "dark" });
        await other.goto(page.url());
      });
      await page.setViewportSize({ width: 360, height: 740 });
      await page.goto(`${server.origin}/`);
      await screenshot(page, "listing-dark-phone");
    });
  },
);

/** A file name long enough to need wrapping on a phone. */
const LONG_NAME =
  "the-very-long-file-name-without-any-spaces-that-must-wrap-on-a-phone.txt";

/** The file server with `--dir-listing` on a temp folder without index.html. */
function startSortableListingServer(): Promise<RunningProcess> {
  return startInTempFolder("deno-servers-e2e-list-", async (folder) => {
    await Deno.mkdir(`${folder}/photos`);
    await Deno.writeFile(`${folder}/report.pdf`, new Uint8Array(2_900_000));
    await Deno.writeTextFile(`${folder}/small.txt`, "small file\n");
    await Deno.writeTextFile(`${folder}/${LONG_NAME}`, "x");
    await Deno.writeFile(`${folder}/photos/beach.jpg`, new Uint8Array(150_000));
    // The right-to-left override trick: shown as "evilexe.txt" if obeyed.
    await Deno.writeTextFile(`${folder}/photos/evil\u202etxt.exe`, "x");
    return await startScript(
      "server_files.ts",
      ["--allow-net=127.0.0.1", `--allow-read=${folder}`],
      ["--root", folder, "--dir-listing", "--quiet", ...ON_PORT_0],
    );
  });
}

/**
 * Runs `start` on a fresh temp folder, which is removed once the server it
 * started has stopped (or when it fails to start).
 */
async function startInTempFolder(
  prefix: string,
  start: (folder: string) => Promise<RunningProcess>,
): Promise<RunningProcess> {
  const folder = await Deno.makeTempDir({ prefix });
  const removeFolder = () => Deno.remove(folder, { recursive: true });
  let server: RunningProcess;
  try {
    server = await start(folder);
  } catch (error) {
    await removeFolder();
    throw error;
  }
  const stop = async (signal?: Deno.Signal, timeoutMs?: number) => {
    try {
      return await server.stop(signal, timeoutMs);
    } finally {
      await removeFolder();
    }
  };
  return { ...server, stop };
}

const ADMIN_TOKEN = "e2e moderator token";

browserTest(
  "message board: a moderator signs in and deletes a message; another open page drops it live",
  () => startBoard(["--admin-token", ADMIN_TOKEN]),
  async (t, browser, server, audit) => {
    // A reader far from UTC, so the page's local times are visible as such.
    const reader = await browser.newContext({
      timezoneId: "Asia/Tokyo",
      locale: "en-US",
    });
    const moderator = await browser.newContext();
    const readerPage = await newPage(reader);
    const moderatorPage = await newPage(moderator);
    const post = async (text: string) => {
      const response = await fetch(`${server.origin}/api/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text }),
      });
      assert.equal(response.status, 201);
      return (await response.json()) as { id: number; postedAt: string };
    };
    const spam = await post("Buy cheap watches");
    const kept = await post("A kind word");

    let readerLoads = 0;
    readerPage.on("load", () => readerLoads++);
    await t.step(
      "a reader sees both, with times in the reader's own zone",
      async () => {
        await readerPage.goto(`${server.origin}/`);
        await readerPage.locator(`#m${spam.id}`).waitFor();
        const time = readerPage.locator(`#m${kept.id} time`);
        assert.equal(await time.getAttribute("datetime"), kept.postedAt);
        const shown = await time.innerText();
        const expected = new Date(kept.postedAt).toLocaleString("en-US", {
          timeZone: "Asia/Tokyo",
          dateStyle: "medium",
          timeStyle: "medium",
        });
        assert.equal(shown, expected, "Tokyo time, in the reader's language");
        assert.match(await time.getAttribute("title") ?? "", / UTC$/);
        assert.equal(
          await readerPage.locator("section.messages").getAttribute(
            "aria-live",
          ),
          "polite",
        );
        // No moderation buttons for a visitor, only the way to sign in.
        assert.equal(
          await readerPage.getByRole("button", { name: /Delete/ }).count(),
          0,
        );
        await readerPage.getByRole("link", { name: "Sign in as a moderator" })
          .waitFor();
      },
    );

    await t.step(
      "a wrong token is refused",
      async () => {
        await moderatorPage.goto(`${server.origin}/admin`);
        await moderatorPage.getByLabel(/Admin token/).fill("not it at all");
        const refused = await clickAndWait(
          moderatorPage,
          () => moderatorPage.getByRole("button", { name: "Sign in" }).click(),
        );
        assert.equal(refused.status(), 403);
        assert.equal((await moderator.cookies()).length, 0);
      },
    );

    await t.step(
      "the right token signs in with an HttpOnly, SameSite=Strict cookie",
      async () => {
        await moderatorPage.getByLabel(/Admin token/).fill(ADMIN_TOKEN);
        await clickAndWait(
          moderatorPage,
          () => moderatorPage.getByRole("button", { name: "Sign in" }).click(),
        );
        assert.equal(new URL(moderatorPage.url()).pathname, "/");
        const [cookie] = await moderator.cookies();
        assert.equal(cookie.name, "board_admin");
        assert.equal(cookie.httpOnly, true);
        assert.equal(cookie.sameSite, "Strict");
        await screenshot(moderatorPage, "board-moderator");
        await audit.check("board: moderator sign-in", `${server.origin}/admin`);
        await audit.checkAfter("board: a moderator's page", async (page) => {
          await page.goto(`${server.origin}/admin`);
          await page.getByLabel(/Admin token/).fill(ADMIN_TOKEN);
          await clickAndWait(
            page,
            () => page.getByRole("button", { name: "Sign in" }).click(),
          );
        });
        await audit.check(
          "board: clear confirmation",
          `${server.origin}/admin/clear`,
        );
      },
    );

    await t.step(
      "the moderator deletes one message; the reader's page drops it without a reload",
      async () => {
        const loadsBefore = readerLoads;
        await clickAndWait(
          moderatorPage,
          () =>
            moderatorPage.getByRole("button", {
              name: `Delete message ${spam.id}`,
            })
              .click(),
        );
        assert.equal(await moderatorPage.locator(`#m${spam.id}`).count(), 0);
        await readerPage.locator(`#m${spam.id}`).waitFor({ state: "detached" });
        assert.equal(await readerPage.locator(`#m${kept.id}`).count(), 1);
        assert.equal(
          readerLoads,
          loadsBefore,
          "the reader's page was not reloaded",
        );
        await screenshot(readerPage, "board-after-delete");
      },
    );

    await t.step(
      "a message posted now shows live, with a Delete button for the moderator",
      async () => {
        const fresh = await post("Posted while both pages are open");
        await readerPage.locator(`#m${fresh.id}`).waitFor();
        await moderatorPage.getByRole("button", {
          name: `Delete message ${fresh.id}`,
        })
          .waitFor();
        assert.equal(
          await readerPage.getByRole("button", { name: /Delete/ }).count(),
          0,
        );
      },
    );

    await t.step(
      "clearing asks for a confirmation first",
      async () => {
        await clickAndWait(
          moderatorPage,
          () =>
            moderatorPage.getByRole("button", { name: "Clear Messages" })
              .click(),
        );
        assert.equal(new URL(moderatorPage.url()).pathname, "/admin/clear");
        await clickAndWait(
          moderatorPage,
          () =>
            moderatorPage.getByRole("button", { name: "Yes, clear the board" })
              .click(),
        );
        assert.deepEqual(await readMessages(moderatorPage), []);
        await readerPage.locator(`#m${kept.id}`).waitFor({ state: "detached" });
      },
    );

    await t.step(
      "restore brings the messages back, on the reader's page too",
      async () => {
        await clickAndWait(
          moderatorPage,
          () =>
            moderatorPage.getByRole("button", {
              name: "Restore the last cleared messages",
            })
              .click(),
        );
        await moderatorPage.locator(`#m${kept.id}`).waitFor();
        // The reader's page reloads itself on a restore and shows them again.
        await readerPage.locator(`#m${kept.id}`).waitFor();
      },
    );
    await reader.close();
    await moderator.close();
  },
);

/** Starts the board on a data file in a fresh temp folder, removed on stop. */
function startBoard(args: string[] = []): Promise<RunningProcess> {
  return startInTempFolder("deno-servers-e2e-board-", (folder) =>
    startScript(
      "message_board.ts",
      [
        "--allow-net=127.0.0.1",
        `--allow-read=${folder}`,
        `--allow-write=${folder}`,
      ],
      ["--data", `${folder}/messages.jsonl`, ...args, ...ON_PORT_0],
    ));
}

/** One message as the page shows it. */
interface ShownMessage {
  datetime: string;
  text: string;
  hasMarkup: boolean;
}

/** Reads the messages on the board page: each has its own `<time datetime>`. */
async function readMessages(page: Page): Promise<ShownMessage[]> {
  // The callbacks run in the page, where elements have DOM types; Deno's
  // type checker has no DOM library, so their parameters are left untyped.
  return await page.locator("time[datetime]").evaluateAll((times) =>
    times.map((time) => {
      const block = time.closest("article, li") ?? time.parentElement;
      return {
        datetime: time.getAttribute("datetime") ?? "",
        text: block.innerText,
        hasMarkup: block.querySelector("script, img") !== null,
      };
    })
  );
}

/** The message length limit, from the textarea's maxlength. */
async function readMessageLimit(page: Page): Promise<number> {
  const maxLength = await page.locator('textarea[name="message"]').getAttribute(
    "maxlength",
  );
  assert.ok(maxLength, "the message box states its limit (maxlength)");
  return Number(maxLength);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// Registered last, once every browserTest() above has added its visit.
Deno.test({
  name: "browser: a person's visit to each server",
  ignore: plan.ignore,
  async fn(t) {
    if (plan.missing) {
      throw new Error(`${plan.missing} (CI=true: browser tests must run)`);
    }
    const browser = await launchChromium();
    try {
      for (const visit of visits) {
        await t.step(visit.name, (t) => runVisit(t, browser, visit));
      }
    } finally {
      await browser.close();
    }
  },
});
