// The demo site in static/ and the GET form route /suggest, in-process.
import assert from "node:assert/strict";
import { createHandler, MAX_NAME_CHARS } from "../server_files.ts";

const STATIC = new URL("../static/", import.meta.url).pathname;
const handler = createHandler({ fsRoot: STATIC, quiet: true });

async function get(path: string): Promise<[Response, string]> {
  const res = await handler(new Request(`http://localhost${path}`));
  return [res, await res.text()];
}

const PAGES = ["index.html", "page.html", "form.html", "404.html"];

Deno.test("every page is HTML5 with lang, charset, viewport and a title", async () => {
  for (const page of PAGES) {
    const html = await Deno.readTextFile(`${STATIC}${page}`);
    assert.match(html, /^<!doctype html>\n<html lang="en">/i, page);
    assert.match(html, /<meta charset="utf-8">/, page);
    assert.match(
      html,
      /<meta name="viewport" content="width=device-width, initial-scale=1">/,
      page,
    );
    assert.match(html, /<title>[^<]+<\/title>/, page);
    assert.match(html, /<\/html>\s*$/, page);
  }
});

Deno.test("every link, image and stylesheet on every page resolves", async () => {
  for (const page of PAGES) {
    const html = await Deno.readTextFile(`${STATIC}${page}`);
    const targets = [...html.matchAll(/(?:href|src)="([^"]+)"/g)].map((m) =>
      m[1]
    );
    assert.ok(targets.length > 0, page);
    for (const target of targets) {
      const [res] = await get(new URL(target, "http://localhost/").pathname);
      assert.equal(res.status, 200, `${page} -> ${target}`);
    }
  }
});

Deno.test("the pages link to each other", async (t) => {
  await t.step("index links to page and form", async () => {
    const [index, indexHtml] = await get("/");
    assert.equal(
      index.headers.get("content-type"),
      "text/html; charset=utf-8",
    );
    assert.match(indexHtml, /href="page\.html"/);
    assert.match(indexHtml, /href="form\.html"/);
  });
  await t.step("page links back to index", async () => {
    const [, pageHtml] = await get("/page.html");
    assert.match(pageHtml, /href="index\.html"/);
  });
  await t.step("page shows a picture with alt text", async () => {
    const [, pageHtml] = await get("/page.html");
    const img = pageHtml.match(/<img src="([^"]+)"[^>]* alt="[^"]+"/);
    assert.ok(img, "an image with alt text");
    const [picture, svg] = await get(`/${img[1]}`);
    assert.equal(
      picture.headers.get("content-type"),
      "image/svg+xml; charset=utf-8",
    );
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  });
  await t.step("the stylesheet is text/css", async () => {
    const [css] = await get("/style.css");
    assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  });
});

Deno.test("favicon.ico is a real ICO file", async () => {
  const res = await handler(new Request("http://localhost/favicon.ico"));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "image/x-icon");
  const bytes = new Uint8Array(await res.arrayBuffer());
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint16(0, true), 0, "reserved");
  assert.equal(view.getUint16(2, true), 1, "type 1 = icon");
  const count = view.getUint16(4, true);
  assert.ok(count >= 1);
  const width = bytes[6] || 256;
  const size = view.getUint32(14, true);
  const offset = view.getUint32(18, true);
  assert.equal(width, 16);
  assert.equal(offset + size, bytes.length, "the image fills the file");
  const isPng = bytes[offset] === 0x89 && bytes[offset + 1] === 0x50;
  const isBmp = view.getUint32(offset, true) === 40; // BITMAPINFOHEADER size
  assert.ok(isPng || isBmp, "PNG or BMP image inside");
});

Deno.test("the form", async (t) => {
  const [, html] = await get("/form.html");
  await t.step("asks a first name and a food by GET to /suggest", () => {
    assert.match(html, /<form method="get" action="\/suggest">/);
    assert.match(html, /name="firstname"/);
    assert.match(html, /<select id="food" name="food">/);
    for (const food of ["Pizza", "Tacos", "Salad"]) {
      assert.match(html, new RegExp(`<option>${food}</option>`));
    }
  });
  await t.step("has no password field, and says why", () => {
    assert.doesNotMatch(html, /type="password"/i);
    assert.match(html, /GET form puts every field in the URL/);
  });
});

Deno.test("/suggest answers by name with a suggestion for the food", async () => {
  const [res, html] = await get("/suggest?firstname=John&food=Tacos");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(html, /Hello, John!/);
  assert.match(html, /tacos al pastor/);
  assert.match(html, /<html lang="en">/);
  for (const food of ["Pizza", "Salad"]) {
    const [ok, page] = await get(`/suggest?firstname=Ann&food=${food}`);
    assert.equal(ok.status, 200);
    assert.match(page, new RegExp(`you like ${food.toLowerCase()}`));
  }
});

Deno.test("/suggest escapes the name", async () => {
  const name = `<script>alert("x")</script> & 'Jo'`;
  const query = new URLSearchParams({ firstname: name, food: "Pizza" });
  const [res, html] = await get(`/suggest?${query}`);
  assert.equal(res.status, 200);
  assert.ok(!html.includes("<script>"), html);
  assert.ok(
    html.includes(
      "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;Jo&#39;",
    ),
    html,
  );
});

Deno.test("/suggest reads a name the form sent with + for spaces", async () => {
  const [, spaced] = await get("/suggest?firstname=Mary+Ann&food=Salad");
  assert.match(spaced, /Hello, Mary Ann!/);
});

Deno.test("/suggest: missing name or unknown food is 400 with a link to the form", async () => {
  const bad = [
    "/suggest",
    "/suggest?food=Tacos",
    "/suggest?firstname=&food=Tacos",
    "/suggest?firstname=%20%20&food=Tacos",
    "/suggest?firstname=John",
    "/suggest?firstname=John&food=Sushi",
    "/suggest?firstname=John&food=tacos",
    "/suggest?firstname=John&food=toString",
    "/suggest?firstname=John&food=__proto__",
    `/suggest?firstname=${"x".repeat(MAX_NAME_CHARS + 1)}&food=Tacos`,
  ];
  for (const path of bad) {
    const [res, html] = await get(path);
    assert.equal(res.status, 400, path);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.match(html, /<a href="\/form\.html">/, path);
  }
  const [head] = [
    await handler(
      new Request("http://localhost/suggest?firstname=J&food=Tacos", {
        method: "HEAD",
      }),
    ),
  ];
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
});

Deno.test("a missing page gets the site's 404.html", async () => {
  const [res, html] = await get("/no-such-page.html");
  assert.equal(res.status, 404);
  assert.equal(html, await Deno.readTextFile(`${STATIC}404.html`));
});
