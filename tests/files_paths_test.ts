// resolveSafePath: the one function that decides what may be served.
// A table of escape attempts against a temp tree with symlinks in and out.
import assert from "node:assert/strict";
import {
  isServableRealPath,
  NotServableError,
  resolveSafePath,
  splitUrl,
} from "../server_files.ts";
import { makeTree } from "./_files.ts";

type Expect = string | 400 | 404; // a path relative to the root, or the status thrown

const CASES: [urlPath: string, expected: Expect, why: string][] = [
  ["/a.txt", "a.txt", "plain file"],
  ["/sub/b.txt", "sub/b.txt", "file in a folder"],
  ["/", "", "the root itself"],
  ["//a.txt", "a.txt", "doubled slash collapses"],
  ["/sub//b.txt", "sub/b.txt", "doubled slash inside"],
  ["/./a.txt", "a.txt", "dot segment"],
  ["/%2e", "", "encoded dot segment"],
  ["/link-in", "a.txt", "symlink inside the root"],
  ["/%2fetc%2fpasswd", 404, "encoded slashes stay inside the root"],
  ["/../outside.txt", 400, "dot-dot"],
  ["/..", 400, "bare dot-dot"],
  ["/sub/../a.txt", 400, "dot-dot even when it stays inside"],
  ["/sub/../../outside.txt", 400, "dot-dot twice"],
  ["/%2e%2e/outside.txt", 400, "encoded dot-dot"],
  ["/%2E%2E/outside.txt", 400, "encoded dot-dot, upper case"],
  ["/.%2e/outside.txt", 400, "half-encoded dot-dot"],
  ["/..%2foutside.txt", 400, "encoded slash after dot-dot"],
  ["/%2e%2e%2foutside.txt", 400, "fully encoded dot-dot slash"],
  ["/sub/..%2f..%2foutside.txt", 400, "encoded traversal from a folder"],
  ["/..%5coutside.txt", 400, "encoded backslash"],
  ["/%5c..%5coutside.txt", 400, "encoded backslashes around dot-dot"],
  ["/sub\\..\\..\\outside.txt", 400, "raw backslashes"],
  ["/a.txt%00.html", 400, "encoded NUL"],
  ["/a.txt\0", 400, "raw NUL"],
  ["/%", 400, "truncated escape"],
  ["/%zz", 400, "bad hex escape"],
  ["/%c0%ae%c0%ae/outside.txt", 400, "overlong UTF-8 dots"],
  ["/%252e%252e/outside.txt", 404, "double encoding is decoded once only"],
  ["/.secret", 404, "dotfile"],
  ["/%2esecret", 404, "encoded dotfile"],
  ["/.git/config", 404, "dot folder"],
  ["/sub/../.secret", 400, "dot-dot to a dotfile"],
  ["/...", 404, "three dots is a dotfile name"],
  ["/link-out", 404, "symlink to a file outside"],
  ["/dir-out/c.txt", 404, "symlinked folder outside"],
  ["/link-dot", 404, "symlink to a dotfile inside"],
  ["/link-prefix", 404, "symlink to a sibling sharing the root's prefix"],
  ["/nope.txt", 404, "missing file"],
  ["/a.txt/", 404, "a file used as a folder"],
  ["/a.txt/x", 404, "below a file"],
];

Deno.test("resolveSafePath: escape attempts and normal paths", async (t) => {
  await using tree = await makeTree();
  assert.ok(CASES.length >= 25);
  for (const [urlPath, expected, why] of CASES) {
    await t.step(`${JSON.stringify(urlPath)}: ${why}`, async () => {
      if (typeof expected === "string") {
        const found = await resolveSafePath(tree.root, urlPath);
        assert.equal(
          found.path,
          expected === "" ? tree.root : `${tree.root}/${expected}`,
        );
      } else {
        await assert.rejects(
          resolveSafePath(tree.root, urlPath),
          (error: unknown) =>
            error instanceof NotServableError && error.status === expected,
        );
      }
    });
  }
});

Deno.test("resolveSafePath: showDotfiles opens dotfiles, never the outside", async () => {
  await using tree = await makeTree();
  assert.equal(
    (await resolveSafePath(tree.root, "/.secret", true)).path,
    `${tree.root}/.secret`,
  );
  assert.equal(
    (await resolveSafePath(tree.root, "/link-dot", true)).path,
    `${tree.root}/.secret`,
  );
  assert.equal(
    (await resolveSafePath(tree.root, "/.git/config", true)).path,
    `${tree.root}/.git/config`,
  );
  for (
    const [urlPath, status] of [["/../outside.txt", 400], [
      "/link-out",
      404,
    ]] as const
  ) {
    await assert.rejects(
      resolveSafePath(tree.root, urlPath, true),
      (error: unknown) =>
        error instanceof NotServableError && error.status === status,
    );
  }
});

Deno.test("resolveSafePath: returns the stat of what it found", async () => {
  await using tree = await makeTree();
  const file = await resolveSafePath(tree.root, "/a.txt");
  assert.ok(file.info.isFile);
  assert.equal(file.info.size, "hello a".length);
  assert.ok((await resolveSafePath(tree.root, "/sub")).info.isDirectory);
});

Deno.test("splitUrl keeps the raw path and the query", () => {
  const cases: [string, string, string][] = [
    ["http://localhost/a/b?x=1", "/a/b", "?x=1"],
    ["http://localhost:8080/", "/", ""],
    ["http://localhost", "/", ""],
    ["https://h/%2e%2e/x", "/%2e%2e/x", ""],
    ["http://h/a?b?c", "/a", "?b?c"],
    ["http://h/a#frag", "/a", ""],
    ["http://h/a?q=1#frag", "/a", "?q=1"],
    ["http://h//a", "//a", ""],
  ];
  for (const [url, pathname, search] of cases) {
    assert.deepEqual(splitUrl(url), { pathname, search }, url);
  }
});

Deno.test("isServableRealPath: root plus separator, dot segments below the root", () => {
  const cases: [string, boolean, boolean][] = [
    ["/srv/site", false, true],
    ["/srv/site/a.txt", false, true],
    ["/srv/site/sub/a.txt", false, true],
    ["/srv/site-old/a.txt", false, false],
    ["/srv/sitea.txt", false, false],
    ["/srv", false, false],
    ["/etc/passwd", false, false],
    ["/srv/site/.env", false, false],
    ["/srv/site/.git/config", false, false],
    ["/srv/site/.env", true, true],
    ["/srv/site-old/a.txt", true, false],
  ];
  for (const [real, showDotfiles, expected] of cases) {
    assert.equal(
      isServableRealPath("/srv/site", real, showDotfiles),
      expected,
      real,
    );
  }
  // Dots in the root's own path are not the file's business.
  assert.equal(
    isServableRealPath("/home/me/.sites/a", "/home/me/.sites/a/x.html", false),
    true,
  );
});
