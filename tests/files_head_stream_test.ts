// HEAD of an answer compressed while it streams: GET has no Content-Length
// then, so HEAD must not claim `Content-Length: 0` (RFC 9110 8.6, 9.3.2);
// Deno.serve adds that header to every null body, so this is checked on the wire.
import assert from "node:assert/strict";
import { createHandler, MAX_CACHED_FILE_BYTES } from "../server_files.ts";
import { makeTree } from "./_files.ts";
import { sendRaw } from "./_raw.ts";

Deno.test("HEAD of a file compressed while streaming has no Content-Length: 0", async () => {
  await using tree = await makeTree();
  const text = "let value = 'some text that compresses';\n".repeat(
    Math.ceil((MAX_CACHED_FILE_BYTES * 2) / 40),
  );
  await Deno.writeTextFile(`${tree.root}/big.js`, text);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
  }, createHandler({ fsRoot: tree.root, quiet: true }));
  try {
    const ask = (method: string, coding: string) =>
      sendRaw(
        server.addr.port,
        `${method} /big.js HTTP/1.1\r\nHost: localhost\r\n` +
          `Accept-Encoding: ${coding}\r\nConnection: close\r\n\r\n`,
      );
    for (const coding of ["zstd", "gzip"]) {
      const head = await ask("HEAD", coding);
      assert.equal(head.status, 200, coding);
      const lower = head.text.toLowerCase();
      assert.match(lower, new RegExp(`content-encoding: ${coding}\\r\\n`));
      assert.doesNotMatch(lower, /content-length: 0\r\n/, coding);
      assert.doesNotMatch(lower, /transfer-encoding/, coding);
      assert.ok(lower.endsWith("\r\n\r\n"), "no body bytes after the head");
    }
    // An answer with a length keeps it on HEAD.
    const plain = await ask("HEAD", "identity");
    assert.match(
      plain.text.toLowerCase(),
      new RegExp(
        `content-length: ${new TextEncoder().encode(text).length}\r\n`,
      ),
    );
  } finally {
    await server.shutdown();
  }
});
