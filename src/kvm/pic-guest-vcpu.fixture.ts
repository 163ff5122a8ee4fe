/**
 * vCPU worker for the KVM tests: runs the PIC test guest (pic-test-guest.ts) on its own vCPU and
 * records what the handler reports in the supervisor's guest log.
 */
import type { EventDescriptor } from '../event/event.ts';
import { KvmExit } from './kvm-abi.ts';
import { COUNTER_PORT, GuestLog, READY_PORT, enterPicTestGuest } from './pic-test-guest.ts';
import { attachVcpuThread } from './vcpu-thread.ts';
import { OsEvent } from './os-event.ts';

export interface PicGuestVcpuData {
  readonly log: SharedArrayBuffer;
  /** The level event's resample eventfd: each handler run checks it was not signalled before its EOI. */
  readonly resample?: EventDescriptor;
}

const attached = attachVcpuThread();
const { vcpu } = attached;
const data = attached.data as PicGuestVcpuData;
const log = new Int32Array(data.log);
const resample = data.resample === undefined ? undefined : OsEvent.fromDescriptor(data.resample);

function record(word: number, value: number): void {
  Atomics.store(log, word, value);
  Atomics.notify(log, word);
}

function onHandlerRun(value: number): void {
  const seen = (log[GuestLog.Interrupts] ?? 0) + 1;
  if (value !== seen) Atomics.add(log, GuestLog.OutOfOrder, 1);
  if (resample !== undefined && resample.readCount() !== 0n) Atomics.add(log, GuestLog.ResampledBeforeEoi, 1);
  Atomics.store(log, GuestLog.LastValue, value);
  record(GuestLog.Interrupts, seen);
}

try {
  enterPicTestGuest(vcpu);
  while (!vcpu.stopRequested) {
    const exit = vcpu.run();
    if (exit === KvmExit.INTR) {
      record(GuestLog.Kicked, (log[GuestLog.Kicked] ?? 0) + 1);
      continue;
    }
    if (exit === KvmExit.IO && vcpu.ioIsOut() && vcpu.ioPort() === COUNTER_PORT) {
      onHandlerRun(vcpu.ioValue());
    } else if (exit === KvmExit.IO && vcpu.ioIsOut() && vcpu.ioPort() === READY_PORT) {
      record(GuestLog.Ready, 1);
    } else {
      record(GuestLog.FatalExit, exit);
      break;
    }
  }
} finally {
  vcpu.close();
  resample?.close();
}
