// examples/stage2_serve.ts, the README's Stage 2: the handler in-process, then
// the script itself with the README's command.
import assert from "node:assert/strict";
import { handler } from "../examples/stage2_serve.ts";
import { startScript, toolTestOptions } from "./_process.ts";
import { sendRaw } from "./_raw.ts";

Deno.test("the stage 2 handler answers by method and path", async (t) => {
  const cases: { request: Request; status: number; allow?: string }[] = [
    { request: new Request("http://localhost/"), status: 200 },
    { request: new Request("http://127.0.0.1:8080/?q=1"), status: 200 },
    { request: new Request("http://localhost/x"), status: 404 },
    {
      request: new Request("http://localhost/", { method: "POST", body: "a" }),
      status: 405,
      allow: "GET, HEAD",
    },
    { request: new Request("http://evil.example/"), status: 421 },
  ];
  for (const { request, status, allow } of cases) {
    await t.step(`${request.method} ${request.url}`, async () => {
      const response = handler(request);
      assert.equal(response.status, status);
      assert.equal(response.headers.get("allow") ?? undefined, allow);
      assert.match(await response.text(), /^<!doctype html>[^]*<main>/);
    });
  }
});

Deno.test("the stage 2 page shows the request headers, escaped", async () => {
  const response = handler(
    new Request("http://localhost/", { headers: { "x-note": "<b>&</b>" } }),
  );
  const page = await response.text();
  assert.match(page, /<th>x-note<\/th><td>&#60;b&#62;&#38;&#60;\/b&#62;<\/td>/);
  assert.doesNotMatch(page, /<b>/);
});

Deno.test("the README's stage 2 command starts a server that answers", async () => {
  // Deno.serve prints its address on stderr.
  await using server = await startScript(
    "examples/stage2_serve.ts",
    ["--allow-net=127.0.0.1"],
    ["--port", "0"],
    { ready: /Listening on http:\/\/127\.0\.0\.1:\d+\// },
  );
  const page = await fetch(server.url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /Hello from Deno\.serve/);
  const missing = await fetch(new URL("/nope", server.url));
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});

Deno.test("the stage 2 server answers 400 to a Host no URL can hold (was 500 and a stack trace)", async (t) => {
  await using server = await startScript(
    "examples/stage2_serve.ts",
    ["--allow-net=127.0.0.1"],
    ["--port", "0"],
    { ready: /Listening on http:\/\/127\.0\.0\.1:\d+\// },
  );
  const port = Number(new URL(server.url).port);
  for (const host of ["0 localhost", "a^b", "[::1", "a b:80"]) {
    await t.step(`Host: ${host}`, async () => {
      const { status, text } = await sendRaw(
        port,
        `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(status, 400, text);
    });
  }
  assert.doesNotMatch(server.lines.join("\n"), /TypeError|Invalid URL/);
});

Deno.test({
  name:
    "the stage 2 server outlives a descriptor flood: it listens again and answers (redteam F12: it exited)",
  ...await toolTestOptions("the stage 2 descriptor-flood test", ["prlimit"]),
}, async () => {
  await using server = await startScript(
    "examples/stage2_serve.ts",
    ["--allow-net=127.0.0.1"],
    ["--port", "0"],
    {
      ready: /Listening on http:\/\/127\.0\.0\.1:\d+\//,
      wrapper: ["prlimit", "--nofile=64"],
    },
  );
  // Idle connections with half a head each, more than the descriptors left.
  const flood = (await Promise.all(
    Array.from(
      { length: 100 },
      () =>
        Deno.connect({ hostname: "127.0.0.1", port: server.port }).catch(() =>
          null
        ),
    ),
  )).filter((conn): conn is Deno.TcpConn => conn !== null);
  const half = new TextEncoder().encode(
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
  );
  try {
    await Promise.all(flood.map((conn) => conn.write(half).catch(() => 0)));
    await server.waitForLine(/stage2: accepting connections failed/, 20_000);
    // With the flood still open: the failed server closed its idle
    // connections, and the new one answers.
    let status = 0;
    for (let tries = 0; tries < 100 && status !== 200; tries++) {
      try {
        const answer = await fetch(server.url, {
          signal: AbortSignal.timeout(2000),
        });
        status = answer.status;
        await answer.body?.cancel();
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    assert.equal(status, 200, server.lines.join("\n"));
    assert.doesNotMatch(server.stderr.join("\n"), /Uncaught|\n\s+at /);
  } finally {
    for (const conn of flood) conn.close();
  }
});
