// Repository invariants: the pinned Deno version is the same everywhere a
// person or CI reads it, the README shows the two set-up commands, and its
// shell commands name only flags the scripts' --help has, and run in zsh too.
import assert from "node:assert/strict";
import { REPO_ROOT, runScript } from "./_process.ts";

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

Deno.test("every deno task the README names is in deno.json", async () => {
  const readme = await read("README.md");
  const { tasks } = JSON.parse(await read("deno.json"));
  const named = [...readme.matchAll(/deno task ([a-z][a-z-]*)/g)].map((m) =>
    m[1]!
  );
  assert.ok(named.length >= 5, named.join(", "));
  for (const task of named) assert.ok(task in tasks, `deno task ${task}`);
});

Deno.test("deno.json keeps the op and resource sanitizers on", async () => {
  const config = JSON.parse(await read("deno.json"));
  assert.equal(config.test.sanitizeOps, true);
  assert.equal(config.test.sanitizeResources, true);
});

Deno.test("there is no package.json at the root (it breaks npm: resolution)", async () => {
  await assert.rejects(read("package.json"), Deno.errors.NotFound);
});

/** The entry points whose flags the README documents. */
const SCRIPTS = [
  "server_tiny.ts",
  "server_files.ts",
  "message_board.ts",
  "board_postgres.ts",
];

/** Deno's own flags, which stand in usage lines beside a script's. */
const DENO_FLAG = /^--(allow-[a-z]+|unstable-[a-z]+|v8-flags)$/;

/** The flags (`--name`, `-x`) named in `text`, Deno's own left out. */
function flagsIn(text: string): Set<string> {
  const flags = text.match(/(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])/g);
  return new Set((flags ?? []).filter((flag) => !DENO_FLAG.test(flag)));
}

/** The README's shell commands: each line of a ```sh block, `\` continuations joined. */
async function readmeCommands(): Promise<string[]> {
  const readme = await read("README.md");
  const blocks = readme.matchAll(/^( *)```sh\n([\s\S]*?)^\1```$/gm);
  return [...blocks].flatMap((block) =>
    block[2].replace(/\\\n\s*/g, " ").split("\n").map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"))
  );
}

Deno.test("each flag on a README command line is in that script's --help, and each --help flag is in the README", async (t) => {
  const readme = await read("README.md");
  const commands = await readmeCommands();
  for (const script of SCRIPTS) {
    await t.step(script, async () => {
      const help = await runScript(`${REPO_ROOT}${script}`, [], ["--help"]);
      assert.equal(help.code, 0, help.stderr);
      const known = flagsIn(help.stdout);
      assert.ok(known.has("--port"), help.stdout);
      const used = commands.filter((line) => line.includes(` ${script}`));
      assert.ok(used.length > 0, `the README runs ${script}`);
      for (const line of used) {
        const args = line.slice(line.indexOf(` ${script}`)).split(/[;&|]/)[0];
        for (const flag of flagsIn(args)) {
          assert.ok(known.has(flag), `${flag} is not in --help: ${line}`);
        }
      }
      for (const flag of known) {
        assert.ok(
          readme.includes(`\`${flag}`),
          `the README never names ${flag}`,
        );
      }
    });
  }
});

Deno.test("the README's shell commands have no unquoted *, ? or [ (zsh refuses them: no matches found)", async () => {
  for (const line of await readmeCommands()) {
    const unquoted = line.replace(/'[^']*'|"[^"]*"/g, "").replace(/\s#.*$/, "");
    assert.doesNotMatch(unquoted, /[*?[]/, line);
  }
});
