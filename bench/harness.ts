/**
 * The benchmark harness behind `npm run bench`.
 *
 * Each `bench/*.bench.ts` module exports `benchmarks: Benchmark[]`. `run.ts` runs them all (or
 * those whose name contains a filter argument) and prints one JSON object per benchmark on
 * stdout, with a human summary on stderr. Figures are medians over several samples: these
 * machines are shared and noisy, so a single sample means little.
 */

export interface BenchResult {
  readonly name: string;
  /** Unit of `median`, `min` and `max`, e.g. 'ns/op' or 'us/roundtrip'. */
  readonly unit: string;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly samples: number;
  /** Operations per sample, so a reader can tell how long each sample ran. */
  readonly opsPerSample: number;
  /** Anything else worth recording (counts checked, configuration). */
  readonly detail?: Readonly<Record<string, number | string | boolean>>;
}

export interface Benchmark {
  readonly name: string;
  run(): BenchResult | Promise<BenchResult>;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** Summarises per-sample figures (already in `unit`) as a result. */
export function summarise(
  name: string,
  unit: string,
  perSample: readonly number[],
  opsPerSample: number,
  detail?: Readonly<Record<string, number | string | boolean>>,
): BenchResult {
  return {
    name,
    unit,
    median: round(median(perSample)),
    min: round(Math.min(...perSample)),
    max: round(Math.max(...perSample)),
    samples: perSample.length,
    opsPerSample,
    ...(detail === undefined ? {} : { detail }),
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export interface TimingOptions {
  /** Calls of `operation` per timed sample. */
  readonly opsPerSample?: number;
  readonly samples?: number;
  /** Untimed calls before the first sample, to let the JIT settle. */
  readonly warmupOps?: number;
}

/** Times a synchronous operation on this thread; reports nanoseconds per call. */
export function timeOperation(name: string, operation: () => void, options: TimingOptions = {}): BenchResult {
  const opsPerSample = options.opsPerSample ?? 100_000;
  const samples = options.samples ?? 9;
  const warmupOps = options.warmupOps ?? opsPerSample;
  for (let i = 0; i < warmupOps; i++) operation();
  const perSample: number[] = [];
  for (let sample = 0; sample < samples; sample++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < opsPerSample; i++) operation();
    perSample.push(Number(process.hrtime.bigint() - start) / opsPerSample);
  }
  return summarise(name, 'ns/op', perSample, opsPerSample);
}
