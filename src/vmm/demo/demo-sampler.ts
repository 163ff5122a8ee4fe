/**
 * `DemoRateSampler`: interrupts per second per source, from successive reads of the demo guest's
 * status block: each sample's rates are the handler runs since the previous sample over the time
 * between them, on the caller's clock. It also remembers the highest rate each source reached, so
 * a caller can say afterwards whether every source was seen running.
 */

import type { Clock } from '../../base/clock.ts';
import { DEMO_SOURCES, type DemoSource } from './demo-layout.ts';
import type { DemoStatus } from './demo-status.ts';

export type DemoCounts = Readonly<Record<DemoSource, number>>;

/** Handler runs so far, per source. */
export function handlerRuns(status: DemoStatus): DemoCounts {
  return {
    timer: status.timerTicks + status.timerLateTicks,
    ipi: status.ipisHandled,
    level: status.levelHandled + status.levelIdle,
    msix: status.msixHandled,
  };
}

export interface DemoSample {
  readonly status: DemoStatus;
  /** Seconds since the sampler was created. */
  readonly elapsedSeconds: number;
  /** Handler runs per second since the previous sample. */
  readonly rates: DemoCounts;
}

const NS_PER_SECOND = 1e9;

export class DemoRateSampler {
  private readonly startNs: number;
  private lastNs: number;
  private lastRuns: DemoCounts;
  private readonly peaks: Record<DemoSource, number> = { timer: 0, ipi: 0, level: 0, msix: 0 };
  private taken = 0;

  constructor(
    private readonly read: () => DemoStatus,
    private readonly clock: Clock,
  ) {
    this.startNs = clock.nowNs();
    this.lastNs = this.startNs;
    this.lastRuns = handlerRuns(read());
  }

  sample(): DemoSample {
    const nowNs = this.clock.nowNs();
    const status = this.read();
    const runs = handlerRuns(status);
    const seconds = (nowNs - this.lastNs) / NS_PER_SECOND;
    const rate = (source: DemoSource): number => (seconds > 0 ? (runs[source] - this.lastRuns[source]) / seconds : 0);
    const rates = { timer: rate('timer'), ipi: rate('ipi'), level: rate('level'), msix: rate('msix') };
    for (const source of DEMO_SOURCES) this.peaks[source] = Math.max(this.peaks[source], rates[source]);
    this.lastNs = nowNs;
    this.lastRuns = runs;
    this.taken++;
    return { status, elapsedSeconds: (nowNs - this.startNs) / NS_PER_SECOND, rates };
  }

  /** The highest rate each source reached in any sample. */
  peakRates(): DemoCounts {
    return { ...this.peaks };
  }

  /** Samples taken. */
  get samples(): number {
    return this.taken;
  }
}
