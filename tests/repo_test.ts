// Repository invariants: the pinned Deno version is the same everywhere a
// person or CI reads it, and the README shows the two set-up commands.
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, root));

Deno.test("the pinned Deno version", async (t) => {
  const pinned = (await read(".deno-version")).trim();
  assert.match(pinned, /^\d+\.\d+\.\d+$/);
  await t.step("is the one running the tests", () => {
    assert.equal(Deno.version.deno, pinned);
  });
  await t.step("is the one every npx command in the README uses", async () => {
    const readme = await read("README.md");
    const versions = [...readme.matchAll(/deno@(\d+\.\d+\.\d+)/g)].map((
      m,
    ) => m[1]);
    assert.ok(versions.length >= 2, "README shows the npx commands");
    for (const version of versions) assert.equal(version, pinned);
  });
});

Deno.test("the README gives the run and test commands", async () => {
  const readme = await read("README.md");
  assert.match(readme, /npx -y deno@[\d.]+ task start/);
  assert.match(readme, /npx -y deno@[\d.]+ task test/);
  const config = JSON.parse(await read("deno.json"));
  assert.equal(typeof config.tasks.start, "string");
  assert.equal(typeof config.tasks.test, "string");
});

Deno.test("deno.json keeps the op and resource sanitizers on", async () => {
  const config = JSON.parse(await read("deno.json"));
  assert.equal(config.test.sanitizeOps, true);
  assert.equal(config.test.sanitizeResources, true);
});

Deno.test("there is no package.json at the root (it breaks npm: resolution)", async () => {
  await assert.rejects(read("package.json"), Deno.errors.NotFound);
});
