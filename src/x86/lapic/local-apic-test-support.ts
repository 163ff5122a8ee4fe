/**
 * Helpers shared by the local APIC's tests: register offsets, a recording APIC bus stand-in, a
 * scripted PIC, and short ways to build messages and drive the guest interface.
 */
import assert from 'node:assert/strict';
import { VirtualClock } from '../../base/clock.ts';
import {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  TriggerMode,
  X2APIC_BROADCAST,
  XAPIC_BROADCAST,
  type EoiBroadcastListener,
  type ExtIntController,
  type InterruptMessage,
  type InterruptMessageSink,
} from '../interrupt-message.ts';
import { LocalApic, type LocalApicOptions } from './local-apic.ts';

/** xAPIC MMIO offsets (SDM Table 11-1). */
export const Mmio = {
  Id: 0x020,
  Version: 0x030,
  TaskPriority: 0x080,
  ArbitrationPriority: 0x090,
  ProcessorPriority: 0x0a0,
  Eoi: 0x0b0,
  RemoteRead: 0x0c0,
  LogicalDestination: 0x0d0,
  DestinationFormat: 0x0e0,
  SpuriousVector: 0x0f0,
  InService: 0x100,
  TriggerMode: 0x180,
  InterruptRequest: 0x200,
  ErrorStatus: 0x280,
  LvtCmci: 0x2f0,
  IcrLow: 0x300,
  IcrHigh: 0x310,
  LvtTimer: 0x320,
  LvtThermal: 0x330,
  LvtPerformanceCounter: 0x340,
  LvtLint0: 0x350,
  LvtLint1: 0x360,
  LvtError: 0x370,
  TimerInitialCount: 0x380,
  TimerCurrentCount: 0x390,
  TimerDivide: 0x3e0,
  SelfIpi: 0x3f0,
} as const;

export const LVT_OFFSETS = [Mmio.LvtTimer, Mmio.LvtThermal, Mmio.LvtPerformanceCounter, Mmio.LvtLint0, Mmio.LvtLint1, Mmio.LvtError] as const;

export const MSR_APIC_BASE = 0x1b;
export const MSR_TSC_DEADLINE = 0x6e0;
/** The x2APIC MSR of an xAPIC offset. */
export function msrOf(offset: number): number {
  return 0x800 + (offset >> 4);
}

/** SVR with the APIC software-enabled and spurious vector 0xFF. */
export const SVR_ENABLED = 0x1ff;
export const APIC_BASE_XAPIC = 0xfee00800n;
export const APIC_BASE_X2APIC = 0xfee00c00n;
export const APIC_BASE_DISABLED = 0xfee00000n;

/** Records every message; answers `result` (1 = one APIC took it). */
export class RecordingSink implements InterruptMessageSink {
  readonly messages: InterruptMessage[] = [];

  constructor(private readonly result = 1) {}

  deliver(message: InterruptMessage): number {
    this.messages.push({ ...message });
    return this.result;
  }
}

/**
 * A minimal bus for tests that need an IPI to reach another APIC: shorthands and physical
 * destinations only (the real matching rules are apic-bus.ts's and are tested there).
 */
export class PhysicalTestBus implements InterruptMessageSink {
  readonly members: LocalApic[] = [];

  deliver(message: InterruptMessage): number {
    let accepted = -1;
    for (const member of this.members) {
      if (!this.addresses(member, message)) continue;
      accepted = Math.max(accepted, 0) + Math.max(member.accept(message), 0);
    }
    return accepted;
  }

  private addresses(member: LocalApic, message: InterruptMessage): boolean {
    switch (message.shorthand) {
      case DestinationShorthand.Self:
        return member.busIndex === message.sourceApic;
      case DestinationShorthand.AllIncludingSelf:
        return true;
      case DestinationShorthand.AllExcludingSelf:
        return member.busIndex !== message.sourceApic;
      default: {
        const broadcast = member.isX2apicMode() ? X2APIC_BROADCAST : XAPIC_BROADCAST;
        return message.destination === broadcast || message.destination === member.apicId();
      }
    }
  }
}

/** Records EOI broadcasts. */
export class RecordingEoiListener implements EoiBroadcastListener {
  readonly vectors: number[] = [];

  endOfInterrupt(vector: number): void {
    this.vectors.push(vector);
  }
}

/** A PIC whose INT output and INTA vector the test sets. Acknowledging lowers the output (edge request taken). */
export class ScriptedPic implements ExtIntController {
  level = false;
  vector = 0x0c;
  acknowledges = 0;

  outputLevel(): boolean {
    return this.level;
  }

  acknowledge(): number {
    this.acknowledges++;
    this.level = false;
    return this.vector;
  }
}

export interface TestApic {
  readonly apic: LocalApic;
  readonly clock: VirtualClock;
  readonly sink: RecordingSink;
  readonly eoi: RecordingEoiListener;
  readonly pic: ScriptedPic;
}

/** A LAPIC wired to recorders. Defaults: vCPU 0, BSP, TSC 1 GHz (so TSC = ns). */
export function makeApic(options: Partial<LocalApicOptions> = {}): TestApic {
  const clock = new VirtualClock();
  const sink = new RecordingSink();
  const eoi = new RecordingEoiListener();
  const pic = new ScriptedPic();
  const apic = LocalApic.create({
    busIndex: 0,
    bsp: (options.busIndex ?? 0) === 0,
    clock,
    tscHz: 1_000_000_000,
    ipiSink: sink,
    eoiListener: eoi,
    extInt: pic,
    ...options,
  });
  return { apic, clock, sink, eoi, pic };
}

/** `makeApic` with the APIC software-enabled (SVR = 0x1FF). */
export function makeEnabledApic(options: Partial<LocalApicOptions> = {}): TestApic {
  const test = makeApic(options);
  test.apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  return test;
}

export function fixed(vector: number, overrides: Partial<InterruptMessage> = {}): InterruptMessage {
  return {
    destination: 0,
    destinationMode: DestinationMode.Physical,
    deliveryMode: DeliveryMode.Fixed,
    vector,
    triggerMode: TriggerMode.Edge,
    level: true,
    shorthand: DestinationShorthand.None,
    redirectionHint: false,
    ...overrides,
  };
}

export function levelFixed(vector: number): InterruptMessage {
  return fixed(vector, { triggerMode: TriggerMode.Level });
}

export function message(deliveryMode: DeliveryMode, vector = 0, overrides: Partial<InterruptMessage> = {}): InterruptMessage {
  return fixed(vector, { deliveryMode, ...overrides });
}

/** RDMSR that must succeed. */
export function rdmsr(apic: LocalApic, index: number): bigint {
  const result = apic.readMsr(index);
  assert.ok(result.ok, `rdmsr 0x${index.toString(16)} faulted`);
  return result.value;
}

/** Switches an xAPIC-mode APIC to x2APIC mode. */
export function enterX2apic(apic: LocalApic): void {
  assert.equal(apic.writeMsr(MSR_APIC_BASE, (apic.apicBase() & 0x100n) | APIC_BASE_X2APIC), true);
}

/** The set vectors of a 256-bit register, read through the observability accessors. */
export function vectorsOf(test: (vector: number) => boolean): number[] {
  const vectors: number[] = [];
  for (let vector = 0; vector < 256; vector++) if (test(vector)) vectors.push(vector);
  return vectors;
}

