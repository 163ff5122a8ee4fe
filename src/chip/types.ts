/**
 * The types around `IrqChip` (crosvm `devices::irqchip`; seed-apis.md §2.3).
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { MpState } from '../x86/lapic/local-apic.ts';

/** Index into a chip's table of registered events. Slots are never compacted, so indexes stay stable. */
export type IrqEventIndex = number;

/** Who registered an event: for observation and debugging only (crosvm `IrqEventSource`). */
export interface IrqEventSource {
  readonly deviceId: number;
  readonly queueId: number;
  readonly deviceName: string;
}

/** A vCPU's multiprocessor state (crosvm `MPState`, one-to-one with KVM's mp_state values). */
export type MPState = 'runnable' | 'uninitialized' | 'init-received' | 'halted' | 'sipi-received' | 'stopped';

/** What `waitUntilRunnable` returns. */
export type VcpuRunState = 'runnable' | 'interrupted';

/** Optional features a chip may have (crosvm `IrqChipCap`). */
export type IrqChipCap = 'tsc-deadline-timer' | 'x2apic' | 'mp-state-get-set';

const MP_STATE_OF_APIC: Readonly<Record<MpState, MPState>> = {
  [MpState.Runnable]: 'runnable',
  [MpState.Uninitialized]: 'uninitialized',
  [MpState.InitReceived]: 'init-received',
  [MpState.Halted]: 'halted',
  [MpState.SipiReceived]: 'sipi-received',
};

/** KVM's numbering of MP states (KVM_MP_STATE_*), which the local APIC model uses too. */
export function mpStateFromApic(state: MpState): MPState {
  return MP_STATE_OF_APIC[state];
}

/** The APIC model's value for an MP state; 'stopped' (an s390 state) has none on x86: EINVAL. */
export function mpStateToApic(state: MPState): MpState {
  switch (state) {
    case 'runnable':
      return MpState.Runnable;
    case 'uninitialized':
      return MpState.Uninitialized;
    case 'init-received':
      return MpState.InitReceived;
    case 'halted':
      return MpState.Halted;
    case 'sipi-received':
      return MpState.SipiReceived;
    default:
      throw new IrqChipError(ErrorCode.EINVAL, `MP state '${state}' does not exist on x86`);
  }
}
