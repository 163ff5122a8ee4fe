/**
 * The chip's table of registered events, kept the same on every thread that holds a view of the
 * chip.
 *
 * Events are SharedArrayBuffer-backed, but a SharedArrayBuffer can only reach another thread by
 * message, so the table cannot live in shared words. The owner (the chip object devices register
 * with) sends each change to every view's MessagePort and then bumps a generation word in the
 * chip's shared state. A view compares the generation before it uses the table and, when it moved,
 * drains its port synchronously (`receiveMessageOnPort`), so it acts on registrations made after
 * it was created, at once, even from a vCPU thread that never returns to its event loop
 * (seed-apis.md §2.7 [quirk]: crosvm freezes the resample lists at `finalizeDevices`).
 *
 * Indexes stay stable while an event is registered. An emptied slot is reused by the next
 * registration (crosvm never reuses one, so a device that arms and disarms its irqfd at every
 * mask grows the table without end); `onSlotCleared` tells the chip, on every thread, so work it
 * queued for the old occupant (a deferred assertion) is dropped rather than done for the new one.
 */

import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { Event, type EventDescriptor } from '../event/event.ts';
import type { IrqEventIndex, IrqEventSource } from './types.ts';

export interface RegisteredIrqEvent {
  readonly gsi: number;
  readonly trigger: Event;
  /** Present for level events: signalled after the guest's EOI. */
  readonly resample: Event | undefined;
  readonly source: IrqEventSource;
}

type RegistryUpdate =
  | {
      readonly op: 'set';
      readonly index: IrqEventIndex;
      readonly gsi: number;
      readonly trigger: EventDescriptor;
      readonly resample: EventDescriptor | undefined;
      readonly source: IrqEventSource;
    }
  | { readonly op: 'clear'; readonly index: IrqEventIndex };

const NO_EVENTS: readonly RegisteredIrqEvent[] = Object.freeze([]);

export class IrqEventRegistry {
  private readonly slots: (RegisteredIrqEvent | undefined)[] = [];
  private readonly viewPorts: MessagePort[] = [];
  private levelEventsByGsi = new Map<number, RegisteredIrqEvent[]>();
  private seenGeneration: number;
  /** Called on this thread whenever a slot's occupant goes (unregistered, or replaced by a sync). */
  onSlotCleared: ((index: IrqEventIndex) => void) | undefined;

  /**
   * @param generation the chip's shared word array, and the index of the registry's generation in it
   * @param inbox for a view: the port the owner sends changes to; undefined for the owner
   */
  constructor(
    private readonly generationWords: Int32Array,
    private readonly generationIndex: number,
    private readonly inbox: MessagePort | undefined,
  ) {
    this.seenGeneration = inbox === undefined ? Atomics.load(generationWords, generationIndex) : -1;
  }

  get isOwner(): boolean {
    return this.inbox === undefined;
  }

  /**
   * Registers an event (owner only); returns its slot index. A trigger that is already registered
   * (on any GSI) is EBUSY, as KVM refuses a second irqfd on one eventfd (seed-apis.md §6.18): one
   * signal would otherwise go to whichever registration the service thread reads first.
   */
  register(gsi: number, trigger: Event, resample: Event | undefined, source: IrqEventSource): IrqEventIndex {
    this.checkOwner('register events');
    if (this.slots.some((entry) => entry?.trigger.sameCounter(trigger) === true)) {
      throw new IrqChipError(ErrorCode.EBUSY, `this trigger event is already registered (GSI ${gsi} requested)`);
    }
    const firstEmpty = this.slots.indexOf(undefined);
    const index = firstEmpty < 0 ? this.slots.length : firstEmpty;
    const entry: RegisteredIrqEvent = { gsi, trigger, resample, source };
    this.apply(setUpdate(index, entry), entry);
    return index;
  }

  /** Empties the first slot holding `trigger` on `gsi` (owner only); false when there is none. */
  unregister(gsi: number, trigger: Event): boolean {
    this.checkOwner('unregister events');
    const index = this.slots.findIndex((entry) => entry !== undefined && entry.gsi === gsi && entry.trigger.sameCounter(trigger));
    if (index < 0) return false;
    this.apply({ op: 'clear', index }, undefined);
    return true;
  }

  /** The event in a slot, or undefined for an empty or unknown slot. */
  slot(index: IrqEventIndex): RegisteredIrqEvent | undefined {
    this.sync();
    return this.slots[index];
  }

  /** How many slots the table has, the empty ones included (the next index `register` returns). */
  slotCount(): number {
    this.sync();
    return this.slots.length;
  }

  /** Every occupied slot with its index. */
  entries(): [IrqEventIndex, RegisteredIrqEvent][] {
    this.sync();
    return this.slots.flatMap((entry, index): [IrqEventIndex, RegisteredIrqEvent][] => (entry === undefined ? [] : [[index, entry]]));
  }

  /** The level events registered on a GSI (their resample events are what an EOI signals). */
  levelEventsOn(gsi: number): readonly RegisteredIrqEvent[] {
    this.sync();
    return this.levelEventsByGsi.get(gsi) ?? NO_EVENTS;
  }

  /** The GSIs that carry at least one level event. */
  levelGsis(): IterableIterator<number> {
    this.sync();
    return this.levelEventsByGsi.keys();
  }

  /**
   * Opens a channel to a new view (owner only): returns the port to hand to the view's thread
   * (transfer it with `postMessage`). The current table is queued on it first.
   */
  openView(): MessagePort {
    this.checkOwner('open views');
    const { port1, port2 } = new MessageChannel();
    this.slots.forEach((entry, index) => {
      if (entry !== undefined) port1.postMessage(setUpdate(index, entry));
    });
    port1.unref();
    this.viewPorts.push(port1);
    return port2;
  }

  /** A view: applies every change the owner sent since the last look. */
  sync(): void {
    const generation = Atomics.load(this.generationWords, this.generationIndex);
    if (this.inbox === undefined || generation === this.seenGeneration) return;
    for (let received = receiveMessageOnPort(this.inbox); received !== undefined; received = receiveMessageOnPort(this.inbox)) {
      const update = received.message as RegistryUpdate;
      this.store(update.index, update.op === 'set' ? rebuild(update) : undefined);
    }
    this.seenGeneration = generation;
  }

  private apply(update: RegistryUpdate, entry: RegisteredIrqEvent | undefined): void {
    this.store(update.index, entry);
    for (const port of this.viewPorts) port.postMessage(update);
    // Views drain their port when this moves; the messages are queued before it does.
    this.seenGeneration = Atomics.add(this.generationWords, this.generationIndex, 1) + 1;
  }

  private store(index: IrqEventIndex, entry: RegisteredIrqEvent | undefined): void {
    while (this.slots.length <= index) this.slots.push(undefined);
    const previous = this.slots[index];
    this.slots[index] = entry;
    if (previous !== undefined) this.onSlotCleared?.(index);
    this.levelEventsByGsi = new Map();
    for (const slot of this.slots) {
      if (slot?.resample === undefined) continue;
      const list = this.levelEventsByGsi.get(slot.gsi);
      if (list === undefined) this.levelEventsByGsi.set(slot.gsi, [slot]);
      else list.push(slot);
    }
  }

  private checkOwner(what: string): void {
    if (!this.isOwner) throw new IrqChipError(ErrorCode.ENOTTY, `only the chip that created the views may ${what}; this is a view`);
  }
}

function setUpdate(index: IrqEventIndex, entry: RegisteredIrqEvent): RegistryUpdate {
  return { op: 'set', index, gsi: entry.gsi, trigger: entry.trigger.descriptor(), resample: entry.resample?.descriptor(), source: entry.source };
}

function rebuild(update: Extract<RegistryUpdate, { op: 'set' }>): RegisteredIrqEvent {
  return {
    gsi: update.gsi,
    trigger: Event.fromDescriptor(update.trigger),
    resample: update.resample === undefined ? undefined : Event.fromDescriptor(update.resample),
    source: update.source,
  };
}
