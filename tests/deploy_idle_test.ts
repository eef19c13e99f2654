// deploy/idle_connections.ts, the measurer behind the README's connection-budget
// figures, run on a small budget: it must flood past the limit, see the server
// survive and time its recovery. server_tiny.ts is the subject: out of
// descriptors, it closes the connections still waiting for a head, so it
// answers with twice its limit of idle connections open.
import assert from "node:assert/strict";
import { describe, measure, TARGETS } from "../deploy/idle_connections.ts";
import { toolTestOptions } from "./_process.ts";

const PRLIMIT = await toolTestOptions("the idle-connection measurer test", [
  "prlimit",
]);

Deno.test({
  name:
    "idle_connections.ts: server_tiny.ts at 128 files answers with more idle connections open than that, and recovers",
  ...PRLIMIT,
  async fn() {
    const tiny = TARGETS.find((t) => t.name === "server_tiny.ts")!;
    const result = await measure(tiny, 128);
    // Every probe was answered, up to past the limit.
    assert.equal(result.held, null, describe(result));
    assert.ok(result.opened > 128, describe(result));
    assert.equal(result.survived, true, describe(result));
    assert.ok(result.recoveredMs !== null, describe(result));
    assert.match(
      describe(result),
      /^server_tiny\.ts at nofile 128: answered with all \d+ open \(\d+ opened\); kept running; first good answer \d+ ms after they closed$/,
    );
  },
});
