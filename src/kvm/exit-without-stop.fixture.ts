/**
 * Child process for the shutdown test: leaves a vCPU thread asleep in KVM_RUN (the guest halts
 * with KVM's irqchip and nothing interrupts it) and calls `process.exit()` without stopping it.
 * Without the exit hook's kick this process would never end.
 */
import { kernelChipMachine, runPicGuest } from './kvm-test-support.ts';

const machine = kernelChipMachine({ levelTriggered: false });
await runPicGuest(machine);
// Let the vCPU reach its HLT inside KVM_RUN.
await new Promise((resolve) => setTimeout(resolve, 50));
process.stdout.write('vcpu halted in KVM_RUN; exiting\n');
process.exit(0);
