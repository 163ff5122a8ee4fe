/**
 * Helpers shared by the local APIC's tests: register offsets, a recording front for a real APIC
 * bus, a scripted PIC, and short ways to build messages and drive the guest interface.
 */
import assert from 'node:assert/strict';
import { VirtualClock } from '../../base/clock.ts';
import { RecordingSink } from '../controller-test-support.ts';
import {
  interruptMessage,
  TriggerMode,
  type DeliveryMode,
  type EoiBroadcastListener,
  type ExtIntController,
  type InterruptMessage,
} from '../interrupt-message.ts';
import { ApicBus } from './apic-bus.ts';
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

/**
 * Records every message like `RecordingSink`, then routes it over a real `ApicBus` to the APICs
 * added with `addMembers`: for tests that need an IPI to reach an APIC (the matching rules are
 * apic-bus.ts's, tested in apic-bus.test.ts).
 */
export class RecordingBus extends RecordingSink {
  private readonly bus = ApicBus.create();

  addMembers(...apics: readonly LocalApic[]): void {
    for (const apic of apics) this.bus.addMember(apic);
  }

  override deliver(message: InterruptMessage): number {
    super.deliver(message);
    return this.bus.deliver(message);
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

/** A fixed, edge, physical message to APIC 0 (see `interruptMessage` for the other defaults). */
export function fixed(vector: number, overrides: Partial<InterruptMessage> = {}): InterruptMessage {
  return interruptMessage({ vector, ...overrides });
}

export function levelFixed(vector: number): InterruptMessage {
  return fixed(vector, { triggerMode: TriggerMode.Level });
}

export function message(deliveryMode: DeliveryMode, vector = 0, overrides: Partial<InterruptMessage> = {}): InterruptMessage {
  return interruptMessage({ deliveryMode, vector, ...overrides });
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

