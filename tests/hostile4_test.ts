// The fifth hostile-client round against server_files.ts and server_tiny.ts:
// real processes, raw sockets. One test per defect found, each failing on
// the code before its fix.
import { h2Frame } from "./_raw.ts";
import assert from "node:assert/strict";
import { certTestOptions, makeCertificate } from "./_certs.ts";
import { makeTree, startFilesProcess } from "./_files.ts";
import { readRss } from "./_process.ts";

const encoder = new TextEncoder();

/** One HTTP/2 GET of `path` as a HEADERS block (static-table names, literal values). */
function h2Get(
  path: string,
  headers: readonly [string, string][] = [],
): Uint8Array {
  const bytes = encoder.encode(path);
  const more = headers.flatMap(([name, value]) => {
    const [n, v] = [encoder.encode(name), encoder.encode(value)];
    return [0x00, n.length, ...n, v.length, ...v]; // literal, new name
  });
  return new Uint8Array([
    0x82, // :method GET
    0x87, // :scheme https
    0x04, // :path, literal
    bytes.length,
    ...bytes,
    0x01, // :authority, literal
    9,
    ...encoder.encode("127.0.0.1"),
    ...more,
  ]);
}

/**
 * Opens `connections` HTTP/2 connections that give every stream no window
 * (SETTINGS_INITIAL_WINDOW_SIZE = 0) and sends `perConnection` GETs on each,
 * the i-th for `path(i)`; closed by the returned dispose.
 */
async function stalledStreams(
  port: number,
  pem: string,
  connections: number,
  perConnection: number,
  path: (i: number) => string,
  headers: readonly [string, string][] = [],
): Promise<AsyncDisposable> {
  const conns: Deno.TlsConn[] = [];
  for (let c = 0; c < connections; c++) {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [pem],
      alpnProtocols: ["h2"],
    });
    conns.push(conn);
    await conn.write(encoder.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    await conn.write(h2Frame(4, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 0])));
    for (let i = 0; i < perConnection; i++) {
      await conn.write(h2Frame(1, 0x5, 2 * i + 1, h2Get(path(i), headers)));
    }
  }
  return {
    [Symbol.asyncDispose]() {
      for (const conn of conns) conn.close();
      return Promise.resolve();
    },
  };
}

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
  const { certFile, keyFile, pem } = await makeCertificate(tree.base);
  const server = await startFilesProcess({
    readable: [tree.root, certFile, keyFile],
    args: [
      "--root",
      tree.root,
      "--cert",
      certFile,
      "--key",
      keyFile,
      "--quiet",
    ],
  });
  try {
    // Past the second in which an edit may not show in the timestamps.
    await new Promise((r) => setTimeout(r, 1200));
    using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
    const first = await fetch(`${server.url}missing`, { client });
    assert.equal(first.status, 404);
    assert.equal(await first.text(), page);
    await new Promise((r) => setTimeout(r, 300));
    const before = await readRss(server.pid);
    await using _stalled = await stalledStreams(
      server.port,
      pem,
      3,
      200,
      (i) => `/gone-${i}`,
    );
    await new Promise((r) => setTimeout(r, 2000));
    const grown = (await readRss(server.pid) - before) / 1e6;
    console.log(`RSS grew by ${grown.toFixed(0)} MB`);
    // A copy per request: about 150 MB for these 600 streams.
    assert.ok(grown < 60, `RSS grew by ${grown.toFixed(0)} MB`);
    // And the page is still the site's own, and still current after an edit.
    await Deno.writeTextFile(`${tree.root}/404.html`, "<p>moved</p>");
    const after = await fetch(`${server.url}missing`, { client });
    assert.equal(after.status, 404);
    assert.equal(await after.text(), "<p>moved</p>");
  } finally {
    await server.stop("SIGKILL");
  }
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
  const { certFile, keyFile, pem } = await makeCertificate(tree.base);
  const server = await startFilesProcess({
    readable: [tree.root, certFile, keyFile],
    args: [
      "--root",
      tree.root,
      "--cert",
      certFile,
      "--key",
      keyFile,
      "--quiet",
    ],
  });
  try {
    using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
    const range = { range: "bytes=1-239000" };
    const first = await fetch(`${server.url}c.bin`, { client, headers: range });
    assert.equal(first.status, 206);
    assert.deepEqual(
      new Uint8Array(await first.arrayBuffer()),
      bytes.subarray(1, 239_001),
    );
    await new Promise((r) => setTimeout(r, 300));
    const before = await readRss(server.pid);
    await using _stalled = await stalledStreams(
      server.port,
      pem,
      3,
      200,
      (i) => `/c.bin?${i}`,
      [["range", range.range]],
    );
    await new Promise((r) => setTimeout(r, 2000));
    const grown = (await readRss(server.pid) - before) / 1e6;
    console.log(`RSS grew by ${grown.toFixed(0)} MB`);
    assert.ok(grown < 90, `RSS grew by ${grown.toFixed(0)} MB`);
  } finally {
    await server.stop("SIGKILL");
  }
});
