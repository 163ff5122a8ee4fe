/**
 * vCPU worker of the pit guest (pit-guest.ts): this thread's view of the chip and its buses, the
 * guest's report ports, isa-debug-exit, and for the split and userspace chips our `Pit8254` on
 * this thread's I/O bus. Its events are served between the loop's turns: a POSIX timer of this
 * thread, armed for `nextEventNs()`, ends KVM_RUN at each one (the guest waits with interrupts on
 * in a loop, not in HLT: a vCPU halted on our local APIC sleeps on its doorbell, which that signal
 * does not ring; in the VMM the PIT lives on the device thread, whose `serviceIrq` rings it).
 */
import { HostClock } from '../../base/clock.ts';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT, type BusDevice } from '../../chip/bus.ts';
import { IrqAllocator } from '../../chip/irq-allocator.ts';
import { addon } from '../../kvm/addon.ts';
import { GuestTscClock } from '../../kvm/kvm-guest-tsc.ts';
import { GUEST_IMAGE_ADDRESS, enterLongMode } from '../../kvm/long-mode.ts';
import { KICK_SIGNAL, check } from '../../kvm/linux.ts';
import { modeChipView } from '../../kvm/chip-mode.ts';
import { recordLog } from '../../kvm/probe-machine.ts';
import { setUpVcpu } from '../../kvm/vcpu-setup.ts';
import { KvmVcpuLoop, isFatalExit } from '../../kvm/vcpu-loop.ts';
import { attachVcpuThread } from '../../kvm/vcpu-thread.ts';
import { Gsi, Port } from '../machine-layout.ts';
import { IsaDebugExit } from './isa-debug-exit.ts';
import { Pit8254 } from './pit-8254.ts';
import { PIT_GUEST_REPORT_PORTS, PitGuestLog, type PitGuestVcpuData } from './pit-guest.ts';

/** A timer delay of 0 disarms; an overdue event fires at once. */
const MIN_TIMER_DELAY_NS = 1;

const attached = attachVcpuThread();
const { vcpu } = attached;
const data = attached.data as PitGuestVcpuData;
const log = new Int32Array(data.log);
const apicClock = data.guestTsc === undefined ? undefined : GuestTscClock.fromDescriptor(data.guestTsc);
const view = modeChipView(data.chip, apicClock);

/** PORT_REPORT counts the guest's interrupts; PORT_READY and PORT_FATAL need nothing here. */
class ReportPorts implements BusDevice {
  readonly busName = 'pit-guest-report';
  read(): number {
    return 0;
  }
  write(offset: number): void {
    if (offset === 0) Atomics.add(log, PitGuestLog.Reports, 1);
  }
}

/** Our PIT's events on this thread: a POSIX timer that kicks it out of KVM_RUN when one is due. */
class ThreadPitTimer {
  private readonly timerId = check(addon.timerCreate(addon.threadId(), KICK_SIGNAL), 'timer_create (PIT)');

  constructor(
    readonly pit: Pit8254,
    private readonly clock: HostClock,
  ) {}

  /** Delivers what is due and re-arms for the next event (every turn: a timer that fired is re-armed too). */
  service(): void {
    this.pit.advance();
    const due = this.pit.nextEventNs();
    const delayNs = due === undefined ? 0 : Math.max(MIN_TIMER_DELAY_NS, Math.ceil(due - this.clock.nowNs()));
    check(addon.timerArm(this.timerId, delayNs), 'timer_settime (PIT)');
  }

  dispose(): void {
    addon.timerDelete(this.timerId);
  }
}

const io = new Bus('io', IO_ADDRESS_LIMIT);
const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
view.chip.addVcpu(vcpu.id, vcpu);
view.chip.finalizeDevices(new IrqAllocator(), io, mmio);
io.insert(new ReportPorts(), PIT_GUEST_REPORT_PORTS.base, PIT_GUEST_REPORT_PORTS.length);
let exitValue: number | undefined;
io.insert(
  new IsaDebugExit({
    onExit: (value) => {
      exitValue = value;
      loop.endRequested = true;
    },
  }),
  Port.DebugExit,
  Port.DebugExitBytes,
);
const clock = new HostClock();
let pitTimer: ThreadPitTimer | undefined;
if (data.chip.mode !== 'kernel') {
  const pit = new Pit8254({ clock, irqLine: { setLevel: (level) => view.chip.serviceIrq(Gsi.Pit, level) } });
  io.insert(pit, Port.Pit, pit.portBytes);
  io.insert(pit.systemControlPort, Port.SystemControlB, pit.systemControlPort.portBytes);
  pitTimer = new ThreadPitTimer(pit, clock);
}
const loop = new KvmVcpuLoop({ vcpu, chip: view.chip, io, mmio, ...(view.localApic === undefined ? {} : { localApic: view.localApic(vcpu.id) }), ...(apicClock === undefined ? {} : { clock: apicClock }) });

try {
  setUpVcpu(vcpu, { vcpuCount: 1, ...(apicClock === undefined ? {} : { userspaceLocalApic: { clock: apicClock } }) });
  enterLongMode(vcpu, GUEST_IMAGE_ADDRESS);
  for (;;) {
    if (vcpu.stopRequested || loop.endRequested) break;
    pitTimer?.service();
    const exit = loop.step();
    if (exit !== undefined && isFatalExit(exit)) {
      recordLog(log, PitGuestLog.FatalExit, exit);
      break;
    }
  }
} finally {
  loop.dispose();
  pitTimer?.dispose();
  vcpu.close();
  if (pitTimer !== undefined) {
    const counts = pitTimer.pit.counters();
    Atomics.store(log, PitGuestLog.PitTicks, counts.ticks);
    Atomics.store(log, PitGuestLog.PitCoalescedTicks, counts.coalescedTicks);
  }
  if (exitValue !== undefined) recordLog(log, PitGuestLog.Done, exitValue + 1);
}
