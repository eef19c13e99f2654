// A new user's first steps with each script copied alone into an empty
// folder, beyond tests/dropin_test.ts: opening the address it prints when
// it listens on every address, and a start that fails for a reason of the
// operating system (not a flag, not a permission) says why in words.
import assert from "node:assert/strict";
import { REPO_ROOT, runScript, startScript } from "./_process.ts";

interface Row {
  script: string;
  /** `--allow-read` / `--allow-write` the README gives (the network flag varies). */
  folders: string[];
  /** Folders the README's flags expect, made before it starts. */
  prepare: (dir: string) => Promise<void>;
}

const ROWS: Row[] = [
  { script: "server_tiny.ts", folders: [], prepare: async () => {} },
  {
    script: "server_files.ts",
    folders: ["--allow-read=./static"],
    prepare: async (dir) => {
      await Deno.mkdir(`${dir}/static`);
      await Deno.writeTextFile(`${dir}/static/index.html`, "<!doctype html>");
    },
  },
  {
    script: "message_board.ts",
    folders: ["--allow-read=./data", "--allow-write=./data"],
    prepare: (dir) => Deno.mkdir(`${dir}/data`),
  },
];

/** Copies the script alone into a new temp folder, prepared as its README says. */
async function copyAlone(row: Row): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dropin5-" });
  await Deno.copyFile(`${REPO_ROOT}/${row.script}`, `${dir}/${row.script}`);
  await row.prepare(dir);
  return dir;
}

Deno.test("--hostname 0.0.0.0: the address each script prints opens it (the board answered it 421)", async (t) => {
  for (const row of ROWS) {
    await t.step(row.script, async () => {
      const dir = await copyAlone(row);
      try {
        // The README's command without --allow-sys: the printed address must
        // still work, as the address the server listens on.
        // BOARD_ADMIN_TOKEN set, as the README says, but without
        // --allow-env: the board cannot see it, and must say what is missing.
        await using server = await startScript(
          row.script,
          ["--allow-net=0.0.0.0", ...row.folders],
          ["--hostname", "0.0.0.0", "--port", "0"],
          { cwd: dir, env: { BOARD_ADMIN_TOKEN: "a-token-of-24-characters" } },
        );
        assert.equal(server.url, `http://0.0.0.0:${server.port}/`);
        // On Linux a connection to 0.0.0.0 reaches this machine, as a browser
        // opening the printed address does.
        const page = await fetch(server.url);
        await page.body?.cancel();
        assert.equal(page.status, 200, `GET ${server.url}`);
        if (row.script === "message_board.ts") {
          // The form that page shows posts with that page's Origin.
          const posted = await fetch(server.url, {
            method: "POST",
            headers: {
              "Content-Type": "application/x-www-form-urlencoded",
              Origin: server.origin,
            },
            body: "message=hello",
            redirect: "manual",
          });
          await posted.body?.cancel();
          assert.equal(posted.status, 303, "a post from the printed address");
          assert.match(
            server.lines.join("\n"),
            /BOARD_ADMIN_TOKEN with --allow-env=BOARD_ADMIN_TOKEN/,
          );
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("a host name the system refuses: each script says why in one line and exits 1", async (t) => {
  // `--hostname "$HOST"` with HOST unset. server_tiny printed only the
  // error's class name ("cannot listen on :8080: URIError").
  for (const row of ROWS) {
    await t.step(row.script, async () => {
      const dir = await copyAlone(row);
      try {
        const { code, stdout, stderr } = await runScript(
          row.script,
          ["--allow-net", ...row.folders],
          ["--hostname", "", "--port", "0"],
          { cwd: dir },
        );
        assert.equal(code, 1, stdout + stderr);
        const lines = stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, stderr);
        assert.match(lines[0]!, /^\w+: .*empty host/, stderr);
        assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("message_board: --cert and --key outside --allow-read get a hint about them, not about --data", async () => {
  const row = ROWS[2]!;
  const dir = await copyAlone(row);
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, "");
    await Deno.writeTextFile(`${dir}/key.pem`, "");
    const { code, stderr } = await runScript(
      row.script,
      ["--allow-net=127.0.0.1", ...row.folders],
      ["--cert", "cert.pem", "--key", "key.pem", "--port", "0"],
      { cwd: dir },
    );
    assert.equal(code, 1, stderr);
    assert.match(stderr, /read access to "cert\.pem"/);
    assert.match(stderr, /add the --cert and --key files to --allow-read/);
    assert.doesNotMatch(stderr, /--data/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
