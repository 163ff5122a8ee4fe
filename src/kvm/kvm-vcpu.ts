/**
 * `KvmVcpu`: one KVM vCPU, used on the thread that runs it (kvm-from-node.md §4).
 *
 * KVM_RUN blocks (with the in-kernel irqchip a guest HLT sleeps inside it), so each vCPU runs in
 * its own worker thread, which creates the vCPU itself (KVM_CREATE_VCPU) and maps its own kvm_run.
 * Any thread stops it with a kick: KICK_SIGNAL sent to this thread (`kickVcpuThread`). The
 * signal makes a KVM_RUN in progress return EINTR, and its native handler sets this vCPU's
 * kvm_run.immediate_exit (`addon.setKickTarget`), so a kick that lands while this thread runs
 * JavaScript makes the next KVM_RUN return EINTR at once. No kick is lost, and the kicker needs
 * nothing but the thread id.
 *
 * The vCPU's control block (a SharedArrayBuffer; Int32Array words):
 *   0  stop requested: set by the supervisor before its last kick; `run()` then keeps
 *      immediate_exit set, so every later KVM_RUN returns at once
 *   1  kernel thread id of the vCPU thread (0 until published)
 *   2  the vCPU fd (-1 until published)
 *   3  exited: the vCPU was closed; kicks are no longer sent
 */

import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import type { MPState } from '../chip/types.ts';
import type { Vcpu } from '../chip/vcpu.ts';
import type { SipiStart } from '../x86/lapic/local-apic.ts';
import { addon } from './addon.ts';
import { KVM_EXIT_IO_OUT, KVM_MP_STATES, KVM_ONE_MSR_BYTES, KvmExit, KvmIoctl, KvmOneMsrLayout, KvmRunLayout } from './kvm-abi.ts';
import { KvmRegs, KvmSregs, type KvmSegment } from './kvm-registers.ts';
import type { KvmVm } from './kvm-vm.ts';
import { EAGAIN, EINTR, KICK_SIGNAL, check, systemError } from './linux.ts';

export const VcpuControlWord = {
  StopRequested: 0,
  ThreadId: 1,
  VcpuFd: 2,
  Exited: 3,
} as const;
const CONTROL_WORDS = 4;

export function allocateVcpuControl(): Int32Array {
  const control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT));
  control[VcpuControlWord.VcpuFd] = -1;
  return control;
}

/** Real-mode segment as INIT leaves it (SDM vol. 3 §10.1.1, Table 10-1): base 0, limit 0xffff, present. */
function realModeSegment(selector: number, base: bigint, type: number, s: number): KvmSegment {
  return { base, limit: 0xffff, selector, type, present: 1, dpl: 0, db: 0, s, l: 0, g: 0, avl: 0, unusable: 0 };
}
/** Segment types: accessed read/write data, accessed execute/read code, LDT, busy 32-bit TSS. */
const DATA_SEGMENT_TYPE = 0x3;
const CODE_SEGMENT_TYPE = 0xb;
const LDT_TYPE = 0x2;
const BUSY_TSS_TYPE = 0xb;
/** After INIT: CR0 keeps CD (bit 30) and NW (bit 29), sets ET (bit 4), clears the rest. */
const CR0_KEPT_BY_INIT = 0x60000000n;
const CR0_ET = 0x10n;
/** EFLAGS bit 1 is reserved and always 1. */
const RFLAGS_RESERVED = 0x2n;
/** EDX after RESET/INIT holds the processor signature; 0x600 (family 6) is what KVM uses without CPUID. */
const INIT_EDX = 0x600n;
const RESET_VECTOR_CS_BASE = 0xffff0000n;
const RESET_VECTOR_IP = 0xfff0n;

export class KvmVcpu implements Vcpu {
  readonly fd: number;
  private readonly run8: Uint8Array;
  private readonly run32: Uint32Array;
  private readonly runView: DataView;
  private readonly mpState = new Uint32Array(1);
  private readonly vector = new Uint32Array(1);
  /** struct kvm_msrs holding one entry, reused by `getMsr`/`setMsr`. */
  private readonly oneMsr = new DataView(new ArrayBuffer(KVM_ONE_MSR_BYTES));
  private closed = false;

  private constructor(
    readonly id: number,
    fd: number,
    runBuffer: ArrayBuffer,
    private readonly control: Int32Array,
  ) {
    this.fd = fd;
    this.run8 = new Uint8Array(runBuffer);
    this.run32 = new Uint32Array(runBuffer, 0, 4);
    this.runView = new DataView(runBuffer);
  }

  /**
   * KVM_CREATE_VCPU on this thread, its kvm_run mapped here. `control` is the block a supervisor
   * on another thread kicks and stops it through (vcpu-thread.ts); without one, nothing else can.
   * Under the in-kernel irqchip, create the chip first (KVM refuses it once a vCPU exists) and
   * expect vCPUs other than 0 to start 'uninitialized' (waiting for INIT/SIPI). Create every vCPU
   * before any runs guest code: KVM delivers INIT and SIPI only to vCPUs that exist (vcpu-setup.ts).
   */
  static create(vm: KvmVm, id: number, control: Int32Array = allocateVcpuControl()): KvmVcpu {
    checkRange(id, 0, 0xfffe, 'vCPU id');
    check(addon.installKickHandler(KICK_SIGNAL), 'sigaction for the kick signal');
    const fd = vm.ioctl(KvmIoctl.CREATE_VCPU, id, `KVM_CREATE_VCPU ${id}`);
    const run = addon.mmap(fd, vm.vcpuMmapSize, 0);
    if (typeof run === 'number') {
      addon.close(fd);
      throw systemError(-run, 'mmap of kvm_run');
    }
    const kickTarget = addon.setKickTarget(new Uint8Array(run, KvmRunLayout.IMMEDIATE_EXIT, 1));
    if (kickTarget < 0) {
      addon.close(fd);
      throw systemError(-kickTarget, 'registering the vCPU thread for kicks');
    }
    Atomics.store(control, VcpuControlWord.VcpuFd, fd);
    Atomics.store(control, VcpuControlWord.ThreadId, addon.threadId());
    Atomics.notify(control, VcpuControlWord.ThreadId);
    return new KvmVcpu(id, fd, run, control);
  }

  /** Whether the supervisor asked this vCPU to stop: the run loop should close it and end. */
  get stopRequested(): boolean {
    return Atomics.load(this.control, VcpuControlWord.StopRequested) !== 0;
  }

  /**
   * KVM_RUN: returns the exit reason (`KvmExit`), or `KvmExit.INTR` when a kick interrupted it
   * (after -EINTR kvm_run.exit_reason is stale, so it is not read) or KVM asked to be run again.
   */
  run(): number {
    const result = addon.ioctl(this.fd, KvmIoctl.RUN, 0);
    if (result >= 0) return this.run32[KvmRunLayout.EXIT_REASON >> 2] ?? KvmExit.UNKNOWN;
    // EAGAIN: a vCPU waiting for INIT/SIPI in KVM's local APIC woke without becoming runnable
    // (x86 kvm_arch_vcpu_ioctl_run): nothing to serve, run again.
    if (result === -EAGAIN) return KvmExit.INTR;
    if (result !== -EINTR) throw systemError(-result, 'KVM_RUN');
    // Clear first, then look at the stop flag: a stop requested after the look sets it again
    // (the kicker writes the flag before immediate_exit, and both writes are sequentially consistent).
    Atomics.store(this.run8, KvmRunLayout.IMMEDIATE_EXIT, 0);
    if (this.stopRequested) Atomics.store(this.run8, KvmRunLayout.IMMEDIATE_EXIT, 1);
    return KvmExit.INTR;
  }

  // --- the exit being handled ---------------------------------------------------------------

  /** KVM_EXIT_IO: the port. */
  ioPort(): number {
    return this.runView.getUint16(KvmRunLayout.IO_PORT, true);
  }

  /** KVM_EXIT_IO: true for OUT, false for IN. */
  ioIsOut(): boolean {
    return this.run8[KvmRunLayout.IO_DIRECTION] === KVM_EXIT_IO_OUT;
  }

  /** KVM_EXIT_IO: the access size in bytes (1, 2 or 4). */
  ioSize(): number {
    return this.run8[KvmRunLayout.IO_SIZE] ?? 0;
  }

  /** KVM_EXIT_IO, OUT: the first value written (string I/O, `count` > 1, is not decoded here). */
  ioValue(): number {
    return readLittleEndian(this.runView, this.ioDataOffset(), this.ioSize());
  }

  /** KVM_EXIT_IO, IN: the value the guest reads. */
  setIoValue(value: number): void {
    writeLittleEndian(this.runView, this.ioDataOffset(), this.ioSize(), value);
  }

  /** KVM_EXIT_MMIO: the guest-physical address. */
  mmioAddress(): number {
    return Number(this.runView.getBigUint64(KvmRunLayout.MMIO_PHYS_ADDR, true));
  }

  /** KVM_EXIT_MMIO: true for a write. */
  mmioIsWrite(): boolean {
    return this.run8[KvmRunLayout.MMIO_IS_WRITE] !== 0;
  }

  /** KVM_EXIT_MMIO: the access size in bytes (1, 2, 4 or 8). */
  mmioSize(): number {
    return this.runView.getUint32(KvmRunLayout.MMIO_LEN, true);
  }

  /** KVM_EXIT_MMIO, write: the value written (at most its low 32 bits: our devices are 32-bit). */
  mmioValue(): number {
    return readLittleEndian(this.runView, KvmRunLayout.MMIO_DATA, Math.min(this.mmioSize(), 4));
  }

  /** KVM_EXIT_MMIO, read: the value the guest reads (zero-extended past 32 bits). */
  setMmioValue(value: number): void {
    this.run8.fill(0, KvmRunLayout.MMIO_DATA, KvmRunLayout.MMIO_DATA + 8);
    writeLittleEndian(this.runView, KvmRunLayout.MMIO_DATA, Math.min(this.mmioSize(), 4), value);
  }

  /** Completes an MMIO read of any size (1-8 bytes) with all ones: the floating bus of an undecoded access. */
  setMmioAllOnes(): void {
    this.run8.fill(0, KvmRunLayout.MMIO_DATA, KvmRunLayout.MMIO_DATA + 8);
    this.run8.fill(0xff, KvmRunLayout.MMIO_DATA, KvmRunLayout.MMIO_DATA + this.mmioSize());
  }

  /** KVM_EXIT_IOAPIC_EOI: the vector the guest's local APIC EOI'd. */
  eoiVector(): number {
    return this.run8[KvmRunLayout.EOI_VECTOR] ?? 0;
  }

  /** KVM_EXIT_X86_RDMSR / WRMSR: the MSR's index. */
  msrIndex(): number {
    return this.runView.getUint32(KvmRunLayout.MSR_INDEX, true);
  }

  /** KVM_EXIT_X86_WRMSR: the value written. */
  msrValue(): bigint {
    return this.runView.getBigUint64(KvmRunLayout.MSR_DATA, true);
  }

  /** Completes an RDMSR/WRMSR exit: the value read (RDMSR), or a #GP for the guest. */
  completeMsr(result: { readonly ok: true; readonly value?: bigint } | { readonly ok: false }): void {
    this.run8[KvmRunLayout.MSR_ERROR] = result.ok ? 0 : 1;
    if (result.ok && result.value !== undefined) this.runView.setBigUint64(KvmRunLayout.MSR_DATA, result.value, true);
  }

  // --- registers and state ------------------------------------------------------------------

  getRegs(): KvmRegs {
    const regs = new KvmRegs();
    this.ioctl(KvmIoctl.GET_REGS, regs.words, 'KVM_GET_REGS');
    return regs;
  }

  setRegs(regs: KvmRegs): void {
    this.ioctl(KvmIoctl.SET_REGS, regs.words, 'KVM_SET_REGS');
  }

  getSregs(): KvmSregs {
    const sregs = new KvmSregs();
    this.ioctl(KvmIoctl.GET_SREGS, sregs.bytes, 'KVM_GET_SREGS');
    return sregs;
  }

  setSregs(sregs: KvmSregs): void {
    this.ioctl(KvmIoctl.SET_SREGS, sregs.bytes, 'KVM_SET_SREGS');
  }

  /** KVM_GET_MP_STATE. A vCPU ioctl waits for a KVM_RUN in progress: call it on this vCPU's thread. */
  getMpState(): MPState {
    this.ioctl(KvmIoctl.GET_MP_STATE, this.mpState, 'KVM_GET_MP_STATE');
    const state = KVM_MP_STATES[this.mpState[0] ?? -1];
    if (state === undefined) throw new IrqChipError(ErrorCode.EINVAL, `KVM reported mp_state ${this.mpState[0]}, which has no MPState`);
    return state;
  }

  setMpState(state: MPState): void {
    const value = KVM_MP_STATES.indexOf(state);
    if (value < 0) throw new IrqChipError(ErrorCode.EINVAL, `unknown MP state '${state}'`);
    this.mpState[0] = value;
    this.ioctl(KvmIoctl.SET_MP_STATE, this.mpState, 'KVM_SET_MP_STATE');
  }

  /** KVM_GET_MSRS of one MSR, as the host sees it (host-initiated: no filter, no guest #GP). */
  getMsr(index: number): bigint {
    this.transferMsr(KvmIoctl.GET_MSRS, index, 0n, 'KVM_GET_MSRS');
    return this.oneMsr.getBigUint64(KvmOneMsrLayout.DATA, true);
  }

  /** KVM_SET_MSRS of one MSR (host-initiated); an MSR KVM refuses throws EINVAL. */
  setMsr(index: number, value: bigint): void {
    this.transferMsr(KvmIoctl.SET_MSRS, index, value, 'KVM_SET_MSRS');
  }

  /** KVM_GET_TSC_KHZ: the frequency of this vCPU's TSC, in kHz. */
  tscKhz(): number {
    return this.ioctl(KvmIoctl.GET_TSC_KHZ, 0, 'KVM_GET_TSC_KHZ');
  }

  // --- Vcpu: what a userspace irqchip injects with ------------------------------------------

  readyForInterrupt(): boolean {
    return this.run8[KvmRunLayout.READY_FOR_INTERRUPT_INJECTION] !== 0 && this.run8[KvmRunLayout.IF_FLAG] !== 0;
  }

  /** KVM_INTERRUPT (userspace irqchip only: with KVM's irqchip the kernel refuses it, ENXIO). */
  interrupt(vector: number): void {
    checkRange(vector, 0, 0xff, 'interrupt vector');
    this.vector[0] = vector;
    this.ioctl(KvmIoctl.INTERRUPT, this.vector, 'KVM_INTERRUPT');
    // KVM queues one interrupt (kvm_queue_interrupt) and a second KVM_INTERRUPT before the next
    // KVM_RUN replaces it, yet ready_for_interrupt_injection is refreshed only when KVM_RUN
    // returns: clear it ourselves, so `readyForInterrupt()` says no until KVM has taken this one.
    this.run8[KvmRunLayout.READY_FOR_INTERRUPT_INJECTION] = 0;
  }

  injectNmi(): void {
    this.ioctl(KvmIoctl.NMI, 0, 'KVM_NMI');
  }

  setInterruptWindowRequested(requested: boolean): void {
    this.run8[KvmRunLayout.REQUEST_INTERRUPT_WINDOW] = requested ? 1 : 0;
  }

  /**
   * INIT (SDM vol. 3 §10.1.1, Table 10-1): the registers KVM_SET_REGS and KVM_SET_SREGS carry take
   * their INIT values: real mode at F000:FFF0 with CS base 0xffff0000, flat 64 KiB segments, CR0
   * keeping only CD and NW (plus ET), CR2–CR4 and EFER cleared, the APIC base kept. (EFER's LMA
   * must go with paging; KVM clears EFER on INIT too.)
   */
  applyInit(): void {
    const regs = new KvmRegs();
    regs.set('rflags', RFLAGS_RESERVED);
    regs.set('rip', RESET_VECTOR_IP);
    regs.set('rdx', INIT_EDX);
    const sregs = this.getSregs();
    sregs.setSegment('cs', realModeSegment(0xf000, RESET_VECTOR_CS_BASE, CODE_SEGMENT_TYPE, 1));
    for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs.setSegment(name, realModeSegment(0, 0n, DATA_SEGMENT_TYPE, 1));
    sregs.setSegment('ldt', realModeSegment(0, 0n, LDT_TYPE, 0));
    sregs.setSegment('tr', realModeSegment(0, 0n, BUSY_TSS_TYPE, 0));
    sregs.setTable('gdt', 0n, 0xffff);
    sregs.setTable('idt', 0n, 0xffff);
    sregs.set('cr0', (sregs.get('cr0') & CR0_KEPT_BY_INIT) | CR0_ET);
    for (const name of ['cr2', 'cr3', 'cr4', 'cr8', 'efer'] as const) sregs.set(name, 0n);
    this.setSregs(sregs);
    this.setRegs(regs);
  }

  /** SIPI: start in real mode at the start-up vector's page (CS = vector << 8, base vector << 12, IP 0). */
  applySipi(start: SipiStart): void {
    const sregs = this.getSregs();
    sregs.setSegment('cs', { ...sregs.segment('cs'), selector: start.csSelector, base: BigInt(start.csBase) });
    this.setSregs(sregs);
    const regs = this.getRegs();
    regs.set('rip', start.ip);
    this.setRegs(regs);
  }

  /** Closes the vCPU's fd (its kvm_run mapping goes with the garbage collector) and tells the supervisor. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    addon.setKickTarget(null);
    Atomics.store(this.control, VcpuControlWord.Exited, 1);
    Atomics.notify(this.control, VcpuControlWord.Exited);
    addon.close(this.fd);
  }

  private ioDataOffset(): number {
    return Number(this.runView.getBigUint64(KvmRunLayout.IO_DATA_OFFSET, true));
  }

  /** KVM_GET_MSRS / KVM_SET_MSRS of one MSR; KVM answers how many it processed, so 0 means it refused the MSR. */
  private transferMsr(request: number, index: number, value: bigint, operation: string): void {
    checkRange(index, 0, 0xffffffff, 'MSR index');
    this.oneMsr.setUint32(KvmOneMsrLayout.NMSRS, 1, true);
    this.oneMsr.setUint32(KvmOneMsrLayout.INDEX, index, true);
    this.oneMsr.setBigUint64(KvmOneMsrLayout.DATA, value, true);
    if (this.ioctl(request, this.oneMsr, operation) !== 1) throw new IrqChipError(ErrorCode.EINVAL, `${operation}: KVM refused MSR 0x${index.toString(16)}`);
  }

  /** A vCPU ioctl (on this vCPU's thread): its non-negative result; throws the typed error for a refusal, naming `operation`. */
  ioctl(request: number, arg: number | ArrayBufferView, operation: string): number {
    if (this.closed) throw new IrqChipError(ErrorCode.EBADF, `vCPU ${this.id} is closed`);
    return check(addon.ioctl(this.fd, request, arg), operation);
  }
}

/** A 1-, 2- or 4-byte little-endian value (any other size reads 4 bytes). */
function readLittleEndian(view: DataView, at: number, size: number): number {
  switch (size) {
    case 1:
      return view.getUint8(at);
    case 2:
      return view.getUint16(at, true);
    default:
      return view.getUint32(at, true);
  }
}

function writeLittleEndian(view: DataView, at: number, size: number, value: number): void {
  switch (size) {
    case 1:
      view.setUint8(at, value);
      return;
    case 2:
      view.setUint16(at, value, true);
      return;
    default:
      view.setUint32(at, value >>> 0, true);
  }
}
