#!/usr/bin/env -S deno run --allow-all
/**
 * Measures each server's connection budget: how many idle connections it holds
 * before it stops answering new ones, whether it survives, and how soon it
 * answers again once they close. The README's security notes give the figures.
 *
 * ```sh
 * deno run --allow-all deploy/idle_connections.ts --nofile 1024
 * ```
 *
 * Each server runs as its README command says, on 127.0.0.1 port 0, under
 * `prlimit --nofile=N:N` (N from `--nofile`, default: this shell's own soft
 * limit, as a server started from it would get). The measurer opens TCP
 * connections that send nothing, 32 at a time near the limit (a fiftieth of
 * it at a time before that); after each batch it sends one
 * normal request on a new connection and waits up to 2 s for the answer. The
 * first unanswered request ends the flood: "held" is how many connections the
 * server had accepted then (its open sockets, from /proc/PID/fd). Then every
 * idle connection is closed, and the measurer asks again every 100 ms (for at
 * most 15 s) and reports when the first good answer came.
 *
 * The idle connections are held by helper processes (this script with
 * `--hold PORT`), at most 15,000 each, so the measurer needs no more
 * descriptors than the server it floods. Loopback only; bounded in time
 * (about a minute for a server at 20,000).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
/** Connections opened between two probes. */
const BATCH = 32;
/** How long a probe waits for its answer before the server counts as refusing. */
const PROBE_TIMEOUT_MS = 2_000;
/** How long to wait for the first good answer after the flood closes. */
const RECOVERY_LIMIT_MS = 15_000;
/** Idle connections one helper process holds at most (its own limit is this shell's). */
const PER_HOLDER = 15_000;

/** One server as the README runs it. */
export interface Target {
  name: string;
  script: string;
  flags: (dataDir: string) => string[];
  args: (dataDir: string) => string[];
}

/** The three servers, with the README's permission flags. */
export const TARGETS: Target[] = [
  {
    name: "server_tiny.ts",
    script: "server_tiny.ts",
    flags: () => ["--allow-net=127.0.0.1"],
    args: () => ["--quiet"],
  },
  {
    name: "server_files.ts",
    script: "server_files.ts",
    flags: () => ["--allow-net=127.0.0.1", "--allow-read=./static"],
    args: () => ["--root", "./static", "--quiet"],
  },
  {
    name: "message_board.ts",
    script: "message_board.ts",
    flags: (dir) => [
      "--allow-net=127.0.0.1",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
    ],
    args: (dir) => ["--data", `${dir}/messages.jsonl`, "--quiet"],
  },
];

/** What one run found. */
export interface Measurement {
  server: string;
  nofile: number;
  /** Sockets the server had accepted when it stopped answering (null: it never did). */
  held: number | null;
  /** Idle connections the measurer had opened by then. */
  opened: number;
  /** False when the process exited during the flood (its exit code is given). */
  survived: boolean;
  exitCode: number | null;
  /** Milliseconds from closing the flood to the first good answer (null: none came). */
  recoveredMs: number | null;
}

/** The soft open-file limit of this process, from /proc. */
function ownSoftLimit(): number {
  const limits = Deno.readTextFileSync("/proc/self/limits");
  const line = limits.split("\n").find((l) => l.startsWith("Max open files"));
  return Number(line?.trim().split(/\s+/)[3]);
}

function countSockets(pid: number): number {
  let sockets = 0;
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (
        Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`).startsWith("socket:")
      ) {
        sockets++;
      }
    } catch {
      // closed while we looked
    }
  }
  return sockets;
}

/** Sends `GET /` on a new connection; true when a status line comes back in time. */
async function probe(
  port: number,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<boolean> {
  let conn: Deno.Conn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const attempt = (async () => {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      new TextEncoder().encode(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const buffer = new Uint8Array(64);
    const n = await conn.read(buffer);
    return n !== null &&
      /^HTTP\/1\.1 [23]\d\d /.test(
        new TextDecoder().decode(buffer.subarray(0, n)),
      );
  })().catch(() => false);
  try {
    return await Promise.race([attempt, timeout]);
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // already closed
    }
    // A connect still pending is abandoned; it closes with the process.
  }
}

/** Starts one server under prlimit and waits for the address it prints. */
async function startTarget(target: Target, nofile: number, dataDir: string) {
  const child = new Deno.Command("prlimit", {
    args: [
      `--nofile=${nofile}:${nofile}`,
      "--",
      Deno.execPath(),
      "run",
      ...target.flags(dataDir),
      target.script,
      ...target.args(dataDir),
      "--hostname",
      "127.0.0.1",
      "--port",
      "0",
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let output = "";
  const port = Promise.withResolvers<number>();
  const read = (stream: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        output += text;
        const match = output.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
        if (match) port.resolve(Number(match[1]));
      }
    })();
  const reading = Promise.all([read(child.stdout), read(child.stderr)]);
  let exitCode: number | null = null;
  const status = child.status.then((s) => {
    exitCode = s.code;
    port.reject(new Error(`${target.name} exited first:\n${output}`));
    return s;
  });
  return {
    child,
    port: await port.promise,
    exitCode: () => exitCode,
    output: () => output,
    async stop() {
      if (exitCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (exitCode === null) child.kill("SIGKILL");
      }, 5_000);
      await status;
      clearTimeout(timer);
      await reading;
    },
  };
}

/** A helper process holding idle connections to one port (this script with `--hold`). */
class Holder {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  count = 0;

  constructor(port: number) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        fileURLToPath(import.meta.url),
        "--hold",
        String(port),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream())
      .pipeThrough(splitLines())[Symbol.asyncIterator]();
  }

  /** Opens up to `n` more connections; resolves how many it holds in all. */
  async open(n: number): Promise<number> {
    await this.#writer.write(new TextEncoder().encode(`${n}\n`));
    const { value } = await this.#lines.next();
    this.count = Number(value);
    return this.count;
  }

  /** Closes every connection it holds and waits for it to exit. */
  async close(): Promise<void> {
    await this.#writer.close();
    while (!(await this.#lines.next()).done) {
      // drain
    }
    await this.#child.status;
  }
}

function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const part of parts) controller.enqueue(part);
    },
  });
}

/** `--hold PORT`: opens as many idle connections as each stdin line asks; closes them at EOF. */
async function hold(port: number): Promise<void> {
  const conns: Deno.Conn[] = [];
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream())
    .pipeThrough(splitLines());
  for await (const line of lines) {
    for (let i = 0; i < Number(line); i++) {
      try {
        conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      } catch {
        break; // no descriptor left here, or the kernel refused
      }
    }
    console.log(conns.length);
  }
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // closed by the server
    }
  }
}

/** Floods one server with idle connections, then measures its recovery. */
export async function measure(
  target: Target,
  nofile: number,
): Promise<Measurement> {
  const dataDir = await Deno.makeTempDir({ prefix: "idle_connections_" });
  const server = await startTarget(target, nofile, dataDir);
  const holders: Holder[] = [];
  const opened = () => holders.reduce((n, h) => n + h.count, 0);
  let held: number | null = null;
  try {
    const baseline = countSockets(server.child.pid);
    let accepted = 0;
    // A server never holds more than its limit: stop a little past it.
    while (opened() < nofile + 4 * BATCH && server.exitCode() === null) {
      let holder = holders.at(-1);
      // Big steps while far from the limit, then BATCH at a time.
      const step = opened() < 0.9 * nofile
        ? Math.max(BATCH, Math.floor(nofile / 50))
        : BATCH;
      if (holder === undefined || holder.count + step > PER_HOLDER) {
        holder = new Holder(server.port);
        holders.push(holder);
      }
      const before = holder.count;
      const refused = await holder.open(step) < before + step;
      await new Promise((resolve) => setTimeout(resolve, 50));
      if (server.exitCode() !== null) break;
      // Counted while it runs (an exited process shows no sockets).
      accepted = Math.max(accepted, countSockets(server.child.pid) - baseline);
      // The kernel refusing a connection (backlog full) is a refusal too.
      if (refused || !(await probe(server.port))) {
        held = accepted;
        break;
      }
    }
    if (server.exitCode() !== null) held = accepted;
    const total = opened();
    await Promise.all(holders.map((h) => h.close()));
    const closedAt = performance.now();
    let recoveredMs: number | null = null;
    while (performance.now() - closedAt < RECOVERY_LIMIT_MS) {
      if (server.exitCode() !== null) break;
      if (await probe(server.port, 1_000)) {
        recoveredMs = Math.round(performance.now() - closedAt);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const exitCode = server.exitCode();
    return {
      server: target.name,
      nofile,
      held,
      opened: total,
      survived: exitCode === null,
      exitCode,
      recoveredMs,
    };
  } finally {
    await server.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** One line of the result table. */
export function describe(m: Measurement): string {
  const held = m.held === null
    ? `answered with all ${m.opened} open`
    : m.survived
    ? `${m.held} held, then no answer`
    : `${m.held} held, then it exited`;
  const fate = m.survived ? "kept running" : `exited with code ${m.exitCode}`;
  const recovery = m.recoveredMs === null
    ? "no answer within 15 s"
    : `first good answer ${m.recoveredMs} ms after they closed`;
  return `${m.server} at nofile ${m.nofile}: ${held} (${m.opened} opened); ${fate}; ${recovery}`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      nofile: { type: "string" },
      only: { type: "string" },
      hold: { type: "string" },
    },
  });
  if (values.hold !== undefined) {
    await hold(Number(values.hold));
    Deno.exit(0);
  }
  const nofile = values.nofile === undefined
    ? ownSoftLimit()
    : Number(values.nofile);
  for (const target of TARGETS) {
    if (values.only !== undefined && !target.name.includes(values.only)) {
      continue;
    }
    console.log(describe(await measure(target, nofile)));
  }
}
