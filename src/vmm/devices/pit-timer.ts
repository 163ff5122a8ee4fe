/**
 * `startPitTimer`: runs a `Pit8254`'s time on the device thread. It keeps one setTimeout armed for
 * the PIT's next event (`nextEventNs`), calls `advance()` when it fires, and re-arms whenever a
 * guest write moves the schedule (the PIT's schedule listener). A timer that fires early only
 * re-arms; one that fires late delivers what is due, the PIT coalescing missed edges
 * (`coalescedTicks`). Node's timers have a millisecond granularity, so a period below about
 * 1 ms is delivered as often as the event loop allows, never as a burst.
 */

import type { Clock } from '../../base/clock.ts';
import type { Pit8254 } from './pit-8254.ts';

const NS_PER_MS = 1_000_000;

export interface PitTimer {
  /** Disarms the timer and detaches it from the PIT; the PIT keeps its state and counts nothing more until advanced. */
  stop(): void;
}

/**
 * Drives `pit` on this thread. `clock` must be the PIT's own clock (its deadlines are on it).
 * EBUSY when the PIT already has a timer.
 */
export function startPitTimer(pit: Pit8254, clock: Clock): PitTimer {
  const timer = new SetTimeoutPitTimer(pit, clock);
  pit.setScheduleListener(timer.arm);
  timer.arm();
  return timer;
}

class SetTimeoutPitTimer implements PitTimer {
  private pending: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private readonly pit: Pit8254,
    private readonly clock: Clock,
  ) {}

  /** (Re)arms for the PIT's next event, or leaves the timer idle when none is due. Bound once: it is the PIT's listener. */
  readonly arm = (): void => {
    if (this.pending !== undefined) clearTimeout(this.pending);
    this.pending = undefined;
    if (this.stopped) return;
    const due = this.pit.nextEventNs();
    if (due === undefined) return;
    // Never early by rounding: an early timer would only re-arm, a late one delays the edge.
    this.pending = setTimeout(this.fire, Math.max(0, Math.ceil((due - this.clock.nowNs()) / NS_PER_MS)));
  };

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.arm();
    this.pit.setScheduleListener(undefined);
  }

  private readonly fire = (): void => {
    this.pending = undefined;
    this.pit.advance();
    this.arm();
  };
}
