// The browser-side defences on every answer the board gives, error pages included: no
// framing (clickjacking), no sniffing, no inline script, no referrer to other sites, no
// cross-origin reads of its pages. In-process: handler(new Request(...)).
import assert from "node:assert/strict";
import { createBoardHandler, StoreUnavailableError } from "../message_board.ts";
import { failingStore, openTempBoard } from "./_board.ts";

const BASE = "http://localhost:8080";

/** The headers every response must carry, whatever its status. */
const DEFENCES: [string, RegExp][] = [
  ["content-security-policy", /frame-ancestors 'none'/],
  ["content-security-policy", /default-src 'none'/],
  ["x-frame-options", /^DENY$/],
  ["x-content-type-options", /^nosniff$/],
  ["referrer-policy", /^(same-origin|no-referrer|strict-origin)/],
  ["cross-origin-opener-policy", /^same-origin$/],
  ["cross-origin-resource-policy", /^same-origin$/],
];

function assertDefended(response: Response, label: string): void {
  for (const [header, pattern] of DEFENCES) {
    assert.match(response.headers.get(header) ?? "(none)", pattern, label);
  }
}

const json = { "content-type": "application/json" };
const form = { "content-type": "application/x-www-form-urlencoded" };

/** One request per kind of answer: each route, each error status, HEAD. */
const CASES: [string, () => Request, number][] = [
  ["the page", () => new Request(`${BASE}/`), 200],
  ["HEAD of the page", () => new Request(`${BASE}/`, { method: "HEAD" }), 200],
  ["the stylesheet", () => new Request(`${BASE}/style.css`), 200],
  ["the script", () => new Request(`${BASE}/board.js`), 200],
  ["the JSON API", () => new Request(`${BASE}/api/messages`), 200],
  ["an older page", () => new Request(`${BASE}/?before=5`), 200],
  [
    "a form post (303)",
    () =>
      new Request(`${BASE}/`, {
        method: "POST",
        headers: form,
        body: "message=hi",
      }),
    303,
  ],
  [
    "an API post (201)",
    () =>
      new Request(`${BASE}/api/messages`, {
        method: "POST",
        headers: json,
        body: '{"text":"hi"}',
      }),
    201,
  ],
  ["a 404 page", () => new Request(`${BASE}/nothing`), 404],
  ["a 404 in the API", () => new Request(`${BASE}/api/nothing`), 404],
  ["a 405", () => new Request(`${BASE}/style.css`, { method: "POST" }), 405],
  [
    "a 400 (bad before)",
    () => new Request(`${BASE}/?before=-1`),
    400,
  ],
  [
    "a 400 (bad Host)",
    () => new Request(`${BASE}/`, { headers: { host: "a b" } }),
    400,
  ],
  [
    "a 421 (another Host)",
    () => new Request(`${BASE}/`, { headers: { host: "evil.example" } }),
    421,
  ],
  [
    "a 403 (a post from another site)",
    () =>
      new Request(`${BASE}/`, {
        method: "POST",
        headers: { ...form, origin: "https://evil.example" },
        body: "message=hi",
      }),
    403,
  ],
  [
    "a 413",
    () =>
      new Request(`${BASE}/api/messages`, {
        method: "POST",
        headers: json,
        body: "x".repeat(70_000),
      }),
    413,
  ],
  [
    "a 415",
    () =>
      new Request(`${BASE}/api/messages`, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: "hi",
      }),
    415,
  ],
  [
    "a 422 form post",
    () =>
      new Request(`${BASE}/`, {
        method: "POST",
        headers: form,
        body: "message=",
      }),
    422,
  ],
  ["a 404 sign-in (no token)", () => new Request(`${BASE}/admin`), 404],
];

Deno.test("headers: every answer carries the browser-side defences (table)", async (t) => {
  await using board = await openTempBoard({ log: () => {} });
  const info: Deno.ServeHandlerInfo = {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 },
    completed: Promise.resolve(),
  };
  for (const [label, request, status] of CASES) {
    await t.step(`${label}: ${status}`, async () => {
      const response = await board.handler(request(), info);
      await response.body?.cancel();
      assert.equal(response.status, status, label);
      assertDefended(response, label);
    });
  }
  await t.step("the event stream: 200", async () => {
    const controller = new AbortController();
    const response = await board.handler(
      new Request(`${BASE}/events`, { signal: controller.signal }),
      info,
    );
    assert.equal(response.status, 200);
    assertDefended(response, "events");
    await response.body?.cancel();
  });
  await t.step("a redirect to the base path's slash: 308", async () => {
    const mounted = createBoardHandler(board.store, { basePath: "/board" });
    const response = await mounted(new Request(`${BASE}/board`), info);
    assert.equal(response.status, 308);
    assertDefended(response, "308");
  });
});

Deno.test("headers: a 503 from a failing store carries them too", async () => {
  const down = new StoreUnavailableError("down");
  const handler = createBoardHandler(failingStore(down, { readsFail: true }));
  const errors: unknown[] = [];
  const originalError = console.error;
  console.error = (...args) => errors.push(args);
  try {
    for (const path of ["/", "/api/messages", "/events?after=1"]) {
      const response = await handler(new Request(BASE + path));
      await response.body?.cancel();
      assert.equal(response.status, 503, path);
      assertDefended(response, path);
    }
  } finally {
    console.error = originalError;
  }
});
