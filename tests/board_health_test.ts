// GET /healthz on the board: 200 while the store reads and takes posts, 503 with
// Retry-After when it is read-only or cannot be read, on the real process too.
import assert from "node:assert/strict";
import {
  createBoardHandler,
  openBoard,
  STORE_RETRY_AFTER_S,
  StoreUnavailableError,
} from "../message_board.ts";
import { failingStore, startBoard, tempFolder } from "./_board.ts";

const health = (
  handler: (r: Request) => Response | Promise<Response>,
  method = "GET",
) =>
  Promise.resolve(handler(new Request("http://localhost/healthz", { method })));

Deno.test("healthz: 200 ok on a working board, never cached; HEAD without a body; POST 405", async () => {
  await using folder = await tempFolder();
  const board = await openBoard({
    dataFile: `${folder.path}/messages.jsonl`,
    rateLimit: false,
  });
  try {
    const res = await health(board.handler);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.match(res.headers.get("content-type")!, /^application\/json/);
    assert.deepEqual(await res.json(), { status: "ok" });
    const head = await health(board.handler, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body, null);
    const post = await health(board.handler, "POST");
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
  } finally {
    await board.close();
  }
});

Deno.test("healthz: 503 with Retry-After when the store is read-only or cannot be read", async () => {
  const down = new StoreUnavailableError("disk gone");
  const cases: [boolean, string][] = [[false, "read-only"], [
    true,
    "unavailable",
  ]];
  for (const [readsFail, status] of cases) {
    const handler = createBoardHandler(failingStore(down, { readsFail }), {
      rateLimit: false,
    });
    const res = await health(handler);
    assert.equal(res.status, 503, status);
    assert.equal(res.headers.get("retry-after"), String(STORE_RETRY_AFTER_S));
    assert.equal(res.headers.get("cache-control"), "no-store");
    const body = await res.json();
    assert.deepEqual(body, { status });
    assert.ok(!JSON.stringify(body).includes("disk gone"), "no detail leaks");
  }
});

Deno.test("healthz: the board's process answers it", async () => {
  await using folder = await tempFolder();
  await Deno.mkdir(`${folder.path}/data`);
  await using board = await startBoard(folder.path);
  const res = await fetch(`${board.origin}/healthz`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok" });
});

Deno.test("healthz: an unreadable store's cause goes to the server log, not the client", async () => {
  const handler = createBoardHandler(
    failingStore(new StoreUnavailableError("disk gone"), { readsFail: true }),
    { rateLimit: false },
  );
  const logged: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void logged.push(args.join(" "));
  let res: Response;
  try {
    res = await health(handler);
  } finally {
    console.error = original;
  }
  assert.equal(res.status, 503);
  assert.ok(!(await res.text()).includes("disk gone"));
  assert.ok(
    logged.some((line) => line.includes("disk gone")),
    logged.join("\n"),
  );
});
