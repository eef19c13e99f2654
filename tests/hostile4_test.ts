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
function h2Get(path: string): Uint8Array {
  const bytes = encoder.encode(path);
  return new Uint8Array([
    0x82, // :method GET
    0x87, // :scheme https
    0x04, // :path, literal
    bytes.length,
    ...bytes,
    0x01, // :authority, literal
    9,
    ...encoder.encode("127.0.0.1"),
  ]);
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
  const page = `<!doctype html><title>Not here</title>${"<p>lost</p>".repeat(22_000)}`;
  await Deno.writeTextFile(`${tree.root}/404.html`, page);
  const { certFile, keyFile, pem } = await makeCertificate(tree.base);
  const server = await startFilesProcess({
    readable: [tree.root, certFile, keyFile],
    args: ["--root", tree.root, "--cert", certFile, "--key", keyFile, "--quiet"],
  });
  const conns: Deno.TlsConn[] = [];
  try {
    using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
    const first = await fetch(`${server.url}missing`, { client });
    assert.equal(first.status, 404);
    assert.equal(await first.text(), page);
    await new Promise((r) => setTimeout(r, 1500));
    const before = await readRss(server.pid);
    for (let c = 0; c < 3; c++) {
      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: server.port,
        caCerts: [pem],
        alpnProtocols: ["h2"],
      });
      conns.push(conn);
      // SETTINGS_INITIAL_WINDOW_SIZE = 0, then 200 requests for no file.
      await conn.write(encoder.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
      await conn.write(h2Frame(4, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 0])));
      for (let i = 0; i < 200; i++) {
        await conn.write(h2Frame(1, 0x5, 2 * i + 1, h2Get(`/gone-${i}`)));
      }
    }
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
    for (const conn of conns) conn.close();
    await server.stop("SIGKILL");
  }
});
