import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as irqchip from '../src/index.ts';

test('the public entry point exports the foundation and controller names', () => {
  const names = ['IrqChipError', 'ErrorCode', 'Event', 'MemoryEvent', 'IrqEdgeEvent', 'IrqLevelEvent', 'VirtualClock', 'HostClock'];
  names.push('PicPair', 'Ioapic', 'LocalApic', 'ApicBus', 'decodeMsi', 'encodeMsi', 'interruptMessage', 'GsiRoutingTable', 'Bus');
  names.push('UserspaceIrqChip', 'SimVcpu', 'IrqAllocator', 'SharedRoutingTable');
  names.push('InterruptManager', 'IrqFdRouteFactory', 'MsixCapability', 'VfioIrqs', 'encodeIrqSet', 'VFIO_DEVICE_SET_IRQS', 'VfioPciInterrupts');
  for (const name of names) {
    assert.ok(name in irqchip, `${name} is exported`);
  }
  assert.deepEqual(Object.values(irqchip.ErrorCode).sort(), ['EAGAIN', 'EBADF', 'EBUSY', 'EEXIST', 'EFAULT', 'EINVAL', 'ENODEV', 'ENOENT', 'ENOEXEC', 'ENOSPC', 'ENOTTY', 'ERANGE']);
});

test('IrqChipError carries its errno-like code and says it in the message', () => {
  const error = new irqchip.IrqChipError(irqchip.ErrorCode.ENOSPC, 'no GSI left');
  assert.equal(error.code, 'ENOSPC');
  assert.equal(error.name, 'IrqChipError');
  assert.match(error.message, /^ENOSPC: no GSI left$/);
  assert.ok(error instanceof Error);
});
