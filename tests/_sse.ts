// Reads a text/event-stream response frame by frame, for the live-update tests.

/** One parsed text/event-stream frame: an event, or a comment line (heartbeat). */
export interface Frame {
  id?: string;
  event?: string;
  data?: string;
  retry?: string;
  comment?: string;
}

/** How long a test waits for the next frame before it fails (rather than hangs). */
const FRAME_TIMEOUT_MS = 15_000;

/** Reads frames from an event stream, one at a time, in order. */
export function frameReader(response: Response) {
  const reader = response.body!.pipeThrough(new TextDecoderStream())
    .getReader();
  let buffer = "";
  return {
    async next(): Promise<Frame | null> {
      while (!buffer.includes("\n\n")) {
        const { done, value } = await readWithin(reader, FRAME_TIMEOUT_MS);
        if (done) return null;
        buffer += value;
      }
      const end = buffer.indexOf("\n\n");
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const frame: Frame = {};
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) frame.comment = line.slice(1).trim();
        else {
          const colon = line.indexOf(":");
          const field = line.slice(0, colon) as
            | "id"
            | "event"
            | "data"
            | "retry";
          frame[field] = line.slice(colon + 1).trimStart();
        }
      }
      return frame;
    },
    /** The next frame that is an event (skipping retry and heartbeat frames). */
    async nextEvent(): Promise<Frame | null> {
      for (;;) {
        const frame = await this.next();
        if (frame === null || frame.event !== undefined) return frame;
      }
    },
    cancel: () => reader.cancel(),
  };
}

async function readWithin<T>(
  reader: ReadableStreamDefaultReader<T>,
  ms: number,
) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no event within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([reader.read(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
