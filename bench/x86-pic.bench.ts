/**
 * PIC costs on the per-interrupt path: one full edge-interrupt cycle as a guest sees it (the
 * device pulses the line, the CPU runs INTA, the handler writes EOI), on the master alone and
 * through the cascade. Each benchmark checks the vectors it got, so a broken model cannot look fast.
 */
import { PicPair, PicPort } from '../src/x86/pic/pic.ts';
import { initialisePicPair } from '../src/x86/pic/pic-init.ts';
import { timeOperation, type Benchmark, type BenchResult } from './harness.ts';

const NON_SPECIFIC_EOI = 0x20;
/** The BIOS vector bases (the spec's standard init). */
const MASTER_VECTOR_BASE = 0x08;
const SLAVE_VECTOR_BASE = 0x70;
/** IRQ4 (COM1) on the master: vector 0x08 + 4. */
const MASTER_IRQ = 4;
const MASTER_VECTOR = MASTER_VECTOR_BASE + 4;
/** IRQ12 (PS/2 mouse) on the slave: vector 0x70 + 4. */
const SLAVE_IRQ = 12;
const SLAVE_VECTOR = SLAVE_VECTOR_BASE + 4;

/** Times one cycle of `irq`, then checks every INTA returned `vector` (warm-up and samples alike). */
function timeCycle(name: string, irq: number, vector: number, eoiPorts: readonly number[]): BenchResult {
  const pic = PicPair.create();
  initialisePicPair(pic, { masterVectorBase: MASTER_VECTOR_BASE, slaveVectorBase: SLAVE_VECTOR_BASE });
  let cycles = 0;
  let wrongVectors = 0;
  const result = timeOperation(name, () => {
    pic.setIrq(irq, true);
    pic.setIrq(irq, false);
    if (pic.acknowledge() !== vector) wrongVectors++;
    for (const port of eoiPorts) pic.writePort(port, 1, NON_SPECIFIC_EOI);
    cycles++;
  });
  if (wrongVectors !== 0 || pic.outputLevel()) {
    throw new Error(`${name}: ${wrongVectors} of ${cycles} INTAs returned the wrong vector`);
  }
  return { ...result, detail: { cycles, vector } };
}

export const benchmarks: Benchmark[] = [
  {
    name: 'pic: assert + acknowledge + EOI',
    run: () => timeCycle('pic: assert + acknowledge + EOI', MASTER_IRQ, MASTER_VECTOR, [PicPort.MasterCommand]),
  },
  {
    name: 'pic: cascaded assert + acknowledge + two EOIs',
    run: () =>
      timeCycle('pic: cascaded assert + acknowledge + two EOIs', SLAVE_IRQ, SLAVE_VECTOR, [PicPort.SlaveCommand, PicPort.MasterCommand]),
  },
];
