/**
 * `IrqEventService`: the VMM's IRQ service loop for a chip that services its events itself (the
 * userspace and split chips; seed-apis.md §2.6): each registered event gets a waiter that calls
 * `serviceIrqEvent` whenever the event is signalled, and the chip's delayed-event token gets one
 * that calls `processDelayedIrqEvents`. Waiting never blocks the thread (`Event.waitAsync`: a
 * memory event's `Atomics.waitAsync`, an eventfd's `uv_poll`), so it runs on the main thread
 * beside everything else.
 *
 * Each waiter wakes at least every POLL_MS to notice `stop()` and unregistered events. Events
 * registered after `start()` (an MSI-X vector the guest unmasks) are picked up within POLL_MS,
 * or at once by calling `refresh()`.
 */

import type { Event } from '../event/event.ts';
import type { IrqChip } from './irq-chip.ts';

/** How often an idle waiter looks at whether it should still wait. */
const POLL_MS = 50;

export class IrqEventService {
  /** Services that found work, counted: events serviced and delayed-event passes. */
  serviced = 0;
  private running = false;
  private error: Error | undefined;
  private readonly watched = new Map<number, Event>();
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly chip: IrqChip) {}

  /** Starts waiting on every registered event and on the delayed-event token. */
  start(): void {
    if (this.running) return;
    this.running = true;
    const delayed = this.chip.irqDelayedEventToken();
    if (delayed !== undefined) {
      this.loops.push(
        this.watch(delayed, () => true, () => {
          this.chip.processDelayedIrqEvents();
        }),
      );
    }
    this.refresh();
    this.loops.push(this.refreshWhileRunning());
  }

  /** Starts waiters for events registered since the last look, and retires those of events gone. */
  refresh(): void {
    if (!this.running) return;
    const tokens = this.chip.irqEventTokens();
    for (const [index, event] of this.watched) {
      if (!tokens.some((token) => token.index === index && token.event === event)) this.watched.delete(index);
    }
    for (const token of tokens) {
      if (this.watched.get(token.index) === token.event) continue;
      const { index, event } = token;
      this.watched.set(index, event);
      this.loops.push(
        this.watch(event, () => this.watched.get(index) === event, () => {
          this.chip.serviceIrqEvent(index);
        }),
      );
    }
  }

  /** The first error a service threw, if any; the waiter that met it stopped. */
  failure(): Error | undefined {
    return this.error;
  }

  /** Stops every waiter and waits for them to finish. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops.splice(0));
    this.watched.clear();
  }

  private async refreshWhileRunning(): Promise<void> {
    while (this.running) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      this.refresh();
    }
  }

  private stopped(): boolean {
    return !this.running;
  }

  /**
   * Services `event` whenever it is signalled, while wanted. After each service it yields to the
   * event loop: an event unregistered with signals in it (a masked MSI-X vector keeps its count
   * for the PBA) stays readable, and must not starve the timers of the refresh that retires it.
   */
  private async watch(event: Event, stillWanted: () => boolean, service: () => void): Promise<void> {
    while (this.running) {
      const result = await event.waitAsync(POLL_MS);
      // stop() or a refresh may have run while this waited.
      if (this.stopped() || !stillWanted()) return;
      if (result === 'timed-out') continue;
      try {
        service();
      } catch (error) {
        this.error ??= error instanceof Error ? error : new Error('an IRQ service failed', { cause: error });
        return;
      }
      this.serviced++;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
