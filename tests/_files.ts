// Shared helpers for the server_files.ts tests: a temporary site with files,
// dotfiles and symlinks that point inside and outside the root, and the server
// as a real process (optionally under prlimit or as the user nobody).
import { serveDir, type ServeDirOptions } from "../server_files.ts";
import { type Certificate, makeCertificate } from "./_certs.ts";
import {
  measureRssGrowth,
  type ProcessOptions,
  type RunningProcess,
  runProcess,
  startScript,
} from "./_process.ts";
import { openStalledStreams, type StalledStreamsOptions } from "./_raw.ts";

/** server_files.ts, as an absolute path. */
export const FILES_SCRIPT = new URL("../server_files.ts", import.meta.url)
  .pathname;

/** Paths of a temporary tree; `root` is the folder to serve (already a real path). */
export interface Tree {
  base: string;
  root: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Creates, under a fresh temp dir:
 *
 *     outside.txt, outside-dir/c.txt, root-evil/x.txt   (never servable)
 *     root/a.txt, root/sub/b.txt, root/.secret, root/.git/config
 *     root/link-in -> root/a.txt            (symlink inside: fine)
 *     root/link-out -> outside.txt          (symlink outside: 404)
 *     root/dir-out -> outside-dir           (folder symlink outside: 404)
 *     root/link-dot -> root/.secret         (symlink to a dotfile: 404)
 *     root/link-prefix -> root-evil/x.txt   (same prefix as the root: 404)
 */
export async function makeTree(): Promise<Tree> {
  const base = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "files_test_" }),
  );
  const root = `${base}/root`;
  await Deno.mkdir(`${root}/sub`, { recursive: true });
  await Deno.mkdir(`${root}/.git`);
  await Deno.mkdir(`${base}/outside-dir`);
  await Deno.mkdir(`${base}/root-evil`);
  await Deno.writeTextFile(`${base}/outside.txt`, "OUTSIDE SECRET");
  await Deno.writeTextFile(`${base}/outside-dir/c.txt`, "OUTSIDE DIR SECRET");
  await Deno.writeTextFile(`${base}/root-evil/x.txt`, "PREFIX SECRET");
  await Deno.writeTextFile(`${root}/a.txt`, "hello a");
  await Deno.writeTextFile(`${root}/sub/b.txt`, "hello b");
  await Deno.writeTextFile(`${root}/.secret`, "DOT SECRET");
  await Deno.writeTextFile(`${root}/.git/config`, "GIT SECRET");
  await Deno.symlink(`${root}/a.txt`, `${root}/link-in`);
  await Deno.symlink(`${base}/outside.txt`, `${root}/link-out`);
  await Deno.symlink(`${base}/outside-dir`, `${root}/dir-out`);
  await Deno.symlink(`${root}/.secret`, `${root}/link-dot`);
  await Deno.symlink(`${base}/root-evil/x.txt`, `${root}/link-prefix`);
  return {
    base,
    root,
    async [Symbol.asyncDispose]() {
      await Deno.remove(base, { recursive: true });
    },
  };
}

/**
 * serveDir in-process on `root`, quiet: `serveDirAt(tree.root, "/sub/")` answers
 * `GET http://localhost/sub/`; `options` add to or replace those defaults.
 */
export function serveDirAt(
  root: string,
  path: string,
  init: RequestInit = {},
  options: ServeDirOptions = {},
): Promise<Response> {
  return serveDir(new Request(`http://localhost${path}`, init), {
    fsRoot: root,
    quiet: true,
    ...options,
  });
}

/** Makes a FIFO with mkfifo(1) (Deno has no mkfifo). */
export async function mkfifo(path: string): Promise<void> {
  const made = await runProcess("mkfifo", [path]);
  if (made.code !== 0) throw new Error(`mkfifo ${path} failed: ${made.stderr}`);
}

/** How {@link startFilesProcess} runs the server (and `wrapper`, `env`, `timeoutMs`). */
export interface FilesProcessOptions extends Omit<ProcessOptions, "ready"> {
  /** Paths for --allow-read. */
  readable: string[];
  /** Arguments after the script (--port 0 is added first). */
  args: string[];
  /** More deno flags, such as `--unstable-net`. @default [] */
  flags?: string[];
  /** The deno binary (a copy another user may run). @default {Deno.execPath()} */
  deno?: string;
  /** The script to run. @default {FILES_SCRIPT} */
  script?: string;
  /** Serve HTTPS with this certificate: --cert and --key, and read access to both. */
  certificate?: Certificate;
}

/**
 * Starts `server_files.ts --port 0` with `--allow-net=127.0.0.1` and `--allow-read` of
 * `readable`, and waits for its "Serving ... on URL" line.
 */
export function startFilesProcess(
  options: FilesProcessOptions,
): Promise<RunningProcess> {
  const {
    readable,
    args,
    flags = [],
    script = FILES_SCRIPT,
    certificate,
    ...rest
  } = options;
  const tls = certificate
    ? ["--cert", certificate.certFile, "--key", certificate.keyFile]
    : [];
  const files = certificate
    ? [...readable, certificate.certFile, certificate.keyFile]
    : readable;
  return startScript(
    script,
    [...flags, "--allow-net=127.0.0.1", `--allow-read=${files.join(",")}`],
    ["--port", "0", ...args, ...tls],
    { ...rest, ready: /^Serving / },
  );
}

/**
 * A server_files.ts process serving HTTPS, and the PEM of its certificate. `await using`
 * stops it with SIGKILL (a test that checks a clean exit stops it first).
 */
export interface HttpsFilesProcess extends AsyncDisposable {
  server: RunningProcess;
  /** For `Deno.createHttpClient({ caCerts: [pem] })` and raw TLS connections. */
  pem: string;
}

/**
 * Makes a certificate in `tree.base` and starts `server_files.ts --root tree.root
 * ...args` over HTTPS with it (HTTP/2 by ALPN), quiet unless `args` say otherwise.
 * Give the test `certTestOptions()` from _certs.ts.
 *
 * @example
 * ```ts ignore
 * await using tree = await makeTree();
 * await using https = await startHttpsFilesProcess(tree);
 * using client = Deno.createHttpClient({ caCerts: [https.pem], http1: false });
 * const res = await fetch(`${https.server.url}a.txt`, { client });
 * ```
 */
export async function startHttpsFilesProcess(
  tree: Tree,
  args: string[] = ["--quiet"],
): Promise<HttpsFilesProcess> {
  const certificate = await makeCertificate(tree.base);
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, ...args],
    certificate,
  });
  return {
    server,
    pem: certificate.pem,
    async [Symbol.asyncDispose]() {
      await server.stop("SIGKILL");
    },
  };
}

/**
 * How many MB the server's resident set grows while zero-window HTTP/2 connections hold
 * the streams `options` describe ({@link openStalledStreams}, {@link measureRssGrowth}).
 */
export function rssGrowthUnderStalledStreams(
  { server, pem }: HttpsFilesProcess,
  options: StalledStreamsOptions,
): Promise<number> {
  return measureRssGrowth(
    server.pid,
    () => openStalledStreams(server.port, pem, options),
  );
}

/**
 * `count` words drawn from a few HTML and code words by a seeded generator, joined by
 * spaces: text whose gzip is still big (about 6% of it: 160 KB for 400,000 words),
 * where a repeated string shrinks to almost nothing. The same `seed` gives the same text.
 */
export function shuffledWords(count: number, seed: number): string {
  const words = ["alpha", "beta", "gamma", "<div>", "function", "return"];
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return words[state % words.length];
  }).join(" ");
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
  const chown = await runProcess("chown", ["-R", "nobody", `${dir}/deno-dir`]);
  if (chown.code !== 0) throw new Error(`chown nobody failed: ${chown.stderr}`);
  return {
    deno,
    script,
    wrapper: ["runuser", "-u", "nobody", "--"],
    env: { DENO_DIR: `${dir}/deno-dir`, HOME: `${dir}/deno-dir` },
  };
}
