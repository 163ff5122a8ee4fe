/**
 * guests/lib/machine.h holds, for the C guests, the numbers machine-layout.ts and fw-cfg.ts define:
 * this test reads its #defines (and runtime.h's PORT_DEBUG_EXIT) and compares them, so the two
 * sides cannot drift apart.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Gsi, MAX_VCPUS, PCI_MMIO_WINDOW, Port, TESTDEV_IRQ_LINES } from '../machine-layout.ts';
import { guestHeaderDefines } from '../guest-header-test-support.ts';
import { FwCfgKey } from './fw-cfg.ts';


/** The same name on the data port: fw_cfg's data register is the one after its selector. */
const FW_CFG_DATA_OFFSET = 1;
/** CONFIG_DATA is the dword after CONFIG_ADDRESS (PCI Local Bus 3.0 §3.2.2.3.2). */
const PCI_CONFIG_DATA_OFFSET = 4;

describe('guests/lib/machine.h', () => {
  test('its ports, GSIs, limits, window and fw_cfg keys are machine-layout.ts’s and fw-cfg.ts’s', () => {
    const defines = new Map([...guestHeaderDefines('runtime.h'), ...guestHeaderDefines('machine.h')]);
    const expected: Record<string, number> = {
      PORT_PIT: Port.Pit,
      PORT_SYSTEM_CONTROL_B: Port.SystemControlB,
      PORT_DEBUG_EXIT: Port.DebugExit,
      PORT_COM1: Port.Com1,
      PORT_FW_CFG_SELECTOR: Port.FwCfg,
      PORT_FW_CFG_DATA: Port.FwCfg + FW_CFG_DATA_OFFSET,
      PORT_PCI_CONFIG_ADDRESS: Port.PciConfig,
      PORT_PCI_CONFIG_DATA: Port.PciConfig + PCI_CONFIG_DATA_OFFSET,
      PORT_TESTDEV_IRQ: Port.TestdevIrq,
      GSI_PIT: Gsi.Pit,
      GSI_COM1: Gsi.Com1,
      GSI_PCI_TEST_DEVICE_INTX: Gsi.PciTestDeviceIntx,
      TESTDEV_IRQ_LINES,
      MACHINE_MAX_VCPUS: MAX_VCPUS,
      PCI_MMIO_WINDOW_BASE: PCI_MMIO_WINDOW.base,
      PCI_MMIO_WINDOW_BYTES: PCI_MMIO_WINDOW.bytes,
      FW_CFG_SIGNATURE: FwCfgKey.Signature,
      FW_CFG_ID: FwCfgKey.Id,
      FW_CFG_RAM_SIZE: FwCfgKey.RamSize,
      FW_CFG_NB_CPUS: FwCfgKey.CpuCount,
      FW_CFG_MAX_CPUS: FwCfgKey.MaxCpus,
      FW_CFG_CMDLINE_SIZE: FwCfgKey.CommandLineSize,
      FW_CFG_CMDLINE_DATA: FwCfgKey.CommandLineData,
      FW_CFG_FILE_DIR: FwCfgKey.FileDirectory,
    };
    for (const [name, value] of Object.entries(expected)) assert.equal(defines.get(name), value, name);
  });
});
