import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ApplyReport } from '../common/contract';

/**
 * The agent's own metrics, served when it is given `--metrics-listen`: what it last applied, how
 * often writes failed and files had to be put back, and whether its stream is up. Labels carry
 * bundle names and errno-style codes only.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly appliedVersion: Gauge<'bundle'>;
  private readonly writeFailures: Counter<'bundle' | 'code'>;
  private readonly driftRepairs: Counter<'bundle'>;

  constructor(isConnected: () => boolean) {
    const registers = [this.registry];
    this.appliedVersion = new Gauge({
      name: 'certsync_agent_applied_version',
      help: 'The bundle version whose bytes this node last wrote or verified in place.',
      labelNames: ['bundle'],
      registers,
    });
    this.writeFailures = new Counter({
      name: 'certsync_agent_write_failures_total',
      help: 'Pushes that did not end with the right bytes on disk, by error code (EACCES, ENOSPC, DIGEST_MISMATCH, …).',
      labelNames: ['bundle', 'code'],
      registers,
    });
    this.driftRepairs = new Counter({
      name: 'certsync_agent_drift_repairs_total',
      help: 'Changes to managed files reported to the server for repair.',
      labelNames: ['bundle'],
      registers,
    });
    new Gauge({
      name: 'certsync_agent_server_connected',
      help: '1 while the Sync stream to certsync-server is open, else 0.',
      registers,
      collect() {
        this.set(isConnected() ? 1 : 0);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Records the answer to one push. */
  applyReported(report: ApplyReport): void {
    if (report.ok) this.appliedVersion.set({ bundle: report.bundle }, report.version);
    else this.writeFailures.inc({ bundle: report.bundle, code: report.error?.code ?? 'UNKNOWN' });
  }

  driftReported(bundle: string): void {
    this.driftRepairs.inc({ bundle });
  }
}
