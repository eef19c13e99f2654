// The fifth hostile-client round against server_files.ts and server_tiny.ts:
// real processes, raw sockets. One test per defect found, each failing on
// the code before its fix.
import assert from "node:assert/strict";
import { certTestOptions } from "./_certs.ts";
import {
  makeTree,
  rssGrowthUnderStalledStreams,
  startHttpsFilesProcess,
} from "./_files.ts";

Deno.test({
  name:
    "files: HTTP/2 streams that read nothing share one copy of the site's 404.html",
  ...certTestOptions(),
}, async () => {
  // Each 404 read the site's 404.html into a new buffer, which Deno.serve
  // then held whole while the stream had no window: 1,000 such requests for
  // a 250 KB page held 265 MB.
  await using tree = await makeTree();
  const page = `<!doctype html><title>Not here</title>${
    "<p>lost</p>".repeat(22_000)
  }`;
  await Deno.writeTextFile(`${tree.root}/404.html`, page);
  await using https = await startHttpsFilesProcess(tree);
  const { server, pem } = https;
  const url = `${server.url}missing`;
  // Past the second in which an edit may not show in the timestamps.
  await new Promise((r) => setTimeout(r, 1200));
  using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
  const first = await fetch(url, { client });
  assert.equal(first.status, 404);
  assert.equal(await first.text(), page);
  const grown = await rssGrowthUnderStalledStreams(https, {
    connections: 3,
    perConnection: 200,
    path: (i) => `/gone-${i}`,
  });
  // A copy per request: about 150 MB for these 600 streams.
  assert.ok(grown < 60, `RSS grew by ${grown.toFixed(0)} MB`);
  // And the page is still the site's own, and still current after an edit.
  await Deno.writeTextFile(`${tree.root}/404.html`, "<p>moved</p>");
  const after = await fetch(url, { client });
  assert.equal(after.status, 404);
  assert.equal(await after.text(), "<p>moved</p>");
});

Deno.test({
  name:
    "files: HTTP/2 streams that read nothing hold little for one big range of a cached file",
  ...certTestOptions(),
}, async () => {
  // One range of a file in memory went as `new Response(view)`, which copies
  // the bytes, and Deno.serve held each copy while the stream had no window:
  // 600 requests for a 239 KB range of a 240 KB file held 158 MB (now 45).
  await using tree = await makeTree();
  const bytes = new Uint8Array(240_000).map((_, i) => i % 251);
  await Deno.writeFile(`${tree.root}/c.bin`, bytes);
  await using https = await startHttpsFilesProcess(tree);
  const { server, pem } = https;
  using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
  const range = "bytes=1-239000";
  const first = await fetch(`${server.url}c.bin`, {
    client,
    headers: { range },
  });
  assert.equal(first.status, 206);
  assert.deepEqual(
    new Uint8Array(await first.arrayBuffer()),
    bytes.subarray(1, 239_001),
  );
  const grown = await rssGrowthUnderStalledStreams(https, {
    connections: 3,
    perConnection: 200,
    path: (i) => `/c.bin?${i}`,
    headers: [["range", range]],
  });
  assert.ok(grown < 90, `RSS grew by ${grown.toFixed(0)} MB`);
});
