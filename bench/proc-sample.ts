import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Clock ticks per second for /proc/PID/stat times; 100 on every Linux we run on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Resident set size of a process in KiB, from /proc/PID/status (VmRSS). */
export function readRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return match ? Number(match[1]) : Number.NaN;
}

/** User + system CPU time a process has used so far, in milliseconds (/proc/PID/stat). */
export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** CPU use of `pid` over `durationMs` of wall time, as a percentage of one core. */
export async function measureCpuPercent(pid: number, durationMs: number): Promise<number> {
  const before = readCpuMs(pid);
  await sleep(durationMs);
  return ((readCpuMs(pid) - before) / durationMs) * 100;
}

/** Samples RSS every `intervalMs` until stopped; keeps the peak. */
export function startRssSampler(pid: number, intervalMs = 20): { stop(): number } {
  let peakKiB = readRssKiB(pid);
  const timer = setInterval(() => {
    peakKiB = Math.max(peakKiB, readRssKiB(pid));
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peakKiB, readRssKiB(pid));
    },
  };
}
