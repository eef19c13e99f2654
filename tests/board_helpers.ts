// Shared helpers for the message board tests (not a test file itself).
import { fileURLToPath } from "node:url";

/** The board script, as an absolute path. */
export const BOARD_SCRIPT = fileURLToPath(
  new URL("../message_board.ts", import.meta.url),
);

/** The README command's permission flags (relative to the board's working folder). */
export const BOARD_FLAGS = [
  "--allow-net=127.0.0.1",
  "--allow-read=./data",
  "--allow-write=./data",
];

/** A fresh temporary folder, removed again by `using`'s dispose. */
export async function tempFolder(): Promise<
  { path: string } & AsyncDisposable
> {
  const path = await Deno.makeTempDir({ prefix: "board_test_" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** A board process started with the README's flags in `cwd`. */
export interface BoardProcess {
  child: Deno.ChildProcess;
  /** The address it printed, like `http://127.0.0.1:41234/` (https with --cert). */
  url: string;
  /** Resolves with everything the process printed once it exits. */
  output: Promise<
    { stdout: string; stderr: string; code: number; signal: Deno.Signal | null }
  >;
}

/** Reads a whole stream as text, calling `onText` with all of it so far after each chunk. */
async function readAll(
  stream: ReadableStream<Uint8Array>,
  onText: (text: string) => void = () => {},
): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
    onText(text);
  }
  return text;
}

/** How {@link startBoard} runs the process. */
export interface StartOptions {
  /** Permission flags. @default {BOARD_FLAGS} (the file mode's README command) */
  flags?: string[];
  /** Extra environment variables. @default {} */
  env?: Record<string, string>;
  /** The script to run. @default {BOARD_SCRIPT} */
  script?: string;
  /**
   * Keep the per-client limits on. Off by default (`--rate-limit off`): these tests post
   * many messages from one address, as a load test does. @default false
   */
  rateLimit?: boolean;
  /** A command that runs deno, such as `["prlimit", "--nofile=256"]`. @default [] */
  wrapper?: string[];
}

/**
 * Starts `message_board.ts --port 0` (or `script`) in `cwd` and waits for its address.
 * Throws with the process output when it exits first.
 */
export async function startBoard(
  cwd: string,
  args: string[] = [],
  {
    flags = BOARD_FLAGS,
    env = {},
    script = BOARD_SCRIPT,
    rateLimit = false,
    wrapper = [],
  }: StartOptions = {},
): Promise<BoardProcess> {
  const limits = rateLimit ? [] : ["--rate-limit", "off"];
  const [program, ...wrapperArgs] = [...wrapper, Deno.execPath()];
  const child = new Deno.Command(program, {
    args: [
      ...wrapperArgs,
      "run",
      ...flags,
      script,
      "--port",
      "0",
      "--quiet",
      ...limits,
      ...args,
    ],
    cwd,
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const address = Promise.withResolvers<string>();
  const output = Promise.all([
    readAll(child.stdout, (text) => {
      const match = text.match(/https?:\/\/\S+\//);
      if (match) address.resolve(match[0]);
    }),
    readAll(child.stderr),
    child.status,
  ]).then(([stdout, stderr, status]) => {
    address.reject(
      new Error(
        `the board exited (${status.code}) before its address:\n${stderr}`,
      ),
    );
    return { stdout, stderr, code: status.code, signal: status.signal };
  });
  try {
    return { child, url: await address.promise, output };
  } catch (error) {
    await output;
    throw error;
  }
}

/** Posts a message with the JSON API; returns the status and the stored message. */
export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; message: { id: number; text: string } | null }> {
  const response = await fetch(new URL("api/messages", url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  return {
    status: response.status,
    message: response.status === 201 ? json : null,
  };
}

/** Reads every message through the JSON API, following the `older` links. */
export async function fetchAllMessages(
  url: string,
): Promise<{ id: number; text: string }[]> {
  const all: { id: number; text: string }[] = [];
  let next: string | null = "api/messages?limit=100";
  while (next !== null) {
    const response = await fetch(new URL(next, url));
    const page: {
      messages: { id: number; text: string }[];
      older: string | null;
    } = await response
      .json();
    all.push(...page.messages);
    next = page.older === null ? null : page.older.slice(1);
  }
  return all;
}
