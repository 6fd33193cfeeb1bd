import { readFileSync } from 'node:fs';
import os from 'node:os';

/** The machine a run was measured on, from /proc/cpuinfo and os. */
export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryMiB: number;
  readonly kernel: string;
  readonly node: string;
}

export function describeMachine(): MachineInfo {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown';
  return {
    cpuModel: model.trim(),
    cores: os.cpus().length,
    memoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    kernel: os.release(),
    node: process.version,
  };
}
