// Starts server_files.ts as a real process (optionally under prlimit or as
// another user) and reads its address from the "Serving ... on URL" line.

export const FILES_SCRIPT = new URL("../server_files.ts", import.meta.url)
  .pathname;

/** A running server_files.ts process. */
export interface FilesProcess {
  url: string;
  port: number;
  pid: number;
  stdout: string[];
  child: Deno.ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Sends the signal and waits for the exit; returns the exit code and stderr. */
  stop(signal?: Deno.Signal): Promise<{ code: number; stderr: string }>;
}

export interface FilesProcessOptions {
  /** Paths for --allow-read. */
  readable: string[];
  /** Arguments after the script (--port 0 is added first). */
  args: string[];
  /** Runs the deno command through this prefix (e.g. ["prlimit", "--nofile=256"]). */
  prefix?: string[];
  /** The deno binary (a copy another user may run). @default {Deno.execPath()} */
  deno?: string;
  /** The script to run. @default {FILES_SCRIPT} */
  script?: string;
  env?: Record<string, string>;
}

/** Starts the server on port 0 and waits (20 s at most) for its address. */
export async function startFilesProcess(
  options: FilesProcessOptions,
): Promise<FilesProcess> {
  const {
    readable,
    args,
    prefix = [],
    deno = Deno.execPath(),
    script = FILES_SCRIPT,
    env = {},
  } = options;
  const command = [
    deno,
    "run",
    "--allow-net=127.0.0.1",
    `--allow-read=${readable.join(",")}`,
    script,
    "--port",
    "0",
    ...args,
  ];
  const all = [...prefix, ...command];
  const child = new Deno.Command(all[0], {
    args: all.slice(1),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...env },
  }).spawn();
  const stdout: string[] = [];
  let stderrText = "";
  let notify = () => {};
  const pumpOut = (async () => {
    let rest = "";
    for await (
      const text of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      const lines = (rest + text).split("\n");
      rest = lines.pop()!;
      stdout.push(...lines);
      notify();
    }
  })();
  const pumpErr = (async () => {
    for await (
      const text of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      stderrText += text;
    }
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    notify();
    return s;
  });
  let serverPid = child.pid;
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      // Through a prefix like runuser the server is a child of the child.
      if (serverPid !== child.pid) Deno.kill(serverPid, signal);
      else child.kill(signal);
    } catch {
      // already gone
    }
    const { code } = await status;
    await pumpOut;
    await pumpErr;
    return { code, stderr: stderrText };
  };
  const lookUpServer = async () => {
    if (prefix.length > 0) {
      serverPid = (await findDenoProcess(child.pid).catch(() => 0)) ||
        child.pid;
    }
  };
  const deadline = Date.now() + 20_000;
  while (!stdout.some((line) => line.startsWith("Serving"))) {
    if (Date.now() > deadline || exited) {
      await lookUpServer();
      const { stderr } = await stop("SIGKILL");
      throw new Error(`server did not start: ${stderr}`);
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 100);
      notify = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  await lookUpServer();
  const url = stdout.find((line) => line.startsWith("Serving"))!.match(
    /(https?:\/\/\S+)/,
  )![1];
  return {
    url,
    port: Number(new URL(url).port),
    pid: serverPid,
    stdout,
    child,
    stderr: () => stderrText,
    stop,
  };
}

/** The deno process at or below `pid` (runuser forks; prlimit execs). */
async function findDenoProcess(pid: number): Promise<number> {
  const comm = (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
  if (comm === "deno") return pid;
  const children = await Deno.readTextFile(`/proc/${pid}/task/${pid}/children`);
  for (const child of children.trim().split(/\s+/).filter(Boolean)) {
    const found = await findDenoProcess(Number(child)).catch(() => 0);
    if (found !== 0) return found;
  }
  return 0;
}

/** The resident set size of a process in bytes, from /proc. */
export async function readRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/**
 * True when this test may use root-only tools; otherwise it says loudly why
 * it is skipped, and under CI=true it fails instead.
 */
export async function canRunAsRoot(what: string): Promise<boolean> {
  const uid = Deno.uid();
  const tools = await Promise.all(
    ["runuser", "prlimit", "mkfifo"].map((tool) =>
      new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).output()
        .then((r) => r.success)
    ),
  );
  if (uid === 0 && tools.every(Boolean)) return true;
  const why = `SKIPPED: ${what} needs root with runuser, prlimit and mkfifo`;
  if (Deno.env.get("CI") === "true") throw new Error(`${why} (CI=true)`);
  console.warn(why);
  return false;
}

/**
 * A copy of the deno binary and of server_files.ts that the user `nobody`
 * may run (the installed deno may live under /root): a hard link when the
 * filesystem allows, else a copy. Returns their paths and a DENO_DIR.
 */
export async function prepareForNobody(base: string) {
  const dir = `${base}/nobody-bin`;
  await Deno.mkdir(`${dir}/deno-dir`, { recursive: true });
  const deno = `${dir}/deno`;
  try {
    await Deno.link(Deno.execPath(), deno);
  } catch {
    await Deno.copyFile(Deno.execPath(), deno);
  }
  await Deno.chmod(deno, 0o755);
  const script = `${dir}/server_files.ts`;
  await Deno.copyFile(FILES_SCRIPT, script);
  await Deno.chmod(script, 0o644);
  await Deno.chmod(base, 0o755);
  await Deno.chmod(dir, 0o755);
  const chown = await new Deno.Command("chown", {
    args: ["-R", "nobody", `${dir}/deno-dir`],
  }).output();
  if (!chown.success) throw new Error("chown nobody failed");
  return {
    deno,
    script,
    prefix: ["runuser", "-u", "nobody", "--"],
    env: { DENO_DIR: `${dir}/deno-dir`, HOME: `${dir}/deno-dir` },
  };
}
