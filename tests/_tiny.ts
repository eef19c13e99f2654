// Shared helpers for the server_tiny.ts tests (not a test file itself).
import { serveTiny, type TinyServerOptions } from "../server_tiny.ts";

/**
 * A quiet in-process server_tiny on a free port of 127.0.0.1, its log lines
 * collected in `lines`; `options` override those defaults.
 */
export function startTinyServer(options: TinyServerOptions = {}) {
  const lines: string[] = [];
  const server = serveTiny({
    port: 0,
    quiet: true,
    log: (line) => lines.push(line),
    ...options,
  });
  return { server, lines, port: server.addr.port };
}
