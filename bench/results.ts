import type { MachineInfo } from './machine';
import type { PeerResult, SkippedPeer } from './peers/peer';
import type { AgentFootprint } from './scenarios/agent-footprint';
import type { DetectionResult } from './scenarios/detection';
import type { PropagationResult } from './scenarios/propagation';
import type { SwarmResult } from './scenarios/swarm';

/** One target from the issue, with the measured value and whether it was met. */
export interface TargetCheck {
  readonly target: string;
  readonly limit: string;
  readonly measured: string;
  readonly met: boolean;
}

/** Everything one `npm run bench` measured; written as results.json. */
export interface BenchResults {
  readonly startedAt: string;
  readonly durationS: number;
  readonly machine: MachineInfo;
  readonly detection: DetectionResult[];
  readonly propagation: PropagationResult[];
  readonly agentProcess?: AgentFootprint;
  readonly peers: PeerResult[];
  /** The swarm scenarios on the e2e swarm, when they ran. */
  readonly swarm?: SwarmResult;
  readonly skipped: SkippedPeer[];
  readonly targets: TargetCheck[];
}

/** Checks the targets against a run. */
export function checkTargets(results: Omit<BenchResults, 'targets'>): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const detection = results.detection.find((entry) => entry.settleFrom === 'default');
  if (detection) {
    checks.push({
      target: `detection p50 (default settings, settleMs ${detection.settleMs})`,
      limit: '≤ 150 ms',
      measured: `${detection.detection.p50Ms} ms`,
      met: detection.detection.p50Ms <= 150,
    });
  }
  for (const [agents, limitMs] of [
    [100, 100],
    [1000, 1500],
  ] as const) {
    const run = results.propagation.find(
      (entry) => entry.agents === agents && entry.nodeFolders === 'disk',
    );
    if (run) {
      checks.push({
        target: `propagation p50, N=${agents}`,
        limit: `≤ ${limitMs} ms`,
        measured: `${run.propagation.p50Ms} ms`,
        met: run.propagation.p50Ms <= limitMs,
      });
    }
  }
  for (const run of results.propagation.filter((entry) => entry.nodeFolders === 'disk')) {
    const limitMiB = 80 + (run.agents * 40) / 1024;
    checks.push({
      target: `server RSS, N=${run.agents} idle`,
      limit: `≤ ${limitMiB.toFixed(1)} MiB (80 MB + 40 KB/agent)`,
      measured: `${run.server.idleRssMiB} MiB`,
      met: run.server.idleRssMiB <= limitMiB,
    });
  }
  if (results.agentProcess) {
    checks.push({
      target: 'agent RSS',
      limit: '≤ 60 MiB',
      measured: `${results.agentProcess.rssMiB} MiB`,
      met: results.agentProcess.rssMiB <= 60,
    });
    checks.push({
      target: 'agent idle CPU',
      limit: 'not measurable (< 0.1 %)',
      measured: `${results.agentProcess.idleCpuPercent} %`,
      met: results.agentProcess.idleCpuPercent < 0.1,
    });
  }
  for (const [peer, factor] of [
    ['lsyncd+rsync', 10],
    ['ansible copy (forks=5)', 100],
  ] as const) {
    const result = results.peers.find((entry) => entry.peer === peer && entry.agents === 100);
    if (result?.ratio !== undefined) {
      checks.push({
        target: `${peer} / certsync, N=100`,
        limit: `≥ ${factor}×`,
        measured: `${result.ratio}×`,
        met: result.ratio >= factor,
      });
    }
  }
  if (results.swarm) {
    const { endToEndVsBare, endToEnd, bareForceUpdate } = results.swarm.summary;
    checks.push({
      target: 'swarm end-to-end (renew → done, with proof) / bare force-update',
      limit: '≤ 1.2×',
      measured: `${endToEndVsBare}× (${endToEnd.p50Ms} / ${bareForceUpdate.p50Ms} ms)`,
      met: endToEndVsBare <= 1.2,
    });
  }
  return checks;
}
