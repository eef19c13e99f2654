// deploy/idle_connections.ts, the measurer behind the README's connection-budget
// figures, run on a small budget: it must find the limit, see the server survive
// and time its recovery. server_tiny.ts is the subject because its accept loop
// has always survived running out of descriptors.
import assert from "node:assert/strict";
import { describe, measure, TARGETS } from "../deploy/idle_connections.ts";
import { toolTestOptions } from "./_process.ts";

const PRLIMIT = await toolTestOptions("the idle-connection measurer test", [
  "prlimit",
]);

Deno.test({
  name:
    "idle_connections.ts: finds server_tiny.ts's budget at 128 files, and its recovery",
  ...PRLIMIT,
  async fn() {
    const tiny = TARGETS.find((t) => t.name === "server_tiny.ts")!;
    const result = await measure(tiny, 128);
    // 128 descriptors, less the few the runtime holds itself.
    assert.ok(
      result.held !== null && result.held > 64 && result.held < 128,
      describe(result),
    );
    assert.ok(result.opened >= result.held, describe(result));
    assert.equal(result.survived, true, describe(result));
    assert.ok(result.recoveredMs !== null, describe(result));
    assert.match(
      describe(result),
      /^server_tiny\.ts at nofile 128: \d+ held, then no answer \(\d+ opened\); kept running; first good answer \d+ ms after they closed$/,
    );
  },
});
