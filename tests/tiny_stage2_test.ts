// examples/stage2_serve.ts, the README's Stage 2: the handler in-process, then
// the script itself with the README's command.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { handler } from "../examples/stage2_serve.ts";

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
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "examples/stage2_serve.ts",
      "--port",
      "0",
    ],
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Deno.serve prints its address on stderr.
  const stdout = new Response(child.stdout).text();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let output = "";
    let match: RegExpMatchArray | null = null;
    const deadline = setTimeout(() => child.kill("SIGKILL"), 10_000);
    while (
      !(match = output.match(/Listening on (http:\/\/127\.0\.0\.1:\d+\/)/))
    ) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`no address printed: ${output}${await stdout}`);
      output += value;
    }
    clearTimeout(deadline);
    const page = await fetch(match[1]);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Hello from Deno\.serve/);
    const missing = await fetch(new URL("/nope", match[1]));
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
    await stdout;
  }
});
