// Form posts with hostile field names, in-process.
import assert from "node:assert/strict";
import { MAX_BODY_BYTES } from "../message_board.ts";
import { openTempBoard } from "./_board.ts";

Deno.test("forms: a huge field name sent twice is named in 40 characters, not echoed whole", async () => {
  await using board = await openTempBoard({ log: () => {} });
  const name = "n".repeat(MAX_BODY_BYTES / 2 - 10);
  const response = await board.handler(
    new Request("http://127.0.0.1/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `${name}=1&${name}=2`,
    }),
  );
  assert.equal(response.status, 400);
  const page = await response.text();
  assert.match(
    page,
    new RegExp(`The form field &quot;n{40}\\.\\.\\.&quot; was sent twice`),
  );
  assert.ok(page.length < 5_000, `${page.length} characters`);
});
