/**
 * The progress lines a full run prints: which measurement starts (scenario, server, run k
 * of n) and about how long is left, estimated from the plan and corrected by how fast the
 * run has gone so far. Pure (tested in tests/bench_test.ts).
 *
 * @module
 */

/** One server measured in one scenario, with its estimated cost. */
export interface PlannedStep {
  scenario: string;
  server: string;
  runs: number;
  /** Estimated seconds for the whole step (start, warm-up, runs). */
  seconds: number;
}

/** What the estimate of a step needs to know. */
export interface StepShape {
  client?: "wrk" | "curl";
  pulls?: number;
  freshEachRun?: boolean;
}

/** Seconds to start a server, wait for it, check its answer and stop it. */
const START_SECONDS = 3;

/**
 * Measured runs of a step: a curl scenario's pulls, else the `--runs`.
 *
 * @example runsOf({ client: "curl", pulls: 4 }, 3) === 4; runsOf({}, 3) === 3
 */
export function runsOf(shape: StepShape, runs: number): number {
  return shape.client === "curl" ? shape.pulls ?? runs : runs;
}

/**
 * Estimated seconds for one server in one scenario.
 *
 * @example estimateSeconds({}, { duration: 5, runs: 3, warmup: 1 }) === 3 + 1 + 3 * 5.5
 */
export function estimateSeconds(
  shape: StepShape,
  { duration, runs, warmup }: {
    duration: number;
    runs: number;
    warmup: number;
  },
): number {
  if (shape.client === "curl") return START_SECONDS + runsOf(shape, runs) * 1.5;
  if (shape.freshEachRun) return runs * (START_SECONDS + duration + 0.5);
  return START_SECONDS + warmup + runs * (duration + 0.5);
}

/**
 * Formats a number of seconds left for a person.
 *
 * @example formatTimeLeft(42) === "about 42 s left"; formatTimeLeft(754) === "about 12 min 30 s left"
 */
export function formatTimeLeft(seconds: number): string {
  const rounded = Math.max(0, Math.round(seconds / 10) * 10);
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
  const minutes = Math.floor(rounded / 60);
  const rest = rounded % 60;
  return `about ${minutes} min${rest ? ` ${rest} s` : ""} left`;
}

/**
 * Seconds left: the plan's estimate for what remains, scaled by how the run's real time so
 * far compares with the plan's (once there is enough to go on; between 0.5× and 3×).
 *
 * @example secondsLeft(100, 50, 100) === 200 // twice as slow as planned so far
 */
export function secondsLeft(
  plannedLeft: number,
  plannedDone: number,
  elapsed: number,
): number {
  const scale = plannedDone >= 20
    ? Math.min(3, Math.max(0.5, elapsed / plannedDone))
    : 1;
  return plannedLeft * scale;
}

/**
 * The line printed as a measured run starts.
 *
 * @example progressLine({ scenario: "files-small", server: "nginx", run: 2, runs: 3, step: 4, steps: 40, secondsLeft: 500 })
 *   === "[4/40] files-small · nginx · run 2 of 3 · about 8 min 20 s left"
 */
export function progressLine(
  { scenario, server, run, runs, step, steps, secondsLeft }: {
    scenario: string;
    server: string;
    run: number;
    runs: number;
    step: number;
    steps: number;
    secondsLeft: number;
  },
): string {
  return `[${step}/${steps}] ${scenario} · ${server} · run ${run} of ${runs} · ${
    formatTimeLeft(secondsLeft)
  }`;
}

/**
 * Tracks a benchmark against its plan and writes a line as each measured run starts. Runs
 * may come in any order (the runner takes the servers of a scenario in turns); each one
 * done is reported with {@link Progress.complete}.
 */
export class Progress {
  #steps: PlannedStep[];
  #now: () => number;
  #started: number;
  #done = 0;

  constructor(steps: PlannedStep[], now: () => number = Date.now) {
    this.#steps = steps;
    this.#now = now;
    this.#started = now();
  }

  /** The line for run `run` (1-based) of step `index` (0-based). */
  line(index: number, run: number): string {
    const step = this.#steps[index];
    const total = this.#steps.reduce((sum, s) => sum + s.seconds, 0);
    const elapsed = (this.#now() - this.#started) / 1000;
    return progressLine({
      scenario: step.scenario,
      server: step.server,
      run,
      runs: step.runs,
      step: index + 1,
      steps: this.#steps.length,
      secondsLeft: secondsLeft(total - this.#done, this.#done, elapsed),
    });
  }

  /** Counts `runs` runs of step `index` as done (all that are left of it, when it failed). */
  complete(index: number, runs = 1): void {
    const step = this.#steps[index];
    this.#done += step.seconds * runs / step.runs;
  }
}
