/* pci-msi: the PCI test device behind the host bridge (src/vmm/devices/pci/: pci-host-bridge.ts,
 * pci-test-device.ts), one CPU, as a driver would use it.
 *
 * It enumerates bus 0 through configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2: CONFIG_
 * ADDRESS 0xcf8, CONFIG_DATA 0xcfc), finds the host bridge (i440FX) and the test device, sizes a
 * BAR, walks the capability list, and then makes the device raise interrupts through its BAR 0
 * registers:
 * - MSI (§6.8.1): each vector once with the Data's low MME bits; a vector masked by Mask Bits sets
 *   its Pending Bit however often it is raised and is delivered once at unmask; a new Data moves
 *   the vectors; a vector past MME is not sent;
 * - MSI-X (§6.8.2): each table entry once; a masked entry sets its PBA bit and is delivered exactly
 *   once at unmask; the function mask holds every entry; a new vector, and a new (logical)
 *   destination, take effect at the next raise;
 * - INTx through the IOAPIC (the pin firmware wrote to Interrupt Line, level): one delivery per
 *   assertion that the handler acknowledges, none while Command's Interrupt Disable is set or MSI
 *   is enabled (Status bit 3 still shows it), delivered when that ends;
 * - level work with resample: the device model on the VMM's device thread keeps INTA# asserted
 *   through a level event while work is outstanding and re-triggers at each resample (the guest's
 *   EOI); the handler completes one unit per interrupt, so N units are N handler runs.
 *
 * When the local APIC ends an interrupt matters for level lines (irqtest.h
 * lapic_ended_at_delivery): with the SDM's (the handler's EOI ends it) every count is exact. KVM's
 * local APIC on a PVM host ends it at delivery (docs/architecture.md decision 32), so the IOAPIC
 * sees the EOI, and the device its resample, before the handler has lowered the line or completed
 * the unit: once per burst the line is delivered again with nothing left to do. The guest counts
 * those runs apart and allows exactly that one, never more, and only on that local APIC. */
#include "lib/irqtest.h"
#include "lib/timing.h"

/* Configuration space (PCI 3.0 §6.1, §6.2). */
#define CONFIG_ENABLE 0x80000000u
#define PCI_DEVICES 32
#define PCI_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_CLASS_REVISION 0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_BAR1 0x14
#define PCI_CAPABILITY_POINTER 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define ABSENT_ID 0xffffffffu
#define COMMAND_MEMORY (1u << 1)
#define COMMAND_BUS_MASTER (1u << 2)
#define COMMAND_INTX_DISABLE (1u << 10)
#define STATUS_INTERRUPT (1u << 3)
#define STATUS_CAPABILITIES (1u << 4)
#define BAR_ADDRESS_MASK 0xfffffff0u
#define INTERRUPT_PIN_INTA 1
#define MAX_CAPABILITIES 48 /* 192 bytes of capabilities at 4 bytes each at least: a longer list loops */

/* The host bridge QEMU -machine pc has: i440FX, 8086:1237, class 06 00 (host bridge). */
#define HOST_BRIDGE_ID 0x12378086u
#define CLASS_HOST_BRIDGE 0x0600u

/* MSI, 64-bit with per-vector masking (§6.8.1): register offsets in the capability. */
#define CAP_MSI 0x05
#define MSI_CONTROL 2
#define MSI_ADDRESS 4
#define MSI_UPPER_ADDRESS 8
#define MSI_DATA 12
#define MSI_MASK_BITS 16
#define MSI_PENDING_BITS 20
#define MSI_ENABLE 1u
#define MSI_MMC(control) (((control) >> 1) & 7u)
#define MSI_MME(log2) ((log2) << 4)
#define MSI_64_BIT (1u << 7)
#define MSI_PER_VECTOR_MASK (1u << 8)

/* MSI-X (§6.8.2). */
#define CAP_MSIX 0x11
#define MSIX_CONTROL 2
#define MSIX_TABLE 4
#define MSIX_PBA 8
#define MSIX_ENABLE (1u << 15)
#define MSIX_FUNCTION_MASK (1u << 14)
#define MSIX_TABLE_SIZE(control) (((control) & 0x7ffu) + 1)
#define MSIX_BIR(location) ((location) & 7u)
#define MSIX_OFFSET(location) ((location) & ~7u)
#define MSIX_ENTRY_BYTES 16
#define MSIX_ENTRY_DATA 8
#define MSIX_ENTRY_CONTROL 12
#define MSIX_MASKED 1u

/* x86 MSI messages (SDM vol. 3 §11.11.1, §11.11.2): fixed, edge. */
#define MSI_ADDRESS_BASE 0xfee00000u
#define MSI_DESTINATION_SHIFT 12
#define MSI_DESTINATION_LOGICAL (1u << 2)
#define LOGICAL_ID_BSP 0x01u /* flat model: one bit per CPU in LDR bits 31:24 */
#define LDR_SHIFT 24

/* The test device (pci-test-device.ts): IDs, BAR 0's registers. */
#define TEST_DEVICE_ID 0x10f01af4u
#define TEST_REGISTERS_ID 0x7e570001u
#define TEST_BAR_BYTES 0x1000u
#define REG_ID 0x00
#define REG_RAISE 0x04
#define REG_INTX 0x08
#define REG_LEVEL_WORK 0x0c
#define REG_LEVEL_ACK 0x10
#define REG_COUNTER(index) (0x14 + 4 * (index))
/* Indexes in PCI_TEST_DEVICE_COUNTER_NAMES. */
#define COUNTER_RAISES_OUT_OF_RANGE 4
#define COUNTER_LEVEL_UNITS_COMPLETED 7
#define COUNTER_LEVEL_ACKS_WITHOUT_WORK 8
#define COUNTER_LEVEL_TRIGGERS 9
#define COUNTER_LEVEL_RESAMPLES 10
#define TEST_MSI_VECTORS 4
#define TEST_MSIX_VECTORS 8

/* Our vectors. */
#define VECTOR_MSI 0x40       /* 0x40-0x43: MME 2 puts the vector number in the Data's low 2 bits */
#define VECTOR_MSI_MOVED 0x48 /* 0x48-0x4b */
#define VECTOR_INTX 0x50
#define VECTOR_MSIX 0x60      /* 0x60-0x67 */
#define VECTOR_MSIX_MOVED 0x70
#define VECTOR_MSIX_LOGICAL 0x78
#define MSIX_MASKED_ENTRY 3
#define MSIX_REPROGRAMMED_ENTRY 5
#define LEVEL_UNITS 16
#define LEVEL_UNITS_DISABLED 4
#define RAISES_WHILE_MASKED 3

#define DELIVERY_TIMEOUT_US 500000
#define LEVEL_TIMEOUT_US 5000000
#define QUIET_US 20000
#define EDGE 0
#define LEVEL 1

/* --- PCI configuration mechanism #1 ----------------------------------------------------------- */

static u32 config_address(u32 device, u32 offset) { return CONFIG_ENABLE | (device << 11) | (offset & 0xfc); }

static u32 config_read32(u32 device, u32 offset) {
  outl(PORT_PCI_CONFIG_ADDRESS, config_address(device, offset));
  return inl(PORT_PCI_CONFIG_DATA);
}
static u16 config_read16(u32 device, u32 offset) {
  outl(PORT_PCI_CONFIG_ADDRESS, config_address(device, offset));
  return inw((u16)(PORT_PCI_CONFIG_DATA + (offset & 2)));
}
static u8 config_read8(u32 device, u32 offset) {
  outl(PORT_PCI_CONFIG_ADDRESS, config_address(device, offset));
  return inb((u16)(PORT_PCI_CONFIG_DATA + (offset & 3)));
}
static void config_write32(u32 device, u32 offset, u32 value) {
  outl(PORT_PCI_CONFIG_ADDRESS, config_address(device, offset));
  outl(PORT_PCI_CONFIG_DATA, value);
}
static void config_write16(u32 device, u32 offset, u16 value) {
  outl(PORT_PCI_CONFIG_ADDRESS, config_address(device, offset));
  outw((u16)(PORT_PCI_CONFIG_DATA + (offset & 2)), value);
}

/* --- the device --------------------------------------------------------------------------------- */

static u32 slot;           /* the test device's device number */
static u64 registers;      /* BAR 0 */
static u32 msi_cap;        /* configuration offsets of its capabilities */
static u32 msix_cap;
static u64 msix_table;     /* guest-physical */
static u64 msix_pba;

static u32 device_read(u32 reg) { return mmio_read(registers + reg); }
static void device_write(u32 reg, u32 value) { mmio_write(registers + reg, value); }
static void raise(u32 vector) { device_write(REG_RAISE, vector); }

static void set_command(u32 bits, int on) {
  u16 command = config_read16(slot, PCI_COMMAND);
  config_write16(slot, PCI_COMMAND, (u16)(on ? command | bits : command & ~bits));
}
static int interrupt_status(void) { return (config_read16(slot, PCI_STATUS) & STATUS_INTERRUPT) != 0; }

static u32 msi_message_address(u32 destination, int logical) {
  return MSI_ADDRESS_BASE | (destination << MSI_DESTINATION_SHIFT) | (logical ? MSI_DESTINATION_LOGICAL : 0);
}

static void msi_set_control(u16 control) { config_write16(slot, msi_cap + MSI_CONTROL, control); }

static void msix_set_control(u16 control) { config_write16(slot, msix_cap + MSIX_CONTROL, control); }
static void msix_write_entry(u32 entry, u32 field, u32 value) { mmio_write(msix_table + entry * MSIX_ENTRY_BYTES + field, value); }
static void msix_program(u32 entry, u32 address, u32 vector) {
  msix_write_entry(entry, 0, address);
  msix_write_entry(entry, 4, 0);
  msix_write_entry(entry, MSIX_ENTRY_DATA, vector);
}
static void msix_set_masked(u32 entry, int masked) { msix_write_entry(entry, MSIX_ENTRY_CONTROL, masked ? MSIX_MASKED : 0); }
static u32 msix_pending(void) { return mmio_read(msix_pba); }

/* --- interrupts --------------------------------------------------------------------------------- */

#define INTX_ACKNOWLEDGE 0 /* the handler deasserts INTX: a driver acknowledging its device */
#define INTX_LEVEL_WORK 1  /* the handler completes one unit of level work */
static volatile u32 taken[256];
static volatile int intx_mode;
static volatile int intx_asserted;    /* the guest set INTX and no handler has cleared it yet */
static volatile u32 intx_handled;     /* INTx runs that found INTX asserted and cleared it */
static volatile u32 intx_stale;       /* INTx runs after it had been cleared */
static volatile u32 level_work_runs;  /* runs that completed a unit */
static volatile u32 level_idle_runs;  /* runs that found no work */
static volatile int eoi_at_delivery = -1;
static volatile u32 eoi_timing_changes;

static void handle_intx(void) {
  if (intx_mode == INTX_LEVEL_WORK) {
    if (device_read(REG_LEVEL_ACK) > 0) {
      device_write(REG_LEVEL_ACK, 1);
      level_work_runs++;
    } else {
      level_idle_runs++;
    }
  } else if (intx_asserted) {
    device_write(REG_INTX, 0);
    intx_asserted = 0;
    intx_handled++;
  } else {
    intx_stale++;
  }
}

static int ours(u64 vector) {
  return (vector >= VECTOR_MSI && vector < VECTOR_MSI + TEST_MSI_VECTORS) ||
         (vector >= VECTOR_MSI_MOVED && vector < VECTOR_MSI_MOVED + TEST_MSI_VECTORS) ||
         (vector >= VECTOR_MSIX && vector < VECTOR_MSIX + TEST_MSIX_VECTORS) || vector == VECTOR_MSIX_MOVED ||
         vector == VECTOR_MSIX_LOGICAL || vector == VECTOR_INTX;
}

void guest_interrupt(u64 vector, u64 error_code) {
  if (vector < PIC_MASTER_VECTOR_BASE) unexpected_exception(vector, error_code);
  if (vector == SPURIOUS_VECTOR) return; /* no EOI for the spurious vector (SDM §11.9) */
  if (!ours(vector)) unexpected_vector(vector);
  int ended = lapic_ended_at_delivery((u32)vector);
  if (eoi_at_delivery < 0) eoi_at_delivery = ended;
  else if (ended != eoi_at_delivery) eoi_timing_changes++;
  if (vector == VECTOR_INTX) handle_intx();
  taken[vector]++;
  lapic_eoi();
}

/* Deliveries of a level line after the handler's work was done that the host's local APIC
 * explains (the EOI at delivery): one per burst. */
static u32 allowed_extra(void) { return eoi_at_delivery == 1 ? 1 : 0; }

static void forget_taken(void) {
  for (u32 vector = 0; vector < 256; vector++) taken[vector] = 0;
}

/* Whether exactly the vectors in [first, first + count) were taken, `times` each, and nothing else. */
static int taken_exactly(u32 first, u32 count, u32 times) {
  for (u32 vector = 0; vector < 256; vector++) {
    u32 want = vector >= first && vector < first + count ? times : 0;
    if (taken[vector] != want) {
      printf("  vector 0x%x taken %u times, expected %u\n", vector, taken[vector], want);
      return 0;
    }
  }
  return 1;
}

static u32 total_taken(void) {
  u32 total = 0;
  for (u32 vector = 0; vector < 256; vector++) total += taken[vector];
  return total;
}

/* Waits (bounded) until `count` interrupts have been taken since forget_taken, then a quiet spell. */
static void await_taken(u32 count) {
  (void)WAIT_FOR(total_taken() >= count, DELIVERY_TIMEOUT_US);
  delay_us(QUIET_US);
}

/* --- the checks ---------------------------------------------------------------------------------- */

static void enumerate(void) {
  outb(PORT_PCI_CONFIG_ADDRESS + 3, 0x01); /* Linux's pci_check_type1: a byte write must not reach CONFIG_ADDRESS */
  outl(PORT_PCI_CONFIG_ADDRESS, CONFIG_ENABLE);
  CHECK(2, inl(PORT_PCI_CONFIG_ADDRESS) == CONFIG_ENABLE, "CONFIG_ADDRESS reads back 0x%x as written, a byte write to 0xcfb did not reach it", CONFIG_ENABLE);
  u32 found = 0;
  slot = PCI_DEVICES;
  for (u32 device = 0; device < PCI_DEVICES; device++) {
    u32 id = config_read32(device, PCI_ID);
    if (id == ABSENT_ID) continue;
    found++;
    printf("  00:%02x.0 %04x:%04x class %06x\n", device, id & 0xffff, id >> 16, config_read32(device, PCI_CLASS_REVISION) >> 8);
    if (id == TEST_DEVICE_ID && slot == PCI_DEVICES) slot = device; /* the first test function */
  }
  CHECK(3, config_read32(0, PCI_ID) == HOST_BRIDGE_ID && config_read32(0, PCI_CLASS_REVISION) >> 16 == CLASS_HOST_BRIDGE, "device 0 is the i440FX host bridge");
  CHECK(4, slot < PCI_DEVICES, "the test device (1af4:10f0) is on bus 0, at device %u; %u functions found", slot, found);
  CHECK(5, config_read8(slot, PCI_HEADER_TYPE) == 0 && config_read8(slot, PCI_INTERRUPT_PIN) == INTERRUPT_PIN_INTA,
        "header type 0, Interrupt Pin INTA#");
  CHECK(6, config_read8(slot, PCI_INTERRUPT_LINE) == GSI_PCI_TEST_DEVICE_INTX, "firmware wrote Interrupt Line %u (expected %u)",
        config_read8(slot, PCI_INTERRUPT_LINE), GSI_PCI_TEST_DEVICE_INTX);
}

static int in_window(u32 bar) {
  return bar >= PCI_MMIO_WINDOW_BASE && bar + TEST_BAR_BYTES <= PCI_MMIO_WINDOW_BASE + PCI_MMIO_WINDOW_BYTES && bar % TEST_BAR_BYTES == 0;
}

static void find_bars(void) {
  u32 bar0 = config_read32(slot, PCI_BAR0) & BAR_ADDRESS_MASK;
  u32 bar1 = config_read32(slot, PCI_BAR1) & BAR_ADDRESS_MASK;
  CHECK(7, (config_read16(slot, PCI_COMMAND) & COMMAND_MEMORY) && in_window(bar0) && in_window(bar1) && bar0 != bar1,
        "firmware placed BAR 0 at 0x%x and BAR 1 at 0x%x in the PCI window, memory decode on", bar0, bar1);
  /* Sizing, as Linux does it: decode off, all ones, read the mask, restore. */
  set_command(COMMAND_MEMORY, 0);
  config_write32(slot, PCI_BAR0, 0xffffffffu);
  u32 mask = config_read32(slot, PCI_BAR0);
  config_write32(slot, PCI_BAR0, bar0);
  set_command(COMMAND_MEMORY, 1);
  CHECK(8, mask == ~(TEST_BAR_BYTES - 1), "BAR 0 sizes as 0x%x: 4 KiB of 32-bit memory", mask);
  registers = bar0;
  CHECK(9, device_read(REG_ID) == TEST_REGISTERS_ID, "BAR 0's ID register reads 0x%x", device_read(REG_ID));
}

static void find_capabilities(void) {
  CHECK(10, config_read16(slot, PCI_STATUS) & STATUS_CAPABILITIES, "Status says there is a capability list");
  u32 walked = 0;
  for (u32 at = config_read8(slot, PCI_CAPABILITY_POINTER) & 0xfc; at != 0 && walked < MAX_CAPABILITIES; at = config_read8(slot, at + 1) & 0xfc, walked++) {
    u8 id = config_read8(slot, at);
    if (id == CAP_MSI) msi_cap = at;
    if (id == CAP_MSIX) msix_cap = at;
  }
  CHECK(11, msi_cap != 0 && msix_cap != 0 && walked == 2, "the list: MSI at 0x%x, MSI-X at 0x%x (%u capabilities)", msi_cap, msix_cap, walked);
  u16 msi_control = config_read16(slot, msi_cap + MSI_CONTROL);
  CHECK(12, (1u << MSI_MMC(msi_control)) == TEST_MSI_VECTORS && (msi_control & MSI_64_BIT) && (msi_control & MSI_PER_VECTOR_MASK),
        "MSI: %u vectors, 64-bit, per-vector masking (Message Control 0x%x)", 1u << MSI_MMC(msi_control), msi_control);
  u16 msix_control = config_read16(slot, msix_cap + MSIX_CONTROL);
  u32 table = config_read32(slot, msix_cap + MSIX_TABLE);
  u32 pba = config_read32(slot, msix_cap + MSIX_PBA);
  CHECK(13, MSIX_TABLE_SIZE(msix_control) == TEST_MSIX_VECTORS && MSIX_BIR(table) == 1 && MSIX_BIR(pba) == 1,
        "MSI-X: %u entries, table in BAR %u + 0x%x, PBA in BAR %u + 0x%x", MSIX_TABLE_SIZE(msix_control), MSIX_BIR(table), MSIX_OFFSET(table), MSIX_BIR(pba), MSIX_OFFSET(pba));
  u32 bar1 = config_read32(slot, PCI_BAR1) & BAR_ADDRESS_MASK;
  msix_table = bar1 + MSIX_OFFSET(table);
  msix_pba = bar1 + MSIX_OFFSET(pba);
}

static void check_msi(u32 apic) {
  u32 msi_pending = msi_cap + MSI_PENDING_BITS;
  config_write32(slot, msi_cap + MSI_ADDRESS, msi_message_address(apic, 0));
  config_write32(slot, msi_cap + MSI_UPPER_ADDRESS, 0);
  config_write16(slot, msi_cap + MSI_DATA, VECTOR_MSI);
  config_write32(slot, msi_cap + MSI_MASK_BITS, 0);
  msi_set_control((u16)(MSI_ENABLE | MSI_MME(2)));
  forget_taken();
  for (u32 vector = 0; vector < TEST_MSI_VECTORS; vector++) raise(vector);
  await_taken(TEST_MSI_VECTORS);
  CHECK(20, taken_exactly(VECTOR_MSI, TEST_MSI_VECTORS, 1), "MSI: RAISE 0-3 sent vectors 0x%x-0x%x, once each", VECTOR_MSI, VECTOR_MSI + 3);

  forget_taken();
  config_write32(slot, msi_cap + MSI_MASK_BITS, 1u << 1);
  for (u32 raise_count = 0; raise_count < RAISES_WHILE_MASKED; raise_count++) raise(1);
  delay_us(QUIET_US);
  CHECK(21, total_taken() == 0 && config_read32(slot, msi_pending) == (1u << 1), "MSI: vector 1, masked, raised %u times: nothing sent, Pending Bits 0x%x", RAISES_WHILE_MASKED, config_read32(slot, msi_pending));
  config_write32(slot, msi_cap + MSI_MASK_BITS, 0);
  await_taken(1);
  CHECK(22, taken_exactly(VECTOR_MSI + 1, 1, 1) && config_read32(slot, msi_pending) == 0, "MSI: unmasked, it is sent exactly once and its Pending Bit clears");

  forget_taken();
  config_write16(slot, msi_cap + MSI_DATA, VECTOR_MSI_MOVED);
  raise(2);
  await_taken(1);
  CHECK(23, taken_exactly(VECTOR_MSI_MOVED + 2, 1, 1), "MSI: a new Data moves vector 2 to 0x%x", VECTOR_MSI_MOVED + 2);

  forget_taken();
  u32 out_of_range = device_read(REG_COUNTER(COUNTER_RAISES_OUT_OF_RANGE));
  msi_set_control((u16)(MSI_ENABLE | MSI_MME(1)));
  raise(3);
  delay_us(QUIET_US);
  CHECK(24, total_taken() == 0 && device_read(REG_COUNTER(COUNTER_RAISES_OUT_OF_RANGE)) == out_of_range + 1 && config_read32(slot, msi_pending) == 0,
        "MSI: with 2 vectors enabled, RAISE 3 sends nothing and holds nothing (the device counts it)");
  msi_set_control(0);
}

static void check_msix(u32 apic) {
  msix_set_control((u16)(MSIX_ENABLE | MSIX_FUNCTION_MASK));
  for (u32 entry = 0; entry < TEST_MSIX_VECTORS; entry++) {
    msix_program(entry, msi_message_address(apic, 0), VECTOR_MSIX + entry);
    msix_set_masked(entry, 0);
  }
  msix_set_control((u16)MSIX_ENABLE);
  forget_taken();
  for (u32 entry = 0; entry < TEST_MSIX_VECTORS; entry++) raise(entry);
  await_taken(TEST_MSIX_VECTORS);
  CHECK(30, taken_exactly(VECTOR_MSIX, TEST_MSIX_VECTORS, 1), "MSI-X: RAISE 0-7 sent vectors 0x%x-0x%x, once each", VECTOR_MSIX, VECTOR_MSIX + 7);

  forget_taken();
  msix_set_masked(MSIX_MASKED_ENTRY, 1);
  for (u32 raise_count = 0; raise_count < RAISES_WHILE_MASKED; raise_count++) raise(MSIX_MASKED_ENTRY);
  delay_us(QUIET_US);
  CHECK(31, total_taken() == 0 && msix_pending() == (1u << MSIX_MASKED_ENTRY), "MSI-X: entry %u, masked, raised %u times: nothing sent, PBA 0x%x", MSIX_MASKED_ENTRY, RAISES_WHILE_MASKED, msix_pending());
  msix_set_masked(MSIX_MASKED_ENTRY, 0);
  await_taken(1);
  CHECK(32, taken_exactly(VECTOR_MSIX + MSIX_MASKED_ENTRY, 1, 1) && msix_pending() == 0, "MSI-X: unmasked, it is sent exactly once and its PBA bit clears");

  forget_taken();
  msix_set_control((u16)(MSIX_ENABLE | MSIX_FUNCTION_MASK));
  raise(1);
  raise(6);
  delay_us(QUIET_US);
  CHECK(33, total_taken() == 0 && msix_pending() == ((1u << 1) | (1u << 6)), "MSI-X: the function mask holds entries 1 and 6 (PBA 0x%x)", msix_pending());
  msix_set_control((u16)MSIX_ENABLE);
  await_taken(2);
  CHECK(34, taken[VECTOR_MSIX + 1] == 1 && taken[VECTOR_MSIX + 6] == 1 && total_taken() == 2 && msix_pending() == 0, "MSI-X: clearing it sends each once");

  forget_taken();
  msix_write_entry(MSIX_REPROGRAMMED_ENTRY, MSIX_ENTRY_DATA, VECTOR_MSIX_MOVED);
  raise(MSIX_REPROGRAMMED_ENTRY);
  await_taken(1);
  CHECK(35, taken_exactly(VECTOR_MSIX_MOVED, 1, 1), "MSI-X: entry %u reprogrammed to vector 0x%x", MSIX_REPROGRAMMED_ENTRY, VECTOR_MSIX_MOVED);

  forget_taken();
  lapic_write(LAPIC_DFR, DFR_FLAT);
  lapic_write(LAPIC_LDR, LOGICAL_ID_BSP << LDR_SHIFT);
  msix_set_masked(MSIX_REPROGRAMMED_ENTRY, 1); /* as Linux moves an entry: masked while it is rewritten */
  msix_program(MSIX_REPROGRAMMED_ENTRY, msi_message_address(LOGICAL_ID_BSP, 1), VECTOR_MSIX_LOGICAL);
  msix_set_masked(MSIX_REPROGRAMMED_ENTRY, 0);
  raise(MSIX_REPROGRAMMED_ENTRY);
  await_taken(1);
  CHECK(36, taken_exactly(VECTOR_MSIX_LOGICAL, 1, 1), "MSI-X: entry %u moved to logical destination 0x%x, vector 0x%x", MSIX_REPROGRAMMED_ENTRY, LOGICAL_ID_BSP, VECTOR_MSIX_LOGICAL);
  msix_set_control(0);
}

/* The guest asserts INTX and waits for the handler to acknowledge it. */
static void assert_intx(void) {
  intx_asserted = 1;
  device_write(REG_INTX, 1);
}

static void check_intx(u32 apic, u32 line) {
  intx_mode = INTX_ACKNOWLEDGE;
  ioapic_route((u8)line, VECTOR_INTX, LEVEL, (u8)apic, 0);
  forget_taken();
  cli();
  assert_intx();
  int status = interrupt_status();
  sti();
  (void)WAIT_FOR(intx_handled == 1, DELIVERY_TIMEOUT_US);
  delay_us(QUIET_US);
  report_eoi_timing(eoi_at_delivery);
  CHECK(40, status && intx_handled == 1 && intx_stale <= allowed_extra(),
        "INTx: INTX = 1 (Status bit 3 set) reaches IOAPIC pin %u: the handler acknowledged it once (%u more after, %u allowed)", line, intx_stale, allowed_extra());
  CHECK(41, !interrupt_status() && !(ioapic_entry_low(line) & RTE_REMOTE_IRR), "INTx: acknowledged, Status bit 3 clears and remote IRR is clear");

  u32 stale = intx_stale;
  set_command(COMMAND_INTX_DISABLE, 1);
  assert_intx();
  delay_us(QUIET_US);
  CHECK(42, intx_handled == 1 && intx_stale == stale && interrupt_status(), "INTx: with Interrupt Disable set nothing arrives, Status bit 3 still set");
  set_command(COMMAND_INTX_DISABLE, 0);
  (void)WAIT_FOR(intx_handled == 2, DELIVERY_TIMEOUT_US);
  delay_us(QUIET_US);
  CHECK(43, intx_handled == 2 && intx_stale - stale <= allowed_extra(), "INTx: clearing Interrupt Disable delivers it");

  stale = intx_stale;
  msi_set_control((u16)MSI_ENABLE);
  assert_intx();
  delay_us(QUIET_US);
  CHECK(44, intx_handled == 2 && intx_stale == stale, "INTx: a function with MSI enabled does not use INTA#");
  msi_set_control(0);
  (void)WAIT_FOR(intx_handled == 3, DELIVERY_TIMEOUT_US);
  delay_us(QUIET_US);
  CHECK(45, intx_handled == 3 && intx_stale - stale <= allowed_extra(), "INTx: MSI disabled, INTA# delivers it");
}

/* Queues `units` of level work and waits until the handler has completed them all. */
static void run_level_work(u32 units) {
  device_write(REG_LEVEL_WORK, units);
  (void)WAIT_FOR(device_read(REG_LEVEL_ACK) == 0, LEVEL_TIMEOUT_US);
  delay_us(QUIET_US);
}

static void check_level_work(u32 line) {
  intx_mode = INTX_LEVEL_WORK;
  u32 triggers = device_read(REG_COUNTER(COUNTER_LEVEL_TRIGGERS));
  run_level_work(LEVEL_UNITS);
  u32 outstanding = device_read(REG_LEVEL_ACK);
  CHECK(50, level_work_runs == LEVEL_UNITS && outstanding == 0, "level work: %u units, %u handler runs that completed one (%u outstanding)", LEVEL_UNITS, level_work_runs, outstanding);
  CHECK(51, level_idle_runs <= allowed_extra(), "level work: %u runs found nothing to do (%u allowed on this local APIC)", level_idle_runs, allowed_extra());
  u32 line_triggers = device_read(REG_COUNTER(COUNTER_LEVEL_TRIGGERS)) - triggers;
  printf("  the device thread triggered the line %u times, saw %u resamples\n", line_triggers, device_read(REG_COUNTER(COUNTER_LEVEL_RESAMPLES)));
  CHECK(52, line_triggers == level_work_runs + level_idle_runs, "level work: one handler run per trigger (%u triggers)", line_triggers);

  u32 idle = level_idle_runs;
  set_command(COMMAND_INTX_DISABLE, 1);
  device_write(REG_LEVEL_WORK, LEVEL_UNITS_DISABLED);
  delay_us(QUIET_US);
  CHECK(53, level_work_runs == LEVEL_UNITS && interrupt_status(), "level work with Interrupt Disable set: held (Status bit 3 set), no interrupt");
  set_command(COMMAND_INTX_DISABLE, 0);
  (void)WAIT_FOR(device_read(REG_LEVEL_ACK) == 0, LEVEL_TIMEOUT_US);
  delay_us(QUIET_US);
  CHECK(54, level_work_runs == LEVEL_UNITS + LEVEL_UNITS_DISABLED && level_idle_runs - idle <= allowed_extra(), "level work: Interrupt Disable cleared, the %u held units are %u handler runs", LEVEL_UNITS_DISABLED, level_work_runs - LEVEL_UNITS);
  CHECK(55, device_read(REG_COUNTER(COUNTER_LEVEL_UNITS_COMPLETED)) == LEVEL_UNITS + LEVEL_UNITS_DISABLED && device_read(REG_COUNTER(COUNTER_LEVEL_ACKS_WITHOUT_WORK)) == 0,
        "the device counted %u units completed, no acknowledgement without work", device_read(REG_COUNTER(COUNTER_LEVEL_UNITS_COMPLETED)));
  CHECK(56, !(ioapic_entry_low(line) & RTE_REMOTE_IRR) && !interrupt_status(), "at rest: remote IRR clear, Status bit 3 clear");
}

int main(void) {
  serial_init();
  idt_install();
  printf("pci-msi: the PCI test device's MSI, MSI-X and INTx, and a level interrupt with resample\n");
  CHECK(1, timing_init() == 0, "the TSC calibrates against PIT counter 2 (%lu ticks/ms)", tsc_per_ms());
  lapic_enable(0);
  pic_init(PIC_MASTER_VECTOR_BASE, PIC_SLAVE_VECTOR_BASE); /* every 8259A line masked: INTx goes through the IOAPIC */
  u32 apic = lapic_id();

  enumerate();
  find_bars();
  find_capabilities();
  set_command(COMMAND_BUS_MASTER, 1); /* an MSI is a memory write: the driver lets the function master the bus */
  sti();
  check_msi(apic);
  check_msix(apic);
  u32 line = config_read8(slot, PCI_INTERRUPT_LINE);
  check_intx(apic, line);
  check_level_work(line);
  CHECK(60, eoi_timing_changes == 0, "every handler saw the same local APIC behaviour");
  cli();
  all_checks_passed("pci-msi");
}
