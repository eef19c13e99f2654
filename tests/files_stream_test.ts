// The big-file path of server_files.ts: files above the small-file cache
// stream from the open file in reads of 1 MiB (less when many streams share
// the read budget), each started as soon as the chunk before was handed on; through
// serveWithRestart a stream reuses a few buffers, each only once 2 MiB more
// went to Deno.serve after it, and frees every other chunk as soon as
// Deno.serve holds it.
import assert from "node:assert/strict";
import {
  createHandler,
  type Handler,
  openRegularFile,
  serveWithRestart,
} from "../server_files.ts";
import { makeTree, startFilesProcess } from "./_files.ts";
import { countOpenFds, runProcess, toolTestOptions } from "./_process.ts";

const MiB = 1024 * 1024;

/** Bytes that tell every offset apart: a chunk sent twice, late or early shows. */
function patterned(size: number): Uint8Array<ArrayBuffer> {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i % 251) ^ (i >> 16);
  return data;
}

/**
 * Writes `size` patterned bytes as big.bin in `root` and serves the folder
 * through serveWithRestart, with `wrap` around our handler if given.
 */
async function serveBigFile(
  root: string,
  size: number,
  wrap: (handler: Handler) => Deno.ServeHandler<Deno.NetAddr> = (h) => h,
) {
  const data = patterned(size);
  await Deno.writeFile(`${root}/big.bin`, data);
  const handler = createHandler({ fsRoot: root, quiet: true });
  const server = serveWithRestart(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    wrap(handler),
  );
  return { data, server, url: `http://127.0.0.1:${server.addr.port}/big.bin` };
}

/** Where `needle` starts in `haystack`, or -1. */
function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  search: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue search;
    }
    return i;
  }
  return -1;
}

/** The first offset where `a` and `b` differ (the shorter one's length if one is a prefix), or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const common = Math.min(a.length, b.length);
  for (let i = 0; i < common; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : common;
}

/** The peak resident set size of a process in bytes, from /proc. */
async function readPeakRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Bytes this process has read from files and sockets so far (Linux's /proc/self/io). */
function bytesReadSoFar(): number {
  return Number(
    /rchar: (\d+)/.exec(Deno.readTextFileSync("/proc/self/io"))![1],
  );
}

Deno.test("a file stream reads its next chunk as soon as it hands one on, before it is asked", async (t) => {
  await using tree = await makeTree();
  const size = 4 * MiB;
  const data = patterned(size);
  const path = `${tree.root}/big.bin`;
  await Deno.writeFile(path, data);
  for (const handedToServe of [false, true]) {
    await t.step(
      handedToServe ? "to Deno.serve" : "to any reader",
      async () => {
        const file = await openRegularFile(path);
        const reader = file.stream(0, size, { handedToServe }).getReader();
        try {
          const before = bytesReadSoFar();
          const first = await reader.read();
          // 1 MiB from the first read on: no reads that grow from 64 KiB.
          assert.equal(first.value?.length, MiB);
          // The second read runs on one of Deno's file threads, unasked;
          // the kernel counts its bytes once it is done.
          let read = bytesReadSoFar() - before;
          for (let tries = 0; tries < 200 && read < 2 * MiB; tries++) {
            await new Promise((resolve) => setTimeout(resolve, 10));
            read = bytesReadSoFar() - before;
          }
          assert.ok(read >= 2 * MiB, `${read} bytes read`);
          assert.ok(read < 3 * MiB, `${read} bytes read: one read ahead`);
          if (handedToServe) return; // its chunks are Rust's once handed on
          // Every byte still arrives, in order.
          let offset = first.value.length;
          assert.deepEqual(first.value, data.subarray(0, offset));
          for (let next = await reader.read(); !next.done;) {
            const end = offset + next.value.length;
            assert.deepEqual(next.value, data.subarray(offset, end));
            offset = end;
            next = await reader.read();
          }
          assert.equal(offset, size);
        } finally {
          await reader.cancel(); // closes the file, as a client gone away
        }
      },
    );
  }
});

Deno.test("a download through serveWithRestart reads 1 MiB at a time into a few buffers", async () => {
  await using tree = await makeTree();
  const size = 24 * MiB;
  const { data, server, url } = await serveBigFile(tree.root, size);
  // Counts the 1 MiB buffers made while this download runs: the stream makes
  // them with `new Uint8Array(bytes)` (Deno's own code keeps the original).
  const Original = globalThis.Uint8Array;
  let made = 0;
  globalThis.Uint8Array = class extends Original {
    // deno-lint-ignore no-explicit-any
    constructor(...args: any[]) {
      super(...(args as []));
      if (args[0] === MiB) made++;
    }
  } as typeof Uint8Array;
  try {
    const body = new Original(await (await fetch(url)).arrayBuffer());
    assert.equal(firstDifference(body, data), -1, "bytes differ");
  } finally {
    globalThis.Uint8Array = Original;
    await server.shutdown();
  }
  // Four kept and one read ahead (7 when reads grew from 64 KiB, whose
  // small buffers held the kept slots until 2 MiB followed them).
  assert.ok(made >= 4 && made <= 5, `${made} buffers of 1 MiB`);
});

Deno.test("downloads through serveWithRestart arrive byte for byte across read boundaries", async (t) => {
  await using tree = await makeTree();
  // Reads of 1 MiB: nine boundaries, and a short last read.
  const size = 9 * MiB + 12_345;
  const { data, server, url } = await serveBigFile(tree.root, size);
  const get = async (range?: string) => {
    const res = await fetch(url, { headers: range ? { range } : {} });
    return { res, body: new Uint8Array(await res.arrayBuffer()) };
  };
  try {
    await t.step("the whole file", async () => {
      const { res, body } = await get();
      assert.equal(res.status, 200);
      assert.equal(body.length, size);
      assert.deepEqual(body, data);
    });
    await t.step("a range that starts and ends inside reads", async () => {
      const { res, body } = await get("bytes=65000-5000000");
      assert.equal(res.status, 206);
      assert.deepEqual(body, data.subarray(65000, 5000001));
    });
    await t.step("a range to the end, from inside a read", async () => {
      const { res, body } = await get("bytes=100000-");
      assert.equal(
        res.headers.get("content-range"),
        `bytes 100000-${size - 1}/${size}`,
      );
      assert.deepEqual(body, data.subarray(100000));
    });
    await t.step("two ranges (multipart), each across reads", async () => {
      const { res, body } = await get("bytes=0-70000,4000000-4300000");
      assert.equal(res.status, 206);
      assert.equal(body.length, Number(res.headers.get("content-length")));
      const first = indexOfBytes(body, data.subarray(0, 70001));
      const second = indexOfBytes(body, data.subarray(4000000, 4300001));
      assert.ok(first > 0 && second > first + 70000, `${first}, ${second}`);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test({
  name:
    "slow clients over HTTP/1.1 and HTTP/2 get every byte (a reused buffer is never read into while Deno.serve still sends it)",
  ...(await toolTestOptions("slow curl downloads", ["curl"])),
  async fn(t) {
    await using tree = await makeTree();
    // 1 MiB reads, soon into the stream's kept buffers.
    const size = 16 * MiB + 4321;
    const { data, server, url } = await serveBigFile(tree.root, size);
    const out = `${tree.base}/got.bin`;
    // [curl's protocol flag, the version it must report, first, last byte]
    const cases = [
      ["--http1.1", "1.1", 0, size - 1],
      ["--http2-prior-knowledge", "2", 0, size - 1],
      ["--http1.1", "1.1", 1_000_000, 15_000_000],
    ] as const;
    try {
      for (const [http, version, first, last] of cases) {
        const whole = first === 0 && last === size - 1;
        await t.step(
          `${http}, ${whole ? "whole" : `${first}-${last}`}`,
          async () => {
            // --limit-rate: curl stops reading in turns, so the socket fills
            // and Deno.serve holds chunks while the stream reads on.
            const args = [
              "-sS",
              "--max-time",
              "30",
              http,
              "--limit-rate",
              "40M",
            ];
            if (!whole) args.push("-r", `${first}-${last}`);
            args.push("-o", out, "-w", "%{http_version} %{http_code}", url);
            const curl = await runProcess("curl", args);
            assert.equal(curl.code, 0, curl.stderr);
            const status = whole ? 200 : 206;
            assert.equal(curl.stdout, `${version} ${status}`);
            const got = await Deno.readFile(out);
            const expected = data.subarray(first, last + 1);
            assert.equal(firstDifference(got, expected), -1, "bytes differ");
          },
        );
      }
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test("a handler that reads the file's stream itself still gets every byte (chunks are freed only when Deno.serve has them)", async () => {
  await using tree = await makeTree();
  // The answer Deno.serve gets is a new one, made of ours read in JavaScript.
  const { data, server, url } = await serveBigFile(
    tree.root,
    6 * MiB + 7,
    (handler) => async (req) => {
      const res = await handler(req);
      const body = await res.arrayBuffer();
      return new Response(body, { status: res.status, headers: res.headers });
    },
  );
  try {
    // A range that ends before the file does is always read in JavaScript.
    const part = await fetch(url, { headers: { range: "bytes=10-6000000" } });
    assert.deepEqual(
      new Uint8Array(await part.arrayBuffer()),
      data.subarray(10, 6000001),
    );
    const whole = await fetch(url);
    assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), data);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a 100 MiB download holds little memory in the server process (each chunk freed once sent)", async () => {
  await using tree = await makeTree();
  const size = 100 * MiB;
  const file = await Deno.open(`${tree.root}/big.bin`, {
    write: true,
    create: true,
  });
  for (let done = 0; done < size; done += 4 * MiB) {
    await file.write(new Uint8Array(4 * MiB).fill(done / MiB));
  }
  file.close();
  await using server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  assert.equal(await (await fetch(`${server.url}a.txt`)).text(), "hello a");
  const before = await readPeakRss(server.pid);
  const res = await fetch(`${server.url}big.bin`);
  let received = 0;
  for await (const chunk of res.body!) received += chunk.length;
  assert.equal(received, size);
  const growth = (await readPeakRss(server.pid) - before) / MiB;
  // Left to the garbage collector, the chunks peak at about 64 MB more.
  assert.ok(growth < 40, `peak RSS grew by ${growth.toFixed(1)} MB`);
});

Deno.test("clients that stop reading a big file hold a bounded amount of the server's memory", async () => {
  await using tree = await makeTree();
  const size = 64 * MiB;
  await Deno.writeFile(`${tree.root}/big.bin`, new Uint8Array(size).fill(7));
  await using server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  assert.equal(await (await fetch(`${server.url}a.txt`)).text(), "hello a");
  const before = await readPeakRss(server.pid);
  const fdsBefore = countOpenFds(server.pid);
  const request = new TextEncoder().encode(
    "GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  );
  const clients: Deno.TcpConn[] = [];
  try {
    // 48 downloads at 1 MiB a read would hold over 100 MB; their shares of
    // the read budget hold a fraction of that.
    for (let i = 0; i < 48; i++) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      clients.push(conn);
      await conn.write(request);
    }
    // Each stream reads until the socket buffers are full, then waits.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const growth = (await readPeakRss(server.pid) - before) / MiB;
    // Measured 52-54 MB; a read budget of 8 MiB instead of 4 grew it by
    // 67-79 MB.
    assert.ok(growth < 65, `peak RSS grew by ${growth.toFixed(1)} MB`);
  } finally {
    for (const conn of clients) conn.close();
  }
  // The files of the abandoned downloads are closed, and the server serves on.
  let fds = countOpenFds(server.pid);
  for (let tries = 0; fds > fdsBefore && tries < 50; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    fds = countOpenFds(server.pid);
  }
  assert.ok(fds <= fdsBefore, `${fds} descriptors open, ${fdsBefore} before`);
  assert.equal(await (await fetch(`${server.url}a.txt`)).text(), "hello a");
});
