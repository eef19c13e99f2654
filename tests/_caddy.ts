/**
 * Caddy for the deployment tests: {@link startCaddy} runs deploy/Caddyfile
 * (Debian's caddy package) with its placeholders set for a test (plain HTTP on
 * 127.0.0.1, free ports, the admin API off, short timeouts), and {@link send}
 * is one request from a chosen source address (127.0.0.0/8), as a client on
 * another machine would be. Without Caddy on PATH the tests that need it are
 * skipped with a loud message, except in CI (CI=true), where they fail.
 * @module
 */
import http from "node:http";
import { fileURLToPath } from "node:url";
import { pickFreePort, startProcess } from "./_process.ts";

export const CADDY_INSTALL = "apt-get install -y caddy";
const CADDYFILE = fileURLToPath(
  new URL("../deploy/Caddyfile", import.meta.url),
);

/** The timeouts the test gives Caddy, short so that the test is quick. */
export const READ_HEADER_TIMEOUT_MS = 1_000;
export const IDLE_TIMEOUT_MS = 2_000;
/** The site names Caddy serves; `.test` is reserved for tests (RFC 2606). */
export const BOARD_HOST = "board.test";
export const FILES_HOST = "files.test";

/** Where `caddy` is on PATH (Debian: /usr/bin/caddy), or null. */
function findOnPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch {
      // not in this folder
    }
  }
  return null;
}

export const CADDY = findOnPath("caddy");
export const IN_CI = Deno.env.get("CI") === "true";
if (CADDY === null) {
  const line = "!".repeat(78);
  console.error(
    `\n${line}\n!! Caddy not found on PATH: ${
      IN_CI ? "FAILING (CI=true)" : "SKIPPING"
    } the deployment test.\n!! Install it with: ${CADDY_INSTALL}\n${line}\n`,
  );
}

/** A running Caddy: the ports of its two sites and everything it logged. */
export interface CaddyServer extends AsyncDisposable {
  boardPort: number;
  filesPort: number;
  lines: string[];
}

/**
 * Runs `caddy run --config deploy/Caddyfile` with the test's environment and
 * waits until the board's site answers through it. Caddy cannot be told to
 * pick its own port, so the test picks free ones and tries again (three
 * times) when another process takes one first.
 */
export async function startCaddy(
  env: Record<string, string>,
): Promise<CaddyServer> {
  if (CADDY === null) {
    throw new Error(
      `Caddy is not installed; install it with: ${CADDY_INSTALL}`,
    );
  }
  // Caddy keeps its state (an autosaved config, certificates) under HOME and
  // the XDG folders: a temp folder here, removed at the end.
  const home = await Deno.makeTempDir({ prefix: "caddy_test_" });
  for (let attempt = 1;; attempt++) {
    const boardPort = pickFreePort();
    const filesPort = pickFreePort();
    const caddy = await startProcess(CADDY, [
      "run",
      "--config",
      CADDYFILE,
      "--adapter",
      "caddyfile",
    ], {
      env: {
        HOME: home,
        XDG_CONFIG_HOME: `${home}/config`,
        XDG_DATA_HOME: `${home}/data`,
        CADDY_ADMIN: "off",
        CADDY_BIND: "127.0.0.1",
        CADDY_READ_HEADER_TIMEOUT: `${READ_HEADER_TIMEOUT_MS}ms`,
        CADDY_IDLE_TIMEOUT: `${IDLE_TIMEOUT_MS}ms`,
        CADDY_HEALTH_INTERVAL: "500ms",
        CADDY_GRACE_PERIOD: "1s",
        BOARD_SITE: `http://${BOARD_HOST}:${boardPort}`,
        FILES_SITE: `http://${FILES_HOST}:${filesPort}`,
        ...env,
      },
      ready: null,
    });
    let exited = false;
    caddy.output.finally(() => exited = true);
    const { lines } = caddy;
    const stop = () => caddy.stop();

    // Ready once the board's site answers (a health check may still be
    // pending: any status will do).
    const deadline = Date.now() + 10_000;
    let ready = false;
    while (!exited && Date.now() < deadline) {
      try {
        await send(boardPort, { host: BOARD_HOST, path: "/api/messages" });
        ready = true;
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    if (ready) {
      return {
        boardPort,
        filesPort,
        lines,
        async [Symbol.asyncDispose]() {
          try {
            await stop();
          } finally {
            await Deno.remove(home, { recursive: true });
          }
        },
      };
    }
    await stop();
    const log = lines.join("\n");
    if (attempt < 3 && /address already in use/.test(log)) continue;
    await Deno.remove(home, { recursive: true });
    throw new Error(`Caddy did not start:\n${log}`);
  }
}

/** What {@link send} sends. */
export interface SendOptions {
  method?: string;
  path?: string;
  /** The Host header's name; the port is added. */
  host: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** The client's own address, such as 127.0.0.2 (any of 127.0.0.0/8 works). */
  localAddress?: string;
}

/**
 * One HTTP/1.1 request on a fresh connection to 127.0.0.1:`port`, through
 * node:http, which (unlike fetch) sets the Host header and the source
 * address it is given.
 */
export function send(
  port: number,
  { method = "GET", path = "/", host, headers = {}, body, localAddress }:
    SendOptions,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: "127.0.0.1",
      port,
      method,
      path,
      localAddress,
      agent: false,
      timeout: 10_000,
      headers: { host: `${host}:${port}`, ...headers },
    }, (response) => {
      let text = "";
      response.setEncoding("utf8"); // decodes characters split between chunks
      response.on("data", (chunk: string) => text += chunk);
      response.on(
        "end",
        () => resolve({ status: response.statusCode ?? 0, body: text }),
      );
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error("no answer")));
    request.on("error", reject);
    request.end(body);
  });
}
