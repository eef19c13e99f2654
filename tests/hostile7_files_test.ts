// The seventh hostile-client round against server_files.ts, by class of
// attack: one test per defect found, each failing on the code before its fix.
import assert from "node:assert/strict";
import { createHandler } from "../server_files.ts";
import { makeTree, startHttpsFilesProcess } from "./_files.ts";
import { certTestOptions } from "./_certs.ts";
import { connectZeroWindowH2, sendH2Gets } from "./_raw.ts";

/** Fills `folder` with `count` empty files, a few hundred at a time. */
async function fillFolder(folder: string, count: number): Promise<void> {
  await Deno.mkdir(folder, { recursive: true });
  for (let i = 0; i < count; i += 500) {
    await Promise.all(
      Array.from(
        { length: Math.min(500, count - i) },
        (_, j) =>
          Deno.writeFile(`${folder}/file-${i + j}.txt`, new Uint8Array()),
      ),
    );
  }
}

/** CPU time (user + system) a process has used so far, in ms, from /proc. */
function cpuMs(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!
    .split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return ticks * 10; // USER_HZ is 100 on Linux
}

/**
 * Waits until `pid` has used no CPU for a whole `quietMs` (polled), at most
 * `deadlineMs`; returns the CPU ms used from `since` (a {@link cpuMs} reading).
 */
async function cpuUntilQuiet(
  pid: number,
  since: number,
  { quietMs = 600, deadlineMs = 60_000 } = {},
): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  let last = cpuMs(pid);
  let quietFrom = Date.now();
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = cpuMs(pid);
    if (now - last > 10) quietFrom = Date.now(); // one tick is noise (timers)
    last = now;
    if (Date.now() - quietFrom >= quietMs) break;
  }
  return last - since;
}

// --- Resource exhaustion: directory listings ---------------------------------

Deno.test("listing: 200 requests at once for one big listing share its build: all 200, same bytes, no 503", async () => {
  // Each request built a listing of its own: 4 at a time, 64 waiting, and
  // the other 132 got 503 although they all asked for the same bytes.
  await using tree = await makeTree();
  await fillFolder(`${tree.root}/big`, 1000); // 310 KB: too big to keep
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    showDirListing: true,
  });
  const responses = await Promise.all(
    Array.from(
      { length: 200 },
      () => handler(new Request("http://localhost/big/?sort=size")),
    ),
  );
  const bodies = await Promise.all(responses.map((res) => res.text()));
  assert.deepEqual(
    [...new Set(responses.map((res) => res.status))],
    [200],
    "every request is answered",
  );
  assert.equal(new Set(bodies).size, 1, "with the same listing");
  assert.ok(bodies[0]!.includes("file-999.txt"));
});

Deno.test({
  name:
    "listing: a client that floods listing requests over HTTP/2 and leaves leaves no listings being built behind it",
  ...certTestOptions(),
  async fn() {
    // 4 connections asked 100 times each for 12 orders of a 3,000-entry
    // folder and closed: the server went on building the listings of the
    // dead streams (redteam F6: over 40 s for 1,000 requests), one after the
    // other. Now the builds of a client that left stop, and the ones that
    // wait for a turn leave the queue: what the server still does after the
    // close is bounded by the few builds it was running, whatever the flood.
    await using tree = await makeTree();
    await fillFolder(`${tree.root}/big`, 3000);
    await using https = await startHttpsFilesProcess(tree, [
      "--quiet",
      "--dir-listing",
    ]);
    const { pid, port } = https.server;
    // What one build costs here, on this machine now: a listing in an order
    // nothing else asks for.
    using client = Deno.createHttpClient({ caCerts: [https.pem] });
    const before = cpuMs(pid);
    const one = await fetch(`${https.server.url}big/?sort=time&order=desc`, {
      client,
    });
    assert.equal(one.status, 200);
    await one.text();
    const oneBuild = Math.max(cpuMs(pid) - before, 10);

    const orders = ["name", "size", "time"].flatMap((sort) =>
      ["asc", "desc"].flatMap((order) =>
        ["html", "json"].map((format) =>
          `/big/?sort=${sort}&order=${order}&format=${format}`
        )
      )
    );
    const conns: Deno.TlsConn[] = [];
    try {
      for (let c = 0; c < 4; c++) {
        const conn = await connectZeroWindowH2(port, https.pem);
        conns.push(conn);
        await sendH2Gets(
          conn,
          100,
          (i) => `${orders[i % orders.length]}&n=${i}`,
        );
      }
      // The server is busy with the flood (it has used a build's CPU since).
      const busyFrom = cpuMs(pid);
      const deadline = Date.now() + 30_000;
      while (cpuMs(pid) - busyFrom < oneBuild && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      for (const conn of conns) conn.close();
    }
    const afterClose = await cpuUntilQuiet(pid, cpuMs(pid));
    console.log(
      `one build: ${oneBuild} ms of CPU; after the close: ${afterClose} ms`,
    );
    // 4 builds at once at most, each stopped at its next batch of stats.
    assert.ok(
      afterClose <= 6 * oneBuild + 200,
      `${afterClose} ms of CPU after the client left (one build: ${oneBuild} ms)`,
    );
    // And the server answers listings as before.
    const again = await fetch(`${https.server.url}big/?format=json`, {
      client,
    });
    assert.equal(again.status, 200);
    assert.equal((await again.json()).entries.length, 3000);
  },
});
