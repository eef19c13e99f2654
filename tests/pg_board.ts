// A board process in PostgreSQL mode, started with the README's command (shared by the
// cluster and browser tests).
import { fileURLToPath } from "node:url";
import { type BoardProcess, startBoard } from "./board_helpers.ts";
import type { PgServer } from "./pg_harness.ts";

/** The README's Postgres-mode permission flags, relative to the repository root. */
export const PG_FLAGS = [
  "--allow-net=127.0.0.1",
  "--allow-env=DATABASE_URL,PG*",
  "--allow-read=./board_postgres.ts",
];
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

export interface PgBoard extends BoardProcess, AsyncDisposable {}

/** Starts `message_board.ts --store URL --port 0` and waits for the address it prints. */
export async function startPgBoard(
  pg: PgServer,
  env: Record<string, string> = {},
): Promise<PgBoard> {
  const store = "DATABASE_URL" in env ? [] : ["--store", pg.url];
  const board = await startBoard(REPO_ROOT, store, { flags: PG_FLAGS, env });
  return {
    ...board,
    async [Symbol.asyncDispose]() {
      try {
        board.child.kill("SIGTERM");
      } catch {
        // already gone (killed by the test)
      }
      await board.output;
    },
  };
}
