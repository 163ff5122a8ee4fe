/**
 * The device mailbox: how a vCPU thread hands a port or MMIO access to the VMM's devices, which
 * live on one device thread (docs/architecture.md, decision 33).
 *
 * The chip's controllers are served on the vCPU thread that exits (their state is shared memory).
 * The VMM's devices (UART, PIT, fw_cfg, PCI...) are plain single-threaded `BusDevice`s on the
 * device thread, so none needs a lock and each may raise an interrupt before the access completes.
 * Each vCPU has a slot: it writes the access, rings the doorbell and sleeps on its slot until the
 * device thread has answered. Because the vCPU does not re-enter the guest before the answer, an
 * interrupt the device raised while serving the access is pending in the chip before the guest's
 * next instruction, as on hardware.
 *
 * Layout (Int32 words over one SharedArrayBuffer):
 *   0             doorbell: incremented by every request, the device thread waits on it
 *   1             requests served (statistics)
 *   SLOTS + 8v    vCPU v's slot: state, bus, write flag, size, address low, address high, value
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { waitAsyncKeepingAlive } from '../base/wait-async.ts';
import type { Bus, BusDevice } from '../chip/bus.ts';

const DOORBELL = 0;
const SERVED = 1;
const SLOTS = 4;
const SLOT_WORDS = 8;
const Slot = { State: 0, Bus: 1, Write: 2, Size: 3, AddressLow: 4, AddressHigh: 5, Value: 6 } as const;
const SlotState = { Idle: 0, Requested: 1, Answered: 2 } as const;

/** Which of the device thread's buses an access is for. */
export const MailboxBus = { Io: 0, Mmio: 1 } as const;
export type MailboxBus = (typeof MailboxBus)[keyof typeof MailboxBus];

const TWO_POW_32 = 2 ** 32;

function slotBase(vcpuIndex: number): number {
  return SLOTS + vcpuIndex * SLOT_WORDS;
}

/** Allocates a mailbox for `vcpuCount` vCPUs. */
export function createDeviceMailbox(vcpuCount: number): SharedArrayBuffer {
  checkRange(vcpuCount, 1, 4096, 'mailbox vCPU count');
  return new SharedArrayBuffer((SLOTS + vcpuCount * SLOT_WORDS) * Int32Array.BYTES_PER_ELEMENT);
}

/**
 * The vCPU side: a `BusDevice` standing, on the vCPU thread's bus, for the device thread's range
 * at `base`. Blocks the vCPU thread until the device thread answers.
 */
export class ForwardedRange implements BusDevice {
  readonly busName: string;
  private readonly words: Int32Array;
  private readonly slot: number;

  constructor(
    mailbox: SharedArrayBuffer,
    vcpuIndex: number,
    private readonly bus: MailboxBus,
    private readonly base: number,
    name: string,
  ) {
    this.words = new Int32Array(mailbox);
    this.slot = slotBase(vcpuIndex);
    if (this.slot + SLOT_WORDS > this.words.length) throw new IrqChipError(ErrorCode.EINVAL, `the device mailbox has no slot for vCPU ${vcpuIndex}`);
    this.busName = `${name} (forwarded)`;
  }

  read(offset: number, size: number): number {
    return this.forward(offset, size, 0, false);
  }

  write(offset: number, size: number, value: number): void {
    this.forward(offset, size, value, true);
  }

  private forward(offset: number, size: number, value: number, write: boolean): number {
    const { words, slot } = this;
    const address = this.base + offset;
    words[slot + Slot.Bus] = this.bus;
    words[slot + Slot.Write] = write ? 1 : 0;
    words[slot + Slot.Size] = size;
    words[slot + Slot.AddressLow] = address % TWO_POW_32 | 0;
    words[slot + Slot.AddressHigh] = Math.floor(address / TWO_POW_32);
    words[slot + Slot.Value] = value | 0;
    // The state store publishes the fields above (sequentially consistent).
    Atomics.store(words, slot + Slot.State, SlotState.Requested);
    Atomics.add(words, DOORBELL, 1);
    Atomics.notify(words, DOORBELL);
    while (Atomics.load(words, slot + Slot.State) === SlotState.Requested) Atomics.wait(words, slot + Slot.State, SlotState.Requested);
    const answer = words[slot + Slot.Value] ?? 0;
    Atomics.store(words, slot + Slot.State, SlotState.Idle);
    return answer >>> 0;
  }
}

/**
 * The device thread's side: answers every vCPU's requests from its own buses until `stop()`.
 * A device that throws is a VMM bug, not a guest's doing: the access reads all ones, the loop goes
 * on, and the error is kept for `failure()` so the machine can end with it.
 */
export class DeviceMailboxServer {
  private readonly words: Int32Array;
  private readonly vcpuCount: number;
  private running = false;
  private loop: Promise<void> | undefined;
  private error: Error | undefined;

  constructor(
    mailbox: SharedArrayBuffer,
    private readonly io: Bus,
    private readonly mmio: Bus,
  ) {
    this.words = new Int32Array(mailbox);
    this.vcpuCount = (this.words.length - SLOTS) / SLOT_WORDS;
  }

  /** Accesses answered so far. */
  get served(): number {
    return Atomics.load(this.words, SERVED);
  }

  /** The first error a device threw while serving, if any. */
  failure(): Error | undefined {
    return this.error;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.serveWhileRunning();
  }

  /** Stops after answering what is already posted (a vCPU waiting for an answer always gets one). */
  async stop(): Promise<void> {
    this.running = false;
    Atomics.add(this.words, DOORBELL, 1);
    Atomics.notify(this.words, DOORBELL);
    await this.loop;
    this.serveAll();
  }

  private async serveWhileRunning(): Promise<void> {
    while (this.running) {
      const doorbell = Atomics.load(this.words, DOORBELL);
      this.serveAll();
      // stop() rings the doorbell after clearing `running`, so this wait cannot outlive it.
      await waitAsyncKeepingAlive(this.words, DOORBELL, doorbell, Infinity);
    }
  }

  /** Answers every posted request. */
  serveAll(): void {
    for (let vcpuIndex = 0; vcpuIndex < this.vcpuCount; vcpuIndex++) {
      const slot = slotBase(vcpuIndex);
      if (Atomics.load(this.words, slot + Slot.State) !== SlotState.Requested) continue;
      this.words[slot + Slot.Value] = this.serve(slot, vcpuIndex) | 0;
      Atomics.add(this.words, SERVED, 1);
      Atomics.store(this.words, slot + Slot.State, SlotState.Answered);
      Atomics.notify(this.words, slot + Slot.State);
    }
  }

  private serve(slot: number, vcpuIndex: number): number {
    const { words } = this;
    const bus = words[slot + Slot.Bus] === MailboxBus.Io ? this.io : this.mmio;
    const size = words[slot + Slot.Size] ?? 0;
    const address = ((words[slot + Slot.AddressHigh] ?? 0) >>> 0) * TWO_POW_32 + ((words[slot + Slot.AddressLow] ?? 0) >>> 0);
    const accessor = { vcpuIndex };
    try {
      if (words[slot + Slot.Write] === 0) return bus.read(address, size, accessor);
      bus.write(address, size, (words[slot + Slot.Value] ?? 0) >>> 0, accessor);
      return 0;
    } catch (error) {
      this.error ??= error instanceof Error ? error : new Error(String(error));
      return -1;
    }
  }
}
