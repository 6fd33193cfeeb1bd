#!/usr/bin/env node
import { Command } from 'commander';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderChart } from './chart';
import { describeMachine } from './machine';
import { runAnsible } from './peers/ansible';
import { ensurePeers } from './peers/install-peers';
import { runLsyncd } from './peers/lsyncd';
import { runMd5Poll } from './peers/md5-poll';
import type { PeerResult, SkippedPeer } from './peers/peer';
import { formatComparison, formatTable } from './report';
import { checkTargets, type BenchResults } from './results';
import { measureAgentProcess, type AgentFootprint } from './scenarios/agent-footprint';
import { runDetection, type DetectionResult } from './scenarios/detection';
import { runPropagation, type PropagationResult } from './scenarios/propagation';
import { runSwarm, swarmSkipReason, type SwarmResult } from './scenarios/swarm';
import { round } from './stats';

/**
 * `npm run bench`: certsync's detection, propagation and footprint on loopback, then the peers
 * (md5 poll loop, lsyncd+rsync, Ansible copy) on the same machine in the same run. Prints a table
 * and writes bench/results/<timestamp>/{results.json,chart.svg,table.md}.
 */
/**
 * The single settle window certsync had before the two-stage intake; a config that still sets
 * it gets the old detection time, measured for comparison.
 */
const OLD_SETTLE_MS = 500;

const numbers = (value: string) => value.split(',').filter(Boolean).map(Number);

async function main(): Promise<void> {
  const program = new Command('bench')
    .option('--agents <list>', 'agent counts for propagation and footprint', '10,100,1000')
    .option('--peer-agents <list>', 'agent counts for the peer comparison', '10,100')
    .option(
      '--settle-ms <ms>',
      "settleMs for the propagation runs and one more detection run (default: the server's own)",
    )
    .option('--detection-renewals <n>', 'renewals per detection run', '25')
    .option('--rollouts <n>', 'rollouts per N (N=1000 does half)', '15')
    .option('--peer-renewals <n>', 'renewals per md5/lsyncd peer run', '5')
    .option('--ansible-runs <n>', 'ansible-playbook runs per N', '1')
    .option(
      '--tmpfs-agents <list>',
      'agent counts to run again with node folders on tmpfs',
      '100,1000',
    )
    .option('--no-peers', 'skip the peer tools')
    .option(
      '--no-swarm',
      'skip the swarm scenarios (the e2e swarm: needs root, dockerd, pebble, certbot)',
    )
    .option(
      '--swarm-runs <n>',
      'renewals, secret rotations and bare force-updates each on the swarm',
      '3',
    )
    .option('--only <list>', 'run only these parts: detection,propagation,peers,swarm')
    .option('--quick', 'a short smoke run: N=10,100, few renewals, no N=1000')
    .option('--compare <file>', 'print deltas against an earlier results.json')
    .option('--results-dir <dir>', 'where results go', path.join(process.cwd(), 'bench', 'results'))
    .option('--keep', 'keep the temp folder')
    .option(
      '--profile <dir>',
      'write V8 CPU profiles of the server and the agent workers into <dir>/server, <dir>/agents',
    )
    .parse();
  const options = program.opts<{
    agents: string;
    tmpfsAgents: string;
    peerAgents: string;
    settleMs?: string;
    detectionRenewals: string;
    rollouts: string;
    peerRenewals: string;
    ansibleRuns: string;
    peers: boolean;
    swarm: boolean;
    swarmRuns: string;
    only?: string;
    quick?: boolean;
    compare?: string;
    resultsDir: string;
    keep?: boolean;
    profile?: string;
  }>();
  const quick = options.quick === true;
  if (options.profile) process.env['CERTSYNC_BENCH_PROFILE_DIR'] = path.resolve(options.profile);
  const agentCounts = quick ? [10, 100] : numbers(options.agents);
  const peerCounts = numbers(options.peerAgents);
  const settleMs = options.settleMs === undefined ? undefined : Number(options.settleMs);
  const renewals = quick ? 8 : Number(options.detectionRenewals);
  const rollouts = quick ? 5 : Number(options.rollouts);
  const peerRenewals = quick ? 3 : Number(options.peerRenewals);

  const only = options.only
    ? new Set(options.only.split(',').map((part) => part.trim()))
    : undefined;
  const wanted = (part: 'detection' | 'propagation' | 'peers' | 'swarm') =>
    only === undefined || only.has(part);
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const started = new Date();
  const workRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-bench-'));
  const machine = describeMachine();
  say(
    `certsync bench on ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryMiB} MiB, Node ${machine.node}; work dir ${workRoot}`,
  );
  const step = async <T>(name: string, run: (dir: string) => Promise<T>): Promise<T> => {
    const dir = path.join(workRoot, name);
    await fs.mkdir(dir, { recursive: true });
    const begin = Date.now();
    say(`- ${name} …`);
    const result = await run(dir);
    say(`  done in ${round((Date.now() - begin) / 1000)} s`);
    return result;
  };

  try {
    const detection: DetectionResult[] = [];
    // The defaults first (what a deployment gets), then the old single window for comparison.
    const detectionSettles = [undefined, ...new Set([OLD_SETTLE_MS, settleMs])].filter(
      (settle, index) => index === 0 || settle !== undefined,
    );
    for (const settle of wanted('detection') ? detectionSettles : []) {
      detection.push(
        await step(`detection-settle-${settle ?? 'default'}`, (dir) =>
          runDetection(dir, settle, renewals),
        ),
      );
    }

    const propagation: PropagationResult[] = [];
    let agentProcess: AgentFootprint | undefined;
    for (const agents of wanted('propagation') ? agentCounts : []) {
      const count = agents >= 1000 ? Math.max(3, Math.ceil(rollouts / 2)) : rollouts;
      propagation.push(
        await step(`propagation-${agents}`, (dir) =>
          runPropagation({
            workDir: dir,
            agents,
            rollouts: count,
            settleMs,
            whileRunning:
              agentProcess === undefined
                ? async (server) => {
                    agentProcess = await measureAgentProcess(server, dir, agents);
                  }
                : undefined,
          }),
        ),
      );
    }

    const tmpfsCounts = quick || !wanted('propagation') ? [] : numbers(options.tmpfsAgents);
    for (const agents of tmpfsCounts) {
      const count = Math.max(3, Math.ceil(rollouts / 2));
      propagation.push(
        await step(`propagation-${agents}-tmpfs`, (dir) =>
          runPropagation({ workDir: dir, agents, rollouts: count, settleMs, tmpfsNodes: true }),
        ),
      );
    }

    const peers: PeerResult[] = [];
    const skipped: SkippedPeer[] = [];
    if (options.peers && wanted('peers')) {
      const missing = ensurePeers(say);
      for (const agents of peerCounts) {
        const certsync = propagation.find(
          (entry) => entry.agents === agents && entry.nodeFolders === 'disk',
        );
        const withRatio = (peer: PeerResult): PeerResult =>
          certsync && peer.time.count > 0
            ? {
                ...peer,
                certsyncP50Ms: certsync.swapToAll.p50Ms,
                ratio: round(peer.time.p50Ms / certsync.swapToAll.p50Ms),
              }
            : peer;
        peers.push(
          withRatio(
            await step(`md5-poll-${agents}`, (dir) => runMd5Poll(dir, agents, peerRenewals)),
          ),
        );
        const lsyncdMissing = missing.get('lsyncd');
        if (lsyncdMissing)
          skipped.push({ peer: `lsyncd+rsync N=${agents}`, reason: lsyncdMissing });
        else
          peers.push(
            withRatio(
              await step(`lsyncd-${agents}`, (dir) => runLsyncd(dir, agents, peerRenewals)),
            ),
          );
        const ansibleMissing = missing.get('ansible-playbook');
        if (ansibleMissing) skipped.push({ peer: `ansible N=${agents}`, reason: ansibleMissing });
        else
          peers.push(
            withRatio(
              await step(`ansible-${agents}`, (dir) =>
                runAnsible(dir, agents, Number(options.ansibleRuns), 5),
              ),
            ),
          );
      }
    } else {
      skipped.push({ peer: 'all peers', reason: options.peers ? '--only' : '--no-peers' });
    }
    let swarm: SwarmResult | undefined;
    const swarmName =
      'swarm scenarios (secret rotation vs force-update rollout; end-to-end with phases vs bare force-update)';
    const swarmSkip = !options.swarm
      ? '--no-swarm'
      : !wanted('swarm')
        ? '--only'
        : swarmSkipReason();
    if (swarmSkip) {
      say(`- swarm scenarios skipped: ${swarmSkip}`);
      skipped.push({ peer: swarmName, reason: swarmSkip });
    } else {
      const runs = quick ? 2 : Number(options.swarmRuns);
      swarm = await step('swarm', () => runSwarm({ repetitions: runs, say }));
    }

    const partial = {
      startedAt: started.toISOString(),
      durationS: round((Date.now() - started.getTime()) / 1000),
      machine,
      detection,
      propagation,
      ...(agentProcess ? { agentProcess } : {}),
      peers,
      ...(swarm ? { swarm } : {}),
      skipped,
    };
    const results: BenchResults = { ...partial, targets: checkTargets(partial) };
    const outDir = path.join(options.resultsDir, started.toISOString().replace(/[:.]/g, '-'));
    await fs.mkdir(outDir, { recursive: true });
    const table = formatTable(results);
    await fs.writeFile(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    await fs.writeFile(path.join(outDir, 'chart.svg'), renderChart(results));
    await fs.writeFile(path.join(outDir, 'table.md'), `${table}\n`);
    say('');
    say(table);
    say(`\nresults: ${outDir} (results.json, chart.svg, table.md); took ${results.durationS} s`);
    if (options.compare) {
      const previous = JSON.parse(await fs.readFile(options.compare, 'utf8')) as BenchResults;
      say(formatComparison(results, previous));
    }
  } finally {
    if (!options.keep) await fs.rm(workRoot, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
