import type { BenchResults } from './results';

/** "settleMs 50 (default)" or "settleMs 500": whether the run left the setting to the server. */
export function describeSettle(entry: {
  settleMs: number;
  settleFrom?: 'default' | 'set';
}): string {
  return `settleMs ${entry.settleMs}${entry.settleFrom === 'default' ? ' (default)' : ''}`;
}

/** The table printed at the end of a run (also pasted into BENCHMARKS.md). */
export function formatTable(results: BenchResults): string {
  const lines: string[] = [];
  lines.push(
    '| scenario | N | p50 ms | p95 ms | max ms | notes |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  );
  for (const entry of results.detection) {
    const { p50Ms, p95Ms, maxMs } = entry.detection;
    lines.push(
      `| detection (swap → accepted) | – | ${p50Ms} | ${p95Ms} | ${maxMs} | ${describeSettle(entry)}, ${entry.renewals} renewals |`,
    );
  }
  for (const entry of results.propagation) {
    const { p50Ms, p95Ms, maxMs } = entry.propagation;
    lines.push(
      `| propagation (accepted → all reported)${entry.nodeFolders === 'tmpfs' ? ', node folders on tmpfs' : ''} | ${entry.agents} | ${p50Ms} | ${p95Ms} | ${maxMs} | ${entry.rollouts} rollouts, ${entry.workerProcesses} agent processes |`,
    );
  }
  for (const entry of results.propagation) {
    const { p50Ms, p95Ms, maxMs } = entry.swapToAll;
    if (entry.nodeFolders === 'tmpfs') continue;
    lines.push(
      `| certsync swap → all N reported | ${entry.agents} | ${p50Ms} | ${p95Ms} | ${maxMs} | settleMs ${entry.settleMs} |`,
    );
  }
  for (const peer of results.peers) {
    const { p50Ms, p95Ms, maxMs } = peer.time;
    const ratio = peer.ratio === undefined ? '' : `, **${peer.ratio}× certsync**`;
    const missed =
      peer.missed > 0 ? `, **missed ${peer.missed} of ${peer.runs}** (not delivered in 15 s)` : '';
    lines.push(
      `| ${peer.peer} | ${peer.agents} | ${p50Ms} | ${p95Ms} | ${maxMs} | ${peer.time.count} of ${peer.runs} delivered${ratio}${missed} |`,
    );
  }
  if (results.swarm) {
    const swarm = results.swarm;
    const s = swarm.summary;
    const n = swarm.renewals.length;
    const row = (label: string, d: { p50Ms: number; p95Ms: number; maxMs: number }, note: string) =>
      lines.push(`| ${label} | 3 | ${d.p50Ms} | ${d.p95Ms} | ${d.maxMs} | ${note} |`);
    row(
      'swarm: certsync renewal (last link swap → rollout done)',
      s.endToEnd,
      `${n} renewals; distribute to 3 nodes, force-update iklimco_vault (2 replicas), unseal + prove`,
    );
    row(
      'swarm: · detection (last link swap → accepted)',
      s.detection,
      "server timestamps (history) against the link's mtime, one clock",
    );
    row('swarm: · propagation (accepted → converged)', s.propagation, '3 agents confirmed');
    row(
      'swarm: · reload (reloading → force-update finished)',
      s.reload,
      'docker service update --force by the server',
    );
    row('swarm: · proof (start → finish)', s.proof, 'unseal + TLS leaf check of every replica');
    row(
      'swarm: Swarm-native secret rotation (update)',
      s.secretRotation,
      `--secret-rm/--secret-add on bench_secret_vault (2 replicas, not sealed); → UpdateStatus completed`,
    );
    row(
      'swarm: Swarm-native secret rotation (secret create + update)',
      s.secretRotationWithCreate,
      `certsync renewal / this = **${s.renewalVsSecretRotation}×**`,
    );
    row(
      'swarm: bare docker service update --force iklimco_vault',
      s.bareForceUpdate,
      `end-to-end / bare = **${s.endToEndVsBare}×**, reload / bare = ${s.reloadVsBare}×`,
    );
  }
  lines.push(
    '',
    '| footprint | N | RSS MiB | CPU % of one core | notes |',
    '| --- | ---: | ---: | ---: | --- |',
  );
  for (const entry of results.propagation) {
    const server = entry.server;
    if (entry.nodeFolders === 'tmpfs') continue;
    lines.push(
      `| server, idle | ${entry.agents} | ${server.idleRssMiB} | ${server.idleCpuPercent} | before agents: ${entry.serverRssBeforeAgentsMiB} MiB |`,
    );
    lines.push(
      `| server, during rollouts | ${entry.agents} | ${server.rolloutPeakRssMiB} (peak) | ${server.rolloutCpuPercent} | swap → converged windows; ${server.rolloutCpuMsPerAgent} ms CPU per agent per rollout |`,
    );
    lines.push(
      `| agents, during rollouts | ${entry.agents} | – | – | ${entry.agentCpuMsPerApply} ms CPU per agent per rollout (all workers) |`,
    );
  }
  if (results.agentProcess) {
    const agent = results.agentProcess;
    lines.push(
      `| one agent process, idle | 1 | ${agent.rssMiB} | ${agent.idleCpuPercent} | over ${agent.idleWindowMs / 1000} s, from ${agent.settlingWindowMs / 1000} s after it was in sync |`,
    );
    lines.push(
      `| one agent process, settling | 1 | – | ${agent.settlingCpuPercent} | first ${agent.settlingWindowMs / 1000} s after it was in sync (start-up GC) |`,
    );
  }
  lines.push('', '| target | limit | measured | met |', '| --- | --- | --- | --- |');
  for (const check of results.targets)
    lines.push(
      `| ${check.target} | ${check.limit} | ${check.measured} | ${check.met ? 'yes' : '**no**'} |`,
    );
  if (results.skipped.length > 0) {
    lines.push('', 'Skipped:');
    for (const skipped of results.skipped) lines.push(`- ${skipped.peer}: ${skipped.reason}`);
  }
  return lines.join('\n');
}

/** Prints the change of every p50 and footprint figure against an earlier results.json. */
export function formatComparison(current: BenchResults, previous: BenchResults): string {
  const lines = [`compared with the run of ${previous.startedAt}:`];
  const delta = (
    label: string,
    now: number | undefined,
    before: number | undefined,
    unit: string,
  ) => {
    if (now === undefined || before === undefined) return;
    const change = before === 0 ? 0 : ((now - before) / before) * 100;
    lines.push(
      `  ${label}: ${before} → ${now} ${unit} (${change >= 0 ? '+' : ''}${change.toFixed(1)} %)`,
    );
  };
  for (const entry of current.detection) {
    delta(
      `detection p50, ${describeSettle(entry)}`,
      entry.detection.p50Ms,
      previous.detection.find((old) => old.settleMs === entry.settleMs)?.detection.p50Ms,
      'ms',
    );
  }
  for (const entry of current.propagation) {
    const old = previous.propagation.find(
      (candidate) => candidate.agents === entry.agents && candidate.nodeFolders !== 'tmpfs',
    );
    if (entry.nodeFolders === 'tmpfs') continue;
    delta(
      `propagation p50, N=${entry.agents}`,
      entry.propagation.p50Ms,
      old?.propagation.p50Ms,
      'ms',
    );
    delta(
      `server idle RSS, N=${entry.agents}`,
      entry.server.idleRssMiB,
      old?.server.idleRssMiB,
      'MiB',
    );
  }
  for (const peer of current.peers) {
    const old = previous.peers.find(
      (candidate) => candidate.peer === peer.peer && candidate.agents === peer.agents,
    );
    delta(`${peer.peer} p50, N=${peer.agents}`, peer.time.p50Ms, old?.time.p50Ms, 'ms');
  }
  delta('agent process RSS', current.agentProcess?.rssMiB, previous.agentProcess?.rssMiB, 'MiB');
  return lines.join('\n');
}
