// server_files.ts --workers N: several Workers of the same file on one port
// (SO_REUSEPORT), as real processes with the README's flags.
import assert from "node:assert/strict";
import { MAX_WORKERS, parseWorkerCount } from "../server_files.ts";
import { makeTree, startFilesProcess } from "./_files.ts";
import { runScript, toolTestOptions } from "./_process.ts";

const SCRIPT = new URL("../server_files.ts", import.meta.url).pathname;
const START_TIMEOUT_MS = 20_000;

Deno.test("parseWorkerCount: 1 to MAX_WORKERS, or auto for one per core", () => {
  assert.equal(parseWorkerCount("1"), 1);
  assert.equal(parseWorkerCount("2"), 2);
  assert.equal(parseWorkerCount(String(MAX_WORKERS)), MAX_WORKERS);
  assert.equal(
    parseWorkerCount("auto"),
    Math.min(MAX_WORKERS, navigator.hardwareConcurrency),
  );
  for (const bad of ["0", "-1", "2.5", "", " 2", "0x2", "1e1", "65", "many"]) {
    assert.throws(
      () => parseWorkerCount(bad),
      /--workers must be a number from 1 to 64 or auto/,
      bad,
    );
  }
});

/** Runs the script to its end (for start-up failures) and returns code and output. */
function runToEnd(flags: string[], args: string[]) {
  return runScript(SCRIPT, flags, ["--port", "0", "--quiet", ...args], {
    timeoutMs: START_TIMEOUT_MS,
  });
}

/** Local ports in LISTEN state on 127.0.0.1, one entry per socket (/proc/net/tcp). */
async function listeningSockets(port: number): Promise<number> {
  const table = await Deno.readTextFile("/proc/net/tcp");
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return table.split("\n").filter((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1] === `0100007F:${hex}` && fields[3] === "0A";
  }).length;
}

Deno.test("--workers 2 as a process", async (t) => {
  await using tree = await makeTree();
  await using server = await startFilesProcess({
    flags: ["--unstable-net"],
    readable: [tree.root, SCRIPT],
    args: ["--root", tree.root, "--workers", "2"],
  });
  const port = server.port;

  await t.step("it says so in one Serving line", () => {
    assert.ok(port > 0, "the server listens");
    assert.match(
      server.stdout[0],
      /^Serving .* on http:\/\/127\.0\.0\.1:\d+\/ with 2 workers$/,
    );
  });

  await t.step("two sockets listen on the one port", async () => {
    for (let i = 0; i < 200 && await listeningSockets(port) < 2; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(await listeningSockets(port), 2, "one socket per worker");
  });

  await t.step("both workers answer", async () => {
    // The kernel spreads new connections over the two sockets (by a hash of
    // the client's port): 40 fresh connections all land on one with odds
    // of 2^-39.
    const answers = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/a.txt`, {
          headers: { connection: "close" },
          signal: AbortSignal.timeout(5000),
        });
        return `${res.status} ${await res.text()}`;
      }),
    );
    // A socket whose thread did not accept would leave its share hanging.
    assert.deepEqual(new Set(answers), new Set(["200 hello a"]));
  });

  await t.step(
    "SIGTERM stops every worker, with exit code 0 and no warning",
    async () => {
      const { code, stderr } = await server.stop();
      assert.equal(code, 0, stderr);
      assert.ok(!/warning|deno serve/i.test(stderr), stderr);
    },
  );

  await t.step(
    "the log has one Serving line and each request once",
    async () => {
      const { stdout } = await server.output;
      assert.equal(stdout.match(/^Serving/gm)?.length, 1, "one Serving line");
      assert.equal(
        stdout.match(/"GET \/a\.txt HTTP\/1\.1" 200 7$/gm)?.length,
        40,
      );
      assert.match(stdout, /Server stopped\.\n$/);
    },
  );
});

Deno.test("--workers 2 without what it needs exits at once with exit code 2", async (t) => {
  await using tree = await makeTree();
  await t.step("without --unstable-net", async () => {
    const noFlag = await runToEnd(
      ["--allow-net=127.0.0.1", `--allow-read=${tree.root},${SCRIPT}`],
      ["--root", tree.root, "--workers", "2"],
    );
    assert.equal(noFlag.code, 2);
    // Only what is missing: the script may be read here.
    assert.equal(
      noFlag.stderr,
      `server_files: --workers 2 needs --unstable-net (SO_REUSEPORT is unstable in Deno ${Deno.version.deno})\n`,
    );
    assert.ok(!noFlag.stderr.includes("Deno.listen"), noFlag.stderr);
    assert.ok(!noFlag.stdout.includes("Serving"));
  });
  await t.step("without read permission for the script", async () => {
    const noRead = await runToEnd(
      ["--unstable-net", "--allow-net=127.0.0.1", `--allow-read=${tree.root}`],
      ["--root", tree.root, "--workers", "2"],
    );
    assert.equal(noRead.code, 2);
    assert.equal(
      noRead.stderr,
      `server_files: --workers 2 needs read permission for ${SCRIPT} (Workers load it from disk)\n`,
    );
    assert.ok(!noRead.stdout.includes("Serving"));
  });
});

Deno.test("--workers 0 is refused with exit code 2", async () => {
  await using tree = await makeTree();
  const bad = await runToEnd(["--allow-read=" + tree.root], [
    "--workers",
    "0",
  ]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--workers must be a number from 1 to 64 or auto/);
});

Deno.test("plain deno run (one worker) prints no deno serve warning", async () => {
  await using tree = await makeTree();
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root],
  });
  try {
    assert.equal(await listeningSockets(server.port), 1);
    const res = await fetch(`${server.url}a.txt`);
    assert.equal(await res.text(), "hello a");
  } finally {
    await server.stop();
  }
  const { code, stdout, stderr } = await server.output;
  assert.equal(code, 0);
  assert.match(stdout, /^Serving .*\/$/m);
  assert.equal(stderr, "");
});

Deno.test({
  name: "--workers 2 out of descriptors",
  ...await toolTestOptions("the descriptor-flood test of --workers", [
    "prlimit",
  ]),
}, async (t) => {
  await using tree = await makeTree();
  const server = await startFilesProcess({
    wrapper: ["prlimit", "--nofile=256"],
    flags: ["--unstable-net"],
    readable: [tree.root, SCRIPT],
    args: ["--root", tree.root, "--workers", "2", "--quiet"],
    timeoutMs: 3 * START_TIMEOUT_MS,
  });
  const conns: Deno.Conn[] = [];
  try {
    assert.match(server.stdout[0], /with 2 workers/);
    const port = server.port;
    // 300 connections that send nothing: more than 256 descriptors.
    for (let i = 0; i < 300; i++) {
      try {
        conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      } catch {
        break; // refused or reset: the listeners ran out of descriptors
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    for (const conn of conns.splice(0)) conn.close();

    await t.step("both workers listen again within 10 s", async () => {
      for (let i = 0; i < 200 && await listeningSockets(port) < 2; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(await listeningSockets(port), 2);
    });
    await t.step("the process keeps serving", async () => {
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/a.txt`, {
          headers: { connection: "close" },
          signal: AbortSignal.timeout(5000),
        });
        assert.equal(await res.text(), "hello a");
      }
    });
  } finally {
    for (const conn of conns) conn.close();
    await server.stop();
  }
  const { code, stderr: log } = await server.output;
  await t.step("stopped, it exits with code 0", () => {
    assert.equal(code, 0, log);
  });
  await t.step("its log says only what failed and what came back", () => {
    assert.ok(!log.includes("Uncaught"), log);
    // Deno's own warning when NODE_EXTRA_CA_CERTS (set on this machine) is
    // loaded while no descriptor is free is not ours to judge.
    const ours = log.split("\n").filter((line) =>
      line !== "" && !line.includes("Warning: Ignoring extra certs")
    );
    for (const line of ours) {
      // Each Worker's serveWithRestart listens again by itself (one line per
      // outage); a Worker that fails anyway is replaced.
      assert.match(
        line,
        /^server_files: (a worker failed: .*Too many open files|accepting connections failed .*Too many open files|listening again on port \d+)/,
      );
    }
  });
});
