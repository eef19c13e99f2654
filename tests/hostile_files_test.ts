// Hostile-client regression tests for server_files.ts, against a real process.
import assert from "node:assert/strict";
import { suggestFood } from "../server_files.ts";
import { startFilesProcess } from "./_files.ts";
import { sendRaw } from "./_raw.ts";

Deno.test("a request path cannot forge or colour a line of the error log", async () => {
  const root = await Deno.makeTempDir({ prefix: "hostile_files_" });
  await Deno.writeTextFile(`${root}/a.txt`, "a\n");
  const server = await startFilesProcess({
    readable: [root],
    args: ["--root", root],
  });
  try {
    for (
      const path of [
        "/a%0d%0aFORGED%20line",
        "/a%0aFORGED",
        "/%1b[31mred",
        "/a%c2%9b31m",
        "/a%e2%80%a8FORGED",
        "/b/..%0aFORGED",
      ]
    ) {
      const reply = await sendRaw(
        server.port,
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
      assert.ok(
        reply.status >= 400 && reply.status < 500,
        `${path}: ${reply.text}`,
      );
    }
    const ok = await sendRaw(
      server.port,
      "GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert.equal(ok.status, 200);
  } finally {
    const { stderr } = await server.stop();
    await Deno.remove(root, { recursive: true });
    const lines = stderr.split("\n");
    assert.ok(lines.some((line) => line.includes("404 for GET")), stderr);
    for (const line of lines) {
      assert.ok(!line.startsWith("FORGED"), `forged log line:\n${stderr}`);
      assert.ok(
        !/[\p{Cc}\u2028]/u.test(line),
        `control in log: ${JSON.stringify(line)}`,
      );
    }
  }
});

Deno.test("/suggest refuses a repeated field and unprintable names instead of echoing them", async () => {
  for (
    const query of [
      "firstname=Ann&firstname=Bob&food=Tacos",
      "firstname=Ann&food=Tacos&food=Pizza",
      "firstname=%E2%80%AEnnA&food=Tacos", // right-to-left override
      "firstname=A%E2%80%8Bnn&food=Tacos", // zero-width space
      "firstname=A%00nn&food=Tacos",
      "firstname=A%1B%5B2Jnn&food=Tacos",
      "firstname=A%FFnn&food=Tacos", // not UTF-8
    ]
  ) {
    const response = suggestFood(`?${query}`);
    const page = await response.text();
    assert.equal(response.status, 400, query);
    assert.ok(!page.includes("Hello"), query);
  }
  const ok = suggestFood("?firstname=Zo%C3%AB+%D7%A9%D7%A8%D7%94&food=Tacos");
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /Hello, Zoë שרה!/);
});
