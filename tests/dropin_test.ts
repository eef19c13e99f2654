// Each script is a drop-in: copied ALONE into an empty folder, with a fresh
// Deno cache (DENO_DIR) and no config file, it passes `deno check`,
// `deno fmt --check`, `deno lint` and `deno doc --lint` (and has no slow
// types for a JSR package), type-checks under std's stricter compiler
// options too, a small app test that imports it passes,
// and `deno run` with the README's flags starts it and it answers. Every deno
// command that could fetch runs with --cached-only, so with an empty cache any
// download would fail the test: none of the scripts needs the network.
// Then: the repository's run tasks fetch no npm package on a fresh cache.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  pickFreePort,
  runProcess,
  startProcess,
  startScript,
} from "./_process.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const COMMAND_TIMEOUT_MS = 60_000;

interface DropInRow {
  script: string;
  /** The README's permission flags for `deno run`. */
  permissions: string[];
  /** Run before starting it: folders the README's flags expect. */
  prepare?: (dir: string) => Promise<void>;
  /** A small app test that imports the script as a user would. */
  appTest: string;
  /** Path to fetch once it is up; must answer 200. */
  path: string;
  /** The README's permission flags for `deno test --doc` of the script's examples. */
  docTest: string[];
}

const TINY_APP_TEST = `import assert from "node:assert/strict";
import { respondTo, serveTiny } from "./server_tiny.ts";

Deno.test("my route next to the tiny server's page", async () => {
  const server = serveTiny({
    port: 0,
    log: () => {},
    respond: (request) =>
      request.path === "/mine" ? { status: 200, body: "mine" } : respondTo(request),
  });
  const mine = await fetch(\`http://127.0.0.1:\${server.addr.port}/mine\`);
  assert.equal(await mine.text(), "mine");
  const home = await fetch(\`http://127.0.0.1:\${server.addr.port}/\`);
  assert.equal(home.status, 200);
  await home.body?.cancel();
  await server.shutdown();
});
`;

const FILES_APP_TEST = `import assert from "node:assert/strict";
import { serveDir } from "./server_files.ts";

Deno.test("serveDir serves my folder", async () => {
  const root = await Deno.makeTempDir();
  await Deno.writeTextFile(\`\${root}/hello.txt\`, "hello");
  const response = await serveDir(new Request("http://localhost/hello.txt"), {
    fsRoot: root,
    quiet: true,
  });
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "hello");
  await Deno.remove(root, { recursive: true });
});
`;

const BOARD_APP_TEST = `import assert from "node:assert/strict";
import { openBoard } from "./message_board.ts";

Deno.test("the board opens on my data file and shows its page", async () => {
  const dir = await Deno.makeTempDir();
  const board = await openBoard({ dataFile: \`\${dir}/messages.jsonl\` });
  const response = await board.handler(new Request("http://127.0.0.1/"));
  assert.equal(response.status, 200);
  assert.match(await response.text(), /Tiny Message Board/);
  await board.close();
  await Deno.remove(dir, { recursive: true });
});
`;

const ROWS: DropInRow[] = [
  {
    script: "server_tiny.ts",
    permissions: ["--allow-net=127.0.0.1"],
    appTest: TINY_APP_TEST,
    path: "/",
    docTest: ["--allow-net=127.0.0.1"],
  },
  {
    script: "server_files.ts",
    permissions: ["--allow-net=127.0.0.1", "--allow-read=./static"],
    prepare: async (dir) => {
      await Deno.mkdir(`${dir}/static`);
      await Deno.writeTextFile(`${dir}/static/index.html`, "<!doctype html>");
    },
    appTest: FILES_APP_TEST,
    path: "/",
    docTest: ["--allow-net=127.0.0.1", "--allow-read"],
  },
  {
    script: "message_board.ts",
    permissions: [
      "--allow-net=127.0.0.1",
      "--allow-read=./data",
      "--allow-write=./data",
    ],
    prepare: (dir) => Deno.mkdir(`${dir}/data`),
    appTest: BOARD_APP_TEST,
    path: "/",
    docTest: ["--allow-net=127.0.0.1", "--allow-read", "--allow-write"],
  },
];

/** Runs deno in `cwd` with a fresh cache; resolves its output, failing on a timeout. */
async function deno(cwd: string, denoDir: string, args: string[]) {
  const { code, stdout, stderr } = await runProcess(Deno.execPath(), args, {
    cwd,
    env: { DENO_DIR: denoDir },
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  return { code, text: stdout + stderr };
}

/** Whether anything was downloaded into the cache's npm folder. */
async function npmPackagesIn(denoDir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const registry of Deno.readDir(`${denoDir}/npm`)) {
      for await (const pkg of Deno.readDir(`${denoDir}/npm/${registry.name}`)) {
        found.push(`${registry.name}/${pkg.name}`);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found;
}

/** Starts the script with the README's flags on port 0; resolves the address it prints. */
function startDropIn(dir: string, denoDir: string, row: DropInRow) {
  return startScript(row.script, ["--cached-only", ...row.permissions], [
    "--port",
    "0",
  ], { cwd: dir, env: { DENO_DIR: denoDir } });
}

/**
 * Runs every check of one row in its own temp folder and fresh cache;
 * resolves what failed (nothing when it is a true drop-in).
 */
async function checkDropIn(row: DropInRow): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "dropin-" });
  const denoDir = await Deno.makeTempDir({ prefix: "dropin-cache-" });
  const failures: string[] = [];
  const expectSuccess = async (what: string, args: string[]) => {
    const { code, text } = await deno(dir, denoDir, args);
    if (code !== 0) failures.push(`${row.script}: ${what} failed:\n${text}`);
    return text;
  };
  try {
    await Deno.copyFile(`${REPO}/${row.script}`, `${dir}/${row.script}`);
    // The script alone first (fmt and lint see only it, as in a new project).
    await expectSuccess("deno fmt --check", ["fmt", "--check", row.script]);
    await expectSuccess("deno lint", ["lint", row.script]);
    // std's own bar for a module's exports: each documented, no private type
    // in a public signature (a user's `deno doc --lint` in CI sees them).
    await expectSuccess("deno doc --lint", ["doc", "--lint", row.script]);
    // Published in a user's JSR package (deno publish refuses "slow types":
    // an exported signature whose type must be inferred).
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({
        name: "@user/app",
        version: "0.1.0",
        exports: `./${row.script}`,
      }),
    );
    await expectSuccess("deno lint --rules-include=no-slow-types", [
      "lint",
      "--rules-include=no-slow-types",
      row.script,
    ]);
    await Deno.remove(`${dir}/deno.json`);
    // deno check of the script, and of a user's test that imports it, in one
    // run (type-checking with an empty cache takes seconds); then the test runs.
    await Deno.writeTextFile(`${dir}/app_test.ts`, row.appTest);
    await expectSuccess("deno check", [
      "check",
      "--cached-only",
      row.script,
      "app_test.ts",
    ]);
    // A user's project may be stricter than Deno's defaults (std itself
    // turns these two on): the pasted script must type-check there too.
    await Deno.writeTextFile(
      `${dir}/strict.json`,
      JSON.stringify({
        compilerOptions: {
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
        },
      }),
    );
    await expectSuccess("deno check with strict compilerOptions", [
      "check",
      "--cached-only",
      "--config",
      "strict.json",
      row.script,
      "app_test.ts",
    ]);
    await Deno.remove(`${dir}/strict.json`);
    const tested = await expectSuccess("deno test of that app", [
      "test",
      "--cached-only",
      "--no-check",
      "--allow-all",
      "app_test.ts",
    ]);
    if (!/ok \| 1 passed/.test(tested)) {
      failures.push(`${row.script}: the app test did not pass:\n${tested}`);
    }
    await Deno.remove(`${dir}/app_test.ts`);
    // The examples in its doc comments, with the README's narrow flags.
    const docTested = await expectSuccess("deno test --doc", [
      "test",
      "--doc",
      "--cached-only",
      ...row.docTest,
      row.script,
    ]);
    if (!/ok \| [1-9]\d* passed \| 0 failed/.test(docTested)) {
      failures.push(`${row.script}: its examples did not pass:\n${docTested}`);
    }

    await row.prepare?.(dir);
    try {
      const server = await startDropIn(dir, denoDir, row);
      try {
        const response = await fetch(`${server.origin}${row.path}`);
        await response.body?.cancel();
        if (response.status !== 200) {
          failures.push(
            `${row.script}: GET ${row.path} got ${response.status}`,
          );
        }
      } finally {
        await server.stop();
      }
    } catch (error) {
      failures.push(`${row.script}: ${(error as Error).message}`);
    }
    const fetched = await npmPackagesIn(denoDir);
    if (fetched.length > 0) {
      failures.push(
        `${row.script}: npm packages fetched: ${fetched.join(", ")}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(denoDir, { recursive: true });
  }
  return failures;
}

Deno.test(
  `each script works copied alone into an empty folder (${
    ROWS.map((row) => row.script).join(", ")
  })`,
  async () => {
    // The rows are independent, so they run side by side (type-checking with
    // an empty cache takes seconds each).
    const failures = (await Promise.all(ROWS.map(checkDropIn))).flat();
    assert.deepEqual(failures, []);
  },
);

Deno.test("deno task start, board, files and tiny fetch no npm package on a fresh cache", async (t) => {
  // deno.json has "lock": false: a task runner that reads deno.lock caches
  // every npm package in it (postgres, playwright-core...) before the task
  // runs. The tests, the check and the bench pass --lock=deno.lock instead.
  for (const task of ["start", "board", "files", "tiny"]) {
    await t.step(task, async () => {
      const denoDir = await Deno.makeTempDir({ prefix: "dropin-cache-" });
      try {
        const { code, text } = await deno(REPO, denoDir, [
          "task",
          task,
          "--help",
        ]);
        assert.equal(code, 0, text);
        assert.match(text, /Usage:/);
        assert.doesNotMatch(text, /Download/);
        assert.deepEqual(await npmPackagesIn(denoDir), []);
      } finally {
        await Deno.remove(denoDir, { recursive: true });
      }
    });
  }
});

Deno.test("the README gives each script's deno test --doc command, with the flags dropin_test runs it with", async () => {
  const readme = await Deno.readTextFile(`${REPO}/README.md`);
  for (const row of ROWS) {
    const command = ["deno test --doc", ...row.docTest, row.script].join(" ");
    assert.ok(readme.includes(`\n${command}\n`), command);
  }
});

Deno.test("each script's header gives the README's run command, word for word", async (t) => {
  const readme = await Deno.readTextFile(`${REPO}/README.md`);
  for (const script of ROWS.map((row) => row.script)) {
    await t.step(script, async () => {
      const source = await Deno.readTextFile(`${REPO}/${script}`);
      // The first command of the module doc's ```sh block.
      const header = source.match(/^ \* ```sh\n \* (deno run [^\n]+)\n/m);
      assert.ok(header, `${script} has a usage block`);
      assert.ok(
        readme.includes(`\n${header[1]}\n`),
        `the README has the header's command: ${header[1]}`,
      );
    });
  }
});

Deno.test("deno serve runs each script as deno run does: one server, on its own --port, stopped gracefully", async (t) => {
  // import.meta.main is true under `deno serve` too, and the scripts have no
  // default export, so deno serve's own --port must stay unused.
  for (const row of ROWS) {
    await t.step(row.script, async () => {
      const dir = await Deno.makeTempDir({ prefix: "dropin-serve-" });
      try {
        await Deno.copyFile(`${REPO}/${row.script}`, `${dir}/${row.script}`);
        await row.prepare?.(dir);
        const servePort = pickFreePort();
        const server = await startProcess(Deno.execPath(), [
          "serve",
          ...row.permissions,
          "--port",
          String(servePort),
          row.script,
          "--port",
          "0",
        ], { cwd: dir });
        let result;
        try {
          const response = await fetch(`${server.origin}${row.path}`);
          await response.body?.cancel();
          assert.equal(response.status, 200);
          await assert.rejects(
            Deno.connect({ hostname: "127.0.0.1", port: servePort }),
            Deno.errors.ConnectionRefused,
            "nothing listens on deno serve's --port",
          );
        } finally {
          result = await server.stop("SIGTERM");
        }
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.match(result.stdout, /Shutting down|stopped/);
        // A main module that returns without `export default { fetch }` gets
        // deno serve's "error: deno serve requires export default" line
        // (server_tiny.ts did, after its graceful stop).
        assert.doesNotMatch(result.stderr, /error/i);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("deno serve --parallel with a fixed port: the second copy finds it taken, exit 1 (as the README says)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dropin-parallel-" });
  try {
    await Deno.copyFile(`${REPO}/server_files.ts`, `${dir}/server_files.ts`);
    await Deno.mkdir(`${dir}/static`);
    const { code, stdout, stderr } = await runProcess(Deno.execPath(), [
      "serve",
      "--parallel",
      "--allow-net=127.0.0.1",
      "--allow-read=./static",
      "server_files.ts",
      "--port",
      String(pickFreePort()),
    ], { cwd: dir, env: { DENO_JOBS: "2" }, timeoutMs: COMMAND_TIMEOUT_MS });
    assert.equal(code, 1, stdout + stderr);
    assert.match(
      stdout + stderr,
      /is in use \(try another --port, or --port 0\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the README's TypeScript examples type-check beside the scripts copied alone", async () => {
  const readme = await Deno.readTextFile(`${REPO}/README.md`);
  const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) =>
    m[1]
  );
  assert.ok(blocks.length >= 3, `${blocks.length} TypeScript examples`);
  const dir = await Deno.makeTempDir({ prefix: "dropin-readme-" });
  try {
    for (const row of ROWS) {
      await Deno.copyFile(`${REPO}/${row.script}`, `${dir}/${row.script}`);
    }
    const names = blocks.map((_, i) => `example_${i + 1}.ts`);
    for (const [i, block] of blocks.entries()) {
      // Each example is a module of its own (top-level await, own names).
      await Deno.writeTextFile(`${dir}/${names[i]}`, `${block}export {};\n`);
    }
    const { code, stdout, stderr } = await runProcess(Deno.execPath(), [
      "check",
      ...names,
    ], { cwd: dir, timeoutMs: COMMAND_TIMEOUT_MS });
    assert.equal(code, 0, stdout + stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
