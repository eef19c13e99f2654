// Hostile-client regression tests for server_files.ts, against a real process.
import assert from "node:assert/strict";
import { serveWithRestart, suggestFood } from "../server_files.ts";
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

Deno.test("a request path is never read as a format string by the error log", async () => {
  const root = await Deno.makeTempDir({ prefix: "hostile_files_" });
  const server = await startFilesProcess({
    readable: [root],
    args: ["--root", root],
  });
  // console.error reads %c, %s, %o, %d, %i, %f and %j in its first argument.
  const path = "/a%c%s%o%O%d%i%f%j";
  try {
    const reply = await sendRaw(
      server.port,
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(reply.status, 400, reply.text);
  } finally {
    const { stderr } = await server.stop();
    await Deno.remove(root, { recursive: true });
    const line = stderr.split("\n").find((text) => text.includes("400 for"));
    assert.ok(line, stderr);
    // The path appears as sent: quoted, and again in the reason.
    assert.equal(line.split(path).length - 1, 2, line);
  }
});

Deno.test("/suggest", async (t) => {
  const refused = async (query: string) => {
    const response = suggestFood(`?${query}`);
    const page = await response.text();
    assert.equal(response.status, 400, query);
    assert.doesNotMatch(page, /Hello/, query);
  };
  await t.step("refuses a repeated field instead of guessing", async () => {
    await refused("firstname=Ann&firstname=Bob&food=Tacos");
    await refused("firstname=Ann&food=Tacos&food=Pizza");
  });
  await t.step(
    "refuses an unprintable name instead of echoing it",
    async () => {
      for (
        const query of [
          "firstname=%E2%80%AEnnA&food=Tacos", // right-to-left override
          "firstname=A%E2%80%8Bnn&food=Tacos", // zero-width space
          "firstname=A%00nn&food=Tacos",
          "firstname=A%1B%5B2Jnn&food=Tacos",
          "firstname=A%FFnn&food=Tacos", // not UTF-8
        ]
      ) {
        await refused(query);
      }
    },
  );
  await t.step("greets a name in any script", async () => {
    const ok = suggestFood(
      "?firstname=Zo%C3%AB+%D7%A9%D7%A8%D7%94&food=Tacos",
    );
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /Hello, Zoë שרה!/);
  });
});

Deno.test("an empty or malformed Host is 400 before anything is served (RFC 9112 3.2)", async () => {
  const root = await Deno.makeTempDir({ prefix: "hostile_files_" });
  await Deno.writeTextFile(`${root}/a.txt`, "secret a\n");
  const server = await startFilesProcess({
    readable: [root],
    args: ["--root", root, "--quiet"],
  });
  // Each row: the request's target and Host lines (null: no Host line), the status.
  const rows: [string, string | null, number][] = [
    // Deno.serve writes localhost:PORT for an empty Host; the header tells.
    ["/a.txt", "", 400],
    ["/a.txt", " ", 400],
    // Userinfo, in the Host or in an absolute-form target (RFC 9110 4.2.4).
    ["/a.txt", "a@127.0.0.1", 400],
    ["/a.txt", `user:pw@localhost:${server.port}`, 400],
    ["http://a@127.0.0.1/a.txt", "127.0.0.1", 400],
    // A slash would put part of the Host into the path.
    ["/a.txt", "127.0.0.1/x", 400],
    ["/a.txt", "127.0.0.1/..", 400],
    ["/a.txt", "127.0.0.1?x", 400],
    ["/a.txt", "127.0.0.1#x", 400],
    ["/a.txt", "127.0.0.1\\x", 400],
    ["/a.txt", "127.0.0.1 x", 400],
    ["/a.txt", "127.0.0.1:80:80", 400],
    ["/a.txt", "127.0.0.1:99999", 400],
    ["/a.txt", "127.0.0.1:-1", 400],
    ["/a.txt", "localhost:http", 400],
    ["/a.txt", ":80", 400],
    ["/a.txt", "[::1", 400],
    ["/a.txt", "::1", 400],
    ["/a.txt", "[::1]x", 400],
    ["/a.txt", "%6cocalhost", 400],
    ["/a.txt", "a..localhost", 400],
    ["/a.txt", ".localhost", 400],
    ["/a.txt", "\xe9.localhost", 400],
    // An absolute-form target wins over Host, but Host must still be valid.
    [`http://127.0.0.1:${server.port}/a.txt`, "a@b", 400],
    [`http://127.0.0.1:${server.port}/a.txt`, "", 400],
    // Valid: served, or 421 for a name this server does not answer to.
    ["/a.txt", "127.0.0.1", 200],
    ["/a.txt", `127.0.0.1:${server.port}`, 200],
    ["/a.txt", `LocalHost.:${server.port}`, 200],
    ["/a.txt", "[::1]:8080", 200],
    ["/a.txt", "127.0.0.1:", 200],
    ["/a.txt", "evil.example", 421],
    ["/a.txt", "127.1", 421],
    [`http://127.0.0.1:${server.port}/a.txt`, "evil.example", 200],
    ["http://evil.example/a.txt", "127.0.0.1", 421],
  ];
  try {
    for (const [target, host, status] of rows) {
      const hostLine = host === null ? "" : `Host:${host && " "}${host}\r\n`;
      const reply = await sendRaw(
        server.port,
        `GET ${target} HTTP/1.1\r\n${hostLine}Connection: close\r\n\r\n`,
      );
      const what = `${target} with Host ${JSON.stringify(host)}`;
      assert.equal(reply.status, status, `${what}: ${reply.text}`);
      if (status !== 200) assert.ok(!reply.text.includes("secret"), what);
      if (status === 400) assert.match(reply.text, /Host/, what);
    }
    // A missing Host is served: Deno.serve does not tell HTTP/1.0 (where it
    // may be missing) from 1.1.
    const old = await sendRaw(server.port, "GET /a.txt HTTP/1.0\r\n\r\n");
    assert.equal(old.status, 200, old.text);
    // The server is still serving after all that.
    const ok = await sendRaw(
      server.port,
      "GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert.equal(ok.status, 200);
  } finally {
    await server.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a shutdown stops waiting for a client that never sends the body it announced", async () => {
  const lines: string[] = [];
  const server = serveWithRestart(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => new Response("no\n", { status: 405 }),
    (line) => lines.push(line),
    200,
  );
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    await conn.write(
      new TextEncoder().encode(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nx",
      ),
    );
    // Answered, but Deno.serve keeps the request in flight until the body ends.
    const buffer = new Uint8Array(1024);
    const read = await conn.read(buffer);
    const head = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
    assert.match(head, /^HTTP\/1\.1 405/);
    const started = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      server.shutdown().then(() => "stopped"),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve("still waiting"), 3000);
      }),
    ]);
    clearTimeout(timer);
    assert.equal(outcome, "stopped");
    assert.ok(Date.now() - started < 1500, `${Date.now() - started} ms`);
    await server.finished;
    assert.match(lines.join("\n"), /still in flight 200 ms after the shutdown/);
  } finally {
    conn.close();
  }
});
