// The directory listing of server_files.ts: the pure parts as tables (sizes,
// query, Accept, breadcrumbs, order), then serveDir in-process for the HTML
// and JSON pages (escaping, hidden entries, sort links, 400s).
import assert from "node:assert/strict";
import {
  acceptsJsonListing,
  formatSize,
  listingBreadcrumbs,
  type ListingEntry,
  MAX_CONCURRENT_LISTINGS,
  MAX_WAITING_LISTINGS,
  parseListingQuery,
  renderListing,
  type ServeDirOptions,
  sortListing,
} from "../server_files.ts";
import { makeTree, mkfifo, serveDirAt } from "./_files.ts";

/** {@link serveDirAt} with listings on. */
function list(
  root: string,
  path: string,
  init: RequestInit = {},
  options: ServeDirOptions = {},
) {
  return serveDirAt(root, path, init, { showDirListing: true, ...options });
}

// --- Pure parts --------------------------------------------------------------

Deno.test("formatSize: SI units, one decimal below 10, no 1000 kB", () => {
  const table: [number, string][] = [
    [0, "0 B"],
    [1, "1 B"],
    [999, "999 B"],
    [1000, "1.0 kB"],
    [1049, "1.0 kB"],
    [1050, "1.1 kB"],
    [9_949, "9.9 kB"],
    [9_950, "10 kB"],
    [15_360, "15 kB"],
    [999_499, "999 kB"],
    [999_500, "1.0 MB"],
    [999_999, "1.0 MB"],
    [2_900_000, "2.9 MB"],
    [1_500_000_000, "1.5 GB"],
    [4_000_000_000_000, "4.0 TB"],
    [Number.MAX_SAFE_INTEGER, "9.0 PB"],
  ];
  for (const [bytes, shown] of table) {
    assert.equal(formatSize(bytes), shown, String(bytes));
  }
});

Deno.test("parseListingQuery: known values, defaults, 400 messages for the rest", () => {
  const ok: [string, object][] = [
    ["", { sort: "name", order: "asc", format: null }],
    ["?sort=size", { sort: "size", order: "asc", format: null }],
    ["?sort=time&order=desc", { sort: "time", order: "desc", format: null }],
    ["?order=desc&sort=name", { sort: "name", order: "desc", format: null }],
    ["?format=json", { sort: "name", order: "asc", format: "json" }],
    ["?format=html&sort=size", { sort: "size", order: "asc", format: "html" }],
    // Parameters that are not ours (cache busters, trackers) are ignored.
    ["?utm_source=x&v=3", { sort: "name", order: "asc", format: null }],
  ];
  for (const [search, expected] of ok) {
    assert.deepEqual(parseListingQuery(search), expected, search);
  }
  const bad: [string, string][] = [
    ["?sort=colour", "sort must be name, size or time"],
    ["?sort=", "sort must be name, size or time"],
    ["?sort=NAME", "sort must be name, size or time"],
    ["?sort=name&sort=size", "sort must be name, size or time"],
    ["?order=up", "order must be asc or desc"],
    ["?format=xml", "format must be html or json"],
    ["?sort=%3Cscript%3E", "sort must be name, size or time"],
  ];
  for (const [search, problem] of bad) {
    assert.equal(parseListingQuery(search), problem, search);
  }
});

Deno.test("acceptsJsonListing: JSON only when asked for at least as much as HTML", () => {
  const table: [string | null, boolean][] = [
    [null, false],
    ["", false],
    ["*/*", false], // fetch's default
    ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false],
    ["application/json", true],
    ["Application/JSON; charset=utf-8", true],
    ["application/*", true],
    ["application/json, text/plain, */*", true], // axios
    ["text/html, application/json", true],
    ["text/html, application/json;q=0.9", false],
    ["text/*;q=0.5, application/json;q=0.8", true],
    ["application/json;q=0", false],
    ["application/json;q=abc", false],
    ["application/json;q=2", false],
  ];
  for (const [accept, json] of table) {
    assert.equal(acceptsJsonListing(accept), json, String(accept));
  }
});

Deno.test("listingBreadcrumbs: one link per level, encoded, never above urlRoot", () => {
  const table: [string, string, [string, string][]][] = [
    ["", "/", [["/", "/"]]],
    ["", "/a/", [["/", "/"], ["a/", "/a/"]]],
    ["", "/a b/c#?/", [["/", "/"], ["a b/", "/a%20b/"], [
      "c#?/",
      "/a%20b/c%23%3F/",
    ]]],
    ["/static", "/", [["/static/", "/static/"]]],
    ["/static", "/sub/", [["/static/", "/static/"], ["sub/", "/static/sub/"]]],
    ["", "/Zoë/", [["/", "/"], ["Zoë/", "/Zo%C3%AB/"]]],
  ];
  for (const [urlRoot, path, crumbs] of table) {
    assert.deepEqual(
      listingBreadcrumbs(urlRoot, path),
      crumbs.map(([label, href]) => ({ label, href })),
      `${urlRoot} ${path}`,
    );
  }
});

Deno.test("sortListing: folders first, then the column, ties by name, stable", () => {
  const day = (d: number) => new Date(Date.UTC(2026, 0, d));
  const entries: ListingEntry[] = [
    { name: "file10.txt", isDirectory: false, size: 5, mtime: day(3) },
    { name: "b-dir", isDirectory: true, size: 4096, mtime: day(1) },
    { name: "file2.txt", isDirectory: false, size: 500, mtime: day(2) },
    { name: "a-dir", isDirectory: true, size: 8192, mtime: day(4) },
    { name: "same-size", isDirectory: false, size: 5, mtime: day(3) },
    { name: "File1.txt", isDirectory: false, size: 70, mtime: null },
  ];
  const table: [string, "asc" | "desc", string[]][] = [
    ["name", "asc", [
      "a-dir",
      "b-dir",
      "File1.txt",
      "file2.txt",
      "file10.txt",
      "same-size",
    ]],
    ["name", "desc", [
      "b-dir",
      "a-dir",
      "same-size",
      "file10.txt",
      "file2.txt",
      "File1.txt",
    ]],
    // Folders have no meaningful size: by name, in either order.
    ["size", "asc", [
      "a-dir",
      "b-dir",
      "file10.txt",
      "same-size",
      "File1.txt",
      "file2.txt",
    ]],
    ["size", "desc", [
      "a-dir",
      "b-dir",
      "file2.txt",
      "File1.txt",
      "file10.txt",
      "same-size",
    ]],
    ["time", "asc", [
      "b-dir",
      "a-dir",
      "File1.txt",
      "file2.txt",
      "file10.txt",
      "same-size",
    ]],
    ["time", "desc", [
      "a-dir",
      "b-dir",
      "file10.txt",
      "same-size",
      "file2.txt",
      "File1.txt",
    ]],
  ];
  for (const [sort, order, names] of table) {
    const key = sort as "name" | "size" | "time";
    for (const start of [entries, [...entries].reverse()]) {
      const sorted = sortListing([...start], { sort: key, order });
      assert.deepEqual(sorted.map((e) => e.name), names, `${sort} ${order}`);
    }
  }
});

// --- The HTML page -------------------------------------------------------------

Deno.test("listing page", async (t) => {
  await using tree = await makeTree();
  const res = await list(tree.root, "/sub/");
  const html = await res.text();
  await t.step("HTML that varies on Accept and is always revalidated", () => {
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(res.headers.get("vary"), "Accept");
    assert.equal(res.headers.get("cache-control"), "no-cache");
  });
  await t.step("a whole document, fit for phones", () => {
    assert.match(html, /^<!doctype html>\n<html lang="en">/);
    assert.match(html, /<meta name="viewport" content="width=device-width/);
  });
  await t.step("light and dark colour schemes", () => {
    assert.match(html, /<meta name="color-scheme" content="light dark">/);
    assert.match(html, /@media \(prefers-color-scheme:dark\)/);
  });
  await t.step("a main landmark holding a table with column headers", () => {
    assert.match(html, /<main>[\s\S]*<table>[\s\S]*<\/table>[\s\S]*<\/main>/);
    assert.equal(html.match(/<th scope="col"/g)?.length, 3);
  });
  await t.step("no script: a CSP may forbid it", () => {
    assert.doesNotMatch(html, /<script/i);
    assert.doesNotMatch(html, /\son\w+=/i, "no inline event handlers either");
  });
  await t.step("the title names the folder", () => {
    assert.match(html, /<title>Index of \/sub\/<\/title>/);
  });
  await t.step("each entry links its name, with size and time", () => {
    assert.match(
      html,
      /<a href="b\.txt">.*<span>b\.txt<\/span><\/a><\/td><td class="size"><data value="7">7 B<\/data>/,
    );
    assert.match(
      html,
      /<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z"><span>\d{4}-\d\d-\d\d<\/span> <span>\d\d:\d\d<\/span><\/time>/,
    );
  });
  await t.step("a link to the parent folder", () => {
    assert.match(html, /<a href="\.\.\/">.*Parent folder/);
  });
  await t.step("a count of folders and files", () => {
    assert.match(html, /0 folders, 1 file</);
  });
});

Deno.test("listing page: breadcrumbs", async (t) => {
  await using tree = await makeTree();
  await t.step(
    "below the root: a link per level above the marked one",
    async () => {
      await Deno.mkdir(`${tree.root}/sub/deep er/deepest`, { recursive: true });
      const html = await (await list(tree.root, "/sub/deep%20er/deepest/"))
        .text();
      const h1 = html.match(/<h1>(.*)<\/h1>/)![1];
      assert.equal(
        h1,
        `Index of <a href="/">/</a><a href="/sub/">sub/</a>` +
          `<a href="/sub/deep%20er/">deep er/</a>` +
          `<span aria-current="page">deepest/</span>`,
      );
    },
  );
  const top = await (await list(tree.root, "/")).text();
  await t.step("at the root: no link above it", () => {
    assert.match(
      top,
      /<h1>Index of <span aria-current="page">\/<\/span><\/h1>/,
    );
  });
  await t.step("at the root: no parent row", () => {
    assert.doesNotMatch(top, /Parent folder/);
  });
});

Deno.test("listing page: never links above urlRoot", async () => {
  await using tree = await makeTree();
  const options = { urlRoot: "static" };
  const top = await (await list(tree.root, "/static/", {}, options)).text();
  assert.match(top, /Index of \/static\//);
  assert.ok(!top.includes(`href="../"`), "no parent link above urlRoot");
  assert.ok(!top.includes(`href="/"`), "no breadcrumb above urlRoot");
  const sub = await (await list(tree.root, "/static/sub/", {}, options)).text();
  assert.match(
    sub,
    /<h1>Index of <a href="\/static\/">\/static\/<\/a><span aria-current="page">sub\/<\/span><\/h1>/,
  );
  assert.match(sub, /<a href="b\.txt">/);
  assert.match(sub, /<a href="\.\.\/">/);
});

Deno.test("listing page: column headers sort, with aria-sort and accessible names", async () => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/sub/big.txt`, "x".repeat(2_900_000));
  await Deno.writeTextFile(`${tree.root}/sub/small.txt`, "x");
  await Deno.mkdir(`${tree.root}/sub/folder`);
  const names = (html: string) =>
    [...html.matchAll(/<td class="name"><a href="[^"]*">.*?<span>([^<]*)</g)]
      .map((m) => m[1]);

  const byName = await (await list(tree.root, "/sub/")).text();
  assert.deepEqual(names(byName), ["folder/", "b.txt", "big.txt", "small.txt"]);
  assert.match(
    byName,
    /<th scope="col" class="name" aria-sort="ascending"><a href="\?sort=name&amp;order=desc">Name<span class="arrow" aria-hidden="true">▲<\/span><span class="vh">, sort descending<\/span><\/a><\/th>/,
  );
  // Other columns start with what people look for: biggest, newest.
  assert.match(
    byName,
    /<th scope="col" class="size"><a href="\?sort=size&amp;order=desc">Size<span class="vh">, sort descending/,
  );
  assert.match(byName, /<a href="\?sort=time&amp;order=desc">Modified/);
  assert.match(byName, /<data value="2900000">2\.9 MB<\/data>/);
  // The default order adds nothing to folder links.
  assert.match(byName, /<a href="folder\/">/);

  const bySize = await (await list(tree.root, "/sub/?sort=size&order=desc"))
    .text();
  assert.deepEqual(names(bySize), ["folder/", "big.txt", "b.txt", "small.txt"]);
  assert.match(
    bySize,
    /class="size" aria-sort="descending"><a href="\?sort=size&amp;order=asc">/,
  );
  assert.equal(bySize.match(/aria-sort=/g)?.length, 1);
  // The order is kept on the way into a folder, up, and along the breadcrumbs.
  assert.match(bySize, /<a href="folder\/\?sort=size&amp;order=desc">/);
  assert.match(bySize, /<a href="\.\.\/\?sort=size&amp;order=desc">/);
  assert.match(bySize, /<a href="\/\?sort=size&amp;order=desc">\/<\/a>/);

  const ascending = await (await list(tree.root, "/sub/?sort=size&order=asc"))
    .text();
  assert.deepEqual(names(ascending), [
    "folder/",
    "small.txt",
    "b.txt",
    "big.txt",
  ]);
});

Deno.test("listing: the query", async (t) => {
  await using tree = await makeTree();
  for (
    const [search, message] of [
      ["?sort=colour", "sort must be name, size or time"],
      ["?order=sideways", "order must be asc or desc"],
      ["?format=yaml", "format must be html or json"],
      ["?sort=size&sort=name", "sort must be name, size or time"],
      ["?sort=%3Cb%3E", "sort must be name, size or time"],
    ]
  ) {
    await t.step(`${search} is 400 with what is allowed`, async () => {
      const res = await list(tree.root, `/sub/${search}`);
      assert.equal(res.status, 400);
      assert.equal(await res.text(), `Bad Request: ${message}\n`);
    });
  }
  await t.step(
    "a parameter not ours is ignored, as a cache buster must be",
    async () => {
      const res = await list(tree.root, "/sub/?v=123");
      assert.equal(res.status, 200);
      assert.match(await res.text(), /<a href="b\.txt">/);
    },
  );
  await t.step("without listings a bad query is still 404", async () => {
    const off = await list(tree.root, "/sub/?sort=colour", {}, {
      showDirListing: false,
    });
    assert.equal(off.status, 404);
    assert.equal(await off.text(), "Not Found\n");
  });
});

Deno.test("listing: names", async (t) => {
  await using tree = await makeTree();
  const name = `"'<>&`;
  await Deno.writeTextFile(`${tree.root}/${name}`, "tricky");
  await Deno.mkdir(`${tree.root}/a dir`);
  const res = await list(tree.root, "/");
  const html = await res.text();
  await t.step("a name is escaped in text", () => {
    assert.ok(!html.includes(name), "raw name must not appear");
    assert.ok(html.includes(`<span>&quot;&#39;&lt;&gt;&amp;</span></a>`));
  });
  await t.step("a name is encoded in its link", () => {
    assert.ok(html.includes(`href="%22&#39;%3C%3E%26"`));
  });
  await t.step(
    "the link, as a browser reads it, leads to the file",
    async () => {
      const href = html.match(/href="(%22[^"]*)"/)![1].replaceAll("&#39;", "'");
      const file = await list(tree.root, `/${href}`);
      assert.equal(await file.text(), "tricky");
    },
  );
  await t.step("a folder's link and name end in a slash", () => {
    assert.ok(html.includes(`href="a%20dir/">`));
    assert.ok(html.includes("<span>a dir/</span>"));
  });
  await t.step("dotfiles are hidden", () => {
    assert.doesNotMatch(html, /\.secret|\.git/);
  });
  await t.step("dotfiles are listed with showDotfiles", async () => {
    const withDots = await list(tree.root, "/", {}, { showDotfiles: true });
    assert.ok((await withDots.text()).includes(`href=".secret"`));
  });
  await t.step("a symlink inside the root is listed", () => {
    assert.ok(html.includes(`href="link-in"`));
  });
  await t.step("symlinks that are refused are not listed", () => {
    for (const hidden of ["link-out", "dir-out", "link-prefix", "link-dot"]) {
      assert.ok(!html.includes(hidden), hidden);
    }
  });
});

Deno.test("listing: precompressed copies", async (t) => {
  await using tree = await makeTree();
  for (const name of ["app.css", "app.css.br", "app.css.gz", "lone.txt.gz"]) {
    await Deno.writeTextFile(`${tree.root}/sub/${name}`, name);
  }
  await Deno.mkdir(`${tree.root}/sub/folder`);
  await Deno.mkdir(`${tree.root}/sub/folder.gz`); // a folder is never a copy
  const html = await (await list(tree.root, "/sub/")).text();
  await t.step(".br and .gz beside their original are not listed", () => {
    assert.match(html, /href="app\.css"/);
    assert.doesNotMatch(html, /app\.css\.(br|gz)/);
  });
  await t.step("a .gz without its original is listed", () => {
    assert.match(html, /href="lone\.txt\.gz"/);
  });
  await t.step("a folder named .gz is listed", () => {
    assert.match(html, /href="folder\.gz\/"/);
  });
  await t.step("the JSON listing leaves out the same", async () => {
    const json = await (await list(tree.root, "/sub/?format=json")).json();
    assert.deepEqual(
      json.entries.map((e: { name: string }) => e.name),
      ["folder", "folder.gz", "app.css", "b.txt", "lone.txt.gz"],
    );
  });
});

Deno.test("listing: FIFOs and other special files are not listed", async () => {
  await using tree = await makeTree();
  await mkfifo(`${tree.root}/sub/pipe`);
  const html = await (await list(tree.root, "/sub/")).text();
  assert.doesNotMatch(html, /pipe/);
  assert.match(html, /href="b\.txt"/);
});

Deno.test("listing: HEAD has GET's status and headers, no body", async () => {
  await using tree = await makeTree();
  const get = await list(tree.root, "/sub/?sort=size");
  const head = await list(tree.root, "/sub/?sort=size", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.equal(
    head.headers.get("content-length"),
    String((await get.bytes()).byteLength),
  );
  assert.equal(
    head.headers.get("content-type"),
    get.headers.get("content-type"),
  );
});

// --- JSON ----------------------------------------------------------------------

Deno.test("listing JSON", async (t) => {
  await using tree = await makeTree();
  await Deno.mkdir(`${tree.root}/sub/a folder`);
  await Deno.writeTextFile(`${tree.root}/sub/z#.txt`, "zz");
  const mtime = (await Deno.stat(`${tree.root}/sub/b.txt`)).mtime!;
  const asked: [string, string, RequestInit][] = [
    ["Accept: application/json", "/sub/", {
      headers: { accept: "application/json" },
    }],
    ["?format=json", "/sub/?format=json", {}],
  ];
  for (const [how, path, init] of asked) {
    await t.step(`asked for by ${how}: the entries in order`, async () => {
      const res = await list(tree.root, path, init);
      assert.equal(res.status, 200);
      assert.equal(
        res.headers.get("content-type"),
        "application/json; charset=utf-8",
      );
      assert.equal(res.headers.get("vary"), "Accept");
      const body = await res.json();
      assert.equal(body.path, "/sub/");
      assert.equal(body.truncated, false);
      assert.deepEqual(body.entries, [
        {
          name: "a folder",
          type: "directory",
          size: null,
          mtime: (await Deno.stat(`${tree.root}/sub/a folder`)).mtime!
            .toISOString(),
          url: "/sub/a%20folder/",
        },
        {
          name: "b.txt",
          type: "file",
          size: 7,
          mtime: mtime.toISOString(),
          url: "/sub/b.txt",
        },
        {
          name: "z#.txt",
          type: "file",
          size: 2,
          mtime: (await Deno.stat(`${tree.root}/sub/z#.txt`)).mtime!
            .toISOString(),
          url: "/sub/z%23.txt",
        },
      ]);
      // Each url leads to the entry.
      const file = await list(tree.root, body.entries[2].url);
      assert.equal(await file.text(), "zz");
    });
  }
  for (
    const [what, path, accept] of [
      [
        "?format=html wins over Accept",
        "/sub/?format=html",
        "application/json",
      ],
      [
        "a browser's Accept gets HTML",
        "/sub/",
        "text/html,application/xhtml+xml,*/*;q=0.8",
      ],
    ]
  ) {
    await t.step(what, async () => {
      const res = await list(tree.root, path, { headers: { accept } });
      assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
      assert.match(await res.text(), /^<!doctype html>/);
    });
  }
});

Deno.test("listing JSON under urlRoot, sorted by size", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/big.bin`, "x".repeat(1000));
  const res = await list(
    tree.root,
    "/static/?format=json&sort=size&order=desc",
    {},
    {
      urlRoot: "static",
    },
  );
  const body = await res.json();
  const names = body.entries.map((e: { name: string }) => e.name);
  await t.step("the entries are sorted by the query", () => {
    assert.deepEqual(names.slice(0, 2), ["sub", "big.bin"]);
  });
  await t.step("the path and urls are under urlRoot", () => {
    assert.equal(body.path, "/static/");
    assert.equal(body.entries[1].url, "/static/big.bin");
  });
  await t.step("hidden entries stay hidden", () => {
    for (
      const hidden of [".secret", ".git", "link-out", "dir-out", "link-dot"]
    ) {
      assert.ok(!names.includes(hidden), hidden);
    }
    assert.ok(names.includes("link-in"));
  });
});

Deno.test("renderListing: a name cannot break out of its text or its link", () => {
  const html = renderListing("/d/", [
    {
      name: `x"><img src=x onerror=alert(1)>`,
      isDirectory: false,
      size: 1,
      mtime: null,
    },
    { name: `</span></a><script>`, isDirectory: true, size: 0, mtime: null },
  ]);
  assert.ok(!html.includes("<img") && !html.includes("<script"));
  assert.ok(!/href="[^"]*"[^>]*onerror/.test(html));
  assert.match(
    html,
    /href="x%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert\(1\)%3E"/,
  );
});

Deno.test("renderListing: a bidirectional control in a name is shown, not obeyed", () => {
  // A right-to-left override would show "evil\u202etxt.exe" as "evilexe.txt".
  const html = renderListing("/\u202edocs/", [
    { name: "evil\u202etxt.exe", isDirectory: false, size: 1, mtime: null },
    { name: "\u2067folder", isDirectory: true, size: 0, mtime: null },
  ]);
  assert.ok(
    !/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(html),
    "no raw bidirectional control anywhere in the page",
  );
  assert.ok(
    html.includes('<span>evil<span class="ctl">U+202E</span>txt.exe</span>'),
  );
  assert.ok(
    html.includes('<span><span class="ctl">U+2067</span>folder/</span>'),
  );
  assert.ok(html.includes("<title>Index of /U+202Edocs/</title>"));
  // And each name is isolated, so a right-to-left one keeps its slash and neighbours.
  assert.match(html, /td\.name a>span,h1 a,h1 span\{unicode-bidi:isolate\}/);
});

Deno.test("listing page: its own CSP allows its stylesheet by hash and nothing else", async () => {
  await using tree = await makeTree();
  const res = await list(tree.root, "/sub/");
  const csp = res.headers.get("content-security-policy")!;
  const html = await res.text();
  assert.match(
    csp,
    /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*';/,
  );
  const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)];
  assert.equal(styles.length, 1);
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(styles[0][1]),
  );
  const hash = btoa(String.fromCharCode(...new Uint8Array(digest)));
  assert.ok(csp.includes(`'sha256-${hash}'`), "the hash is the stylesheet's");
  assert.ok(
    !/\sstyle=/.test(html),
    "no style attributes (a hash cannot allow them)",
  );
  const json = await list(tree.root, "/sub/?format=json");
  assert.equal(json.headers.get("content-security-policy"), null);
  await json.body?.cancel();
});

Deno.test("listing: more requests at once than can wait for a turn get 503 with Retry-After", async () => {
  // Distinct listings (8 folders, 12 orders and formats each): requests for
  // the same listing share one build (see hostile7_files_test).
  await using tree = await makeTree();
  const folders = 8;
  for (let f = 0; f < folders; f++) {
    await Deno.mkdir(`${tree.root}/big${f}`);
    await Promise.all(
      Array.from(
        { length: 100 },
        (_, i) => Deno.writeTextFile(`${tree.root}/big${f}/f${i}`, ""),
      ),
    );
  }
  const orders = ["name", "size", "time"].flatMap((sort) =>
    ["asc", "desc"].flatMap((order) =>
      ["html", "json"].map((format) =>
        `?sort=${sort}&order=${order}&format=${format}`
      )
    )
  );
  const count = MAX_CONCURRENT_LISTINGS + MAX_WAITING_LISTINGS + 20;
  assert.ok(count <= folders * orders.length);
  const responses = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      list(
        tree.root,
        `/big${i % folders}/${orders[Math.floor(i / folders)]}`,
      )),
  );
  const refused = responses.filter((res) => res.status === 503);
  const listed = responses.filter((res) => res.status === 200);
  assert.equal(refused.length + listed.length, count);
  assert.ok(
    refused.length >= 1 && refused.length <= 20,
    `${refused.length} refused`,
  );
  for (const res of refused) {
    assert.equal(res.headers.get("retry-after"), "1");
    assert.equal(await res.text(), "Service Unavailable\n");
  }
  for (const res of listed) {
    assert.match(await res.text(), /f99/);
  }
  // Once the turns are free, a listing is built again.
  assert.equal((await list(tree.root, "/big0/")).status, 200);
});
