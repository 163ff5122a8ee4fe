/**
 * `IrqEdgeEvent` and `IrqLevelEvent`: how a device raises an interrupt (seed 000; crosvm
 * `devices/src/irq_event.rs`; seed-apis.md §2.2).
 *
 * An edge event is one trigger event: each `trigger()` is a pulse. A level event adds a resample
 * event: the chip keeps the line asserted from the trigger until the guest's EOI, then deasserts it
 * and signals resample; the device re-checks its state and triggers again if it still needs
 * service. The device never deasserts the line itself.
 *
 * crosvm's `clear_*` methods block when nothing is pending; here `clearTrigger()` and
 * `clearResample()` never block (they return whether anything was pending), and the
 * `...Blocking()` forms are for worker threads.
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { Event, type EventDescriptor } from './event.ts';

export interface IrqEdgeEventDescriptor {
  readonly kind: 'irq-edge-event';
  readonly trigger: EventDescriptor;
}

export interface IrqLevelEventDescriptor {
  readonly kind: 'irq-level-event';
  readonly trigger: EventDescriptor;
  readonly resample: EventDescriptor;
}

/** Reads and clears `event` without blocking; true when it had been signalled. */
function clearWithoutBlocking(event: Event): boolean {
  return event.tryRead() !== 0n;
}

function checkDescriptorKind(descriptor: { readonly kind?: unknown }, kind: string): void {
  if (descriptor.kind !== kind) {
    throw new IrqChipError(ErrorCode.EINVAL, `expected an ${kind} descriptor, got '${String(descriptor.kind)}'`);
  }
}

/** The trigger half both kinds share: device → chip. */
abstract class TriggeredIrqEvent {
  protected constructor(protected readonly triggerEvent: Event) {}

  getTrigger(): Event {
    return this.triggerEvent;
  }

  /** Device → chip: raise the interrupt (an edge pulses; a level stays asserted until the guest's EOI). */
  trigger(): void {
    this.triggerEvent.signal();
  }

  /** Chip side: consumes a pending trigger without blocking; true when one was pending. */
  clearTrigger(): boolean {
    return clearWithoutBlocking(this.triggerEvent);
  }

  /** Blocks (worker threads only) until a trigger arrives, and consumes it. */
  clearTriggerBlocking(): void {
    this.triggerEvent.wait();
  }
}

export class IrqEdgeEvent extends TriggeredIrqEvent {
  /** A new edge event over a fresh memory-backed trigger event. */
  constructor(trigger: Event = Event.create()) {
    super(trigger);
  }

  static fromEvent(trigger: Event): IrqEdgeEvent {
    return new IrqEdgeEvent(trigger);
  }

  static fromDescriptor(descriptor: IrqEdgeEventDescriptor): IrqEdgeEvent {
    checkDescriptorKind(descriptor, 'irq-edge-event');
    return new IrqEdgeEvent(Event.fromDescriptor(descriptor.trigger));
  }

  /** Another handle on the same trigger counter. */
  tryClone(): IrqEdgeEvent {
    return new IrqEdgeEvent(this.triggerEvent.tryClone());
  }

  descriptor(): IrqEdgeEventDescriptor {
    return { kind: 'irq-edge-event', trigger: this.triggerEvent.descriptor() };
  }
}

export class IrqLevelEvent extends TriggeredIrqEvent {
  private readonly resampleEvent: Event;

  /** A new level event over two fresh memory-backed events. */
  constructor(trigger: Event = Event.create(), resample: Event = Event.create()) {
    super(trigger);
    this.resampleEvent = resample;
  }

  static fromEventPair(trigger: Event, resample: Event): IrqLevelEvent {
    return new IrqLevelEvent(trigger, resample);
  }

  static fromDescriptor(descriptor: IrqLevelEventDescriptor): IrqLevelEvent {
    checkDescriptorKind(descriptor, 'irq-level-event');
    return new IrqLevelEvent(Event.fromDescriptor(descriptor.trigger), Event.fromDescriptor(descriptor.resample));
  }

  /** Other handles on the same two counters. */
  tryClone(): IrqLevelEvent {
    return new IrqLevelEvent(this.triggerEvent.tryClone(), this.resampleEvent.tryClone());
  }

  getResample(): Event {
    return this.resampleEvent;
  }

  /** Chip → device: the guest EOIed; re-check and trigger again if still asserting. */
  triggerResample(): void {
    this.resampleEvent.signal();
  }

  /** Device side: consumes a pending resample without blocking; true when one was pending. */
  clearResample(): boolean {
    return clearWithoutBlocking(this.resampleEvent);
  }

  /** Blocks (worker threads only) until a resample arrives, and consumes it. */
  clearResampleBlocking(): void {
    this.resampleEvent.wait();
  }

  /** Both events' descriptors, trigger first (as crosvm's `as_raw_descriptors`). */
  descriptor(): IrqLevelEventDescriptor {
    return { kind: 'irq-level-event', trigger: this.triggerEvent.descriptor(), resample: this.resampleEvent.descriptor() };
  }
}
