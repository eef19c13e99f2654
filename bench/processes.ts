/**
 * Starting, watching and stopping the servers under test.
 *
 * Every child goes into one registry so that a failure or Ctrl-C stops all
 * of them (`stopAll`). Peak memory is VmHWM ("high water mark" of the
 * resident set) from /proc/PID/status of the process that serves: for Deno,
 * Python, Node, Caddy and lighttpd the child itself (spawned directly, no shell in between), for
 * nginx its one worker.
 *
 * @module
 */

/** How to start one server. */
export interface LaunchSpec {
  /** Shown in logs and tables, e.g. "server_files.ts" or "nginx". */
  name: string;
  /** Program to run (`Deno.execPath()`, "python3", "nginx"). */
  command: string;
  args: string[];
  cwd?: string;
  /** Environment variables added to the runner's (e.g. GOMAXPROCS for Caddy). */
  env?: Record<string, string>;
  /** A URL that answers (any status) once the server is ready. */
  readyUrl: string;
  /** nginx: memory is measured in the one worker, not the master. */
  memoryOf?: "self" | "child";
}

/** A started server. */
export interface RunningServer {
  spec: LaunchSpec;
  child: Deno.ChildProcess;
  /** Last lines the server printed, for error messages. */
  output: () => string;
}

const READY_TIMEOUT_MS = 15_000;
const IDLE_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 3_000;
const KEEP_OUTPUT_BYTES = 8192;

const running = new Set<Deno.ChildProcess>();

/** Remembers a child (wrk, a server) so `stopAll` can end it. */
export function track(child: Deno.ChildProcess): void {
  running.add(child);
  child.status.finally(() => running.delete(child));
}

/** Picks a free TCP port on 127.0.0.1 by binding port 0 and closing it again. */
export function findFreePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Keeps the tail of a byte stream, so a noisy server cannot fill a pipe and stall. */
function drainTail(stream: ReadableStream<Uint8Array>): () => string {
  let tail = "";
  const decoder = new TextDecoder();
  (async () => {
    for await (const chunk of stream) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(
        -KEEP_OUTPUT_BYTES,
      );
    }
  })().catch(() => {});
  return () => tail;
}

/** Starts a server and waits until `readyUrl` answers. */
export async function startServer(spec: LaunchSpec): Promise<RunningServer> {
  const child = new Deno.Command(spec.command, {
    args: spec.args,
    cwd: spec.cwd,
    env: spec.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  track(child);
  const stdoutTail = drainTail(child.stdout);
  const stderrTail = drainTail(child.stderr);
  const server: RunningServer = {
    spec,
    child,
    output: () => (stdoutTail() + stderrTail()).trim(),
  };
  try {
    await waitUntilReady(server);
  } catch (error) {
    await stopServer(server);
    throw error;
  }
  return server;
}

async function waitUntilReady(server: RunningServer): Promise<void> {
  let exited = false;
  server.child.status.then(() => exited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      // HEAD: any answer will do, and the textbook board would draw its whole page for a GET.
      const response = await fetch(server.spec.readyUrl, {
        method: "HEAD",
        signal: AbortSignal.timeout(2000),
      });
      await response.body?.cancel();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const why = exited
    ? "exited during start-up"
    : `did not answer within ${READY_TIMEOUT_MS} ms`;
  throw new Error(
    `${server.spec.name} ${why}. Its output:\n${server.output() || "(none)"}`,
  );
}

/**
 * Waits until the server answers a new request. When wrk stops, a server
 * that handles one request at a time still has every request wrk left in
 * its queue to serve; the next run must not start behind them.
 */
export async function waitUntilIdle(server: RunningServer): Promise<void> {
  try {
    const response = await fetch(server.spec.readyUrl, {
      method: "HEAD",
      signal: AbortSignal.timeout(IDLE_TIMEOUT_MS),
    });
    await response.body?.cancel();
  } catch {
    // The next run will show it if the server is stuck.
  }
}

/** Reads the pids of a process's children (Linux /proc). */
async function readChildPids(pid: number): Promise<number[]> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`);
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Reads the peak resident set (VmHWM) from the text of /proc/PID/status, in bytes.
 *
 * @example parseVmHwm("Name:\tdeno\nVmHWM:\t   51234 kB\n") === 51234 * 1024
 */
export function parseVmHwm(status: string): number | null {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : null;
}

/** Peak memory of the process that does the serving, in bytes; null when unreadable. */
export async function readPeakMemory(
  server: RunningServer,
): Promise<number | null> {
  let pids = [server.child.pid];
  if (server.spec.memoryOf === "child") {
    pids = await readChildPids(server.child.pid);
  }
  let peak: number | null = null;
  for (const pid of pids) {
    try {
      const bytes = parseVmHwm(await Deno.readTextFile(`/proc/${pid}/status`));
      if (bytes !== null) peak = Math.max(peak ?? 0, bytes);
    } catch {
      // The process is gone: no figure rather than a wrong one.
    }
  }
  return peak;
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
export async function stopServer(server: RunningServer): Promise<void> {
  await stopChild(server.child);
}

async function stopChild(child: Deno.ChildProcess): Promise<void> {
  const signal = (name: Deno.Signal) => {
    try {
      child.kill(name);
    } catch {
      // Already exited.
    }
  };
  signal("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) =>
    timer = setTimeout(() => resolve("late"), STOP_GRACE_MS)
  );
  const outcome = await Promise.race([child.status, late]);
  clearTimeout(timer);
  if (outcome === "late") {
    signal("SIGKILL");
    await child.status;
  }
}

/** Stops every process this runner started and has not stopped yet. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map(stopChild));
}
