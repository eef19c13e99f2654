// A board process in PostgreSQL mode, started with the README's command (shared by the
// cluster and browser tests).
import { fileURLToPath } from "node:url";
import { BOARD_SCRIPT } from "./board_helpers.ts";
import type { PgServer } from "./pg_harness.ts";

/** The README's Postgres-mode permission flags, relative to the repository root. */
export const PG_FLAGS = [
  "--allow-net=127.0.0.1",
  "--allow-env=DATABASE_URL,PG*",
  "--allow-read=./board_postgres.ts",
];
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

export interface PgBoard extends AsyncDisposable {
  child: Deno.ChildProcess;
  url: string;
  /** Everything the process printed, once it has exited. */
  output: Promise<{ stdout: string; stderr: string; code: number }>;
}

async function readAll(stream: ReadableStream<Uint8Array>, onText = (_: string) => {}) {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) onText(text += chunk);
  return text;
}

/** Starts `message_board.ts --store URL --port 0` and waits for the address it prints. */
export async function startPgBoard(
  pg: PgServer,
  env: Record<string, string> = {},
): Promise<PgBoard> {
  const useEnv = "DATABASE_URL" in env;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...PG_FLAGS,
      BOARD_SCRIPT,
      "--port",
      "0",
      "--quiet",
      ...(useEnv ? [] : ["--store", pg.url]),
    ],
    cwd: REPO_ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const address = Promise.withResolvers<string>();
  const output = Promise.all([
    readAll(child.stdout, (text) => {
      const match = text.match(/http:\/\/\S+\//);
      if (match) address.resolve(match[0]);
    }),
    readAll(child.stderr),
    child.status,
  ]).then(([stdout, stderr, status]) => {
    address.reject(new Error(`the board exited (${status.code}) before its address:\n${stderr}`));
    return { stdout, stderr, code: status.code };
  });
  let url: string;
  try {
    url = await address.promise;
  } catch (error) {
    await output;
    throw error;
  }
  return {
    child,
    url,
    output,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone (killed by the test)
      }
      await output;
    },
  };
}
