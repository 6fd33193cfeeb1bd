import { existsSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';

import { checkTools } from '../../test/support/tools';
import { readHistory, readStatus } from '../../test/e2e/support/certsync-admin';
import {
  E2E_IMAGES,
  LINEAGE,
  STACK_NETWORK,
  VAULT_SERVICE,
  startCertsyncSwarm,
  writeE2eConfig,
  type CertsyncSwarm,
} from '../../test/e2e/support/certsync-swarm';
import { createLayout } from '../../test/e2e/support/layout';
import { PhaseTimer } from '../../test/e2e/support/phase-timer';
import {
  BUNDLE,
  waitForRolloutDone,
  waitForStatus,
  servedFingerprint,
} from '../../test/e2e/support/rollout-checks';
import { acquireRunLock } from '../../test/e2e/support/run-lock';
import {
  inspectServiceUpdate,
  listServiceTasks,
  runningTasks,
  waitForRunningTasks,
  waitUntil,
} from '../../test/e2e/support/swarm';
import { round, summarize, type DurationSummary } from '../stats';

/**
 * The swarm scenarios on the e2e's real three-node swarm (startCertsyncSwarm: the stack from
 * deploy/docker-stack.yml, real certbot against pebble, the Vault stand-ins):
 * 1. a certsync renewal (certbot renew → rollout done: distribute to every node, force-update
 *    iklimco_vault, unseal and prove) against a Swarm-native secret rotation (`service update
 *    --secret-rm/--secret-add`) of a second Vault stand-in service that reads its files from secrets;
 * 2. the renewal split into detection / propagation / reload / proof from the server's own record,
 *    against a bare `docker service update --force iklimco_vault`.
 */

/** The comparison service for the Swarm-native rotation: the Vault stand-in image, TLS from secrets. */
export const SECRET_SERVICE = 'bench_secret_vault';
const SECRET_TARGETS = { cert: 'vault.crt', key: 'vault.key' } as const;
const LOCK_TIMEOUT_MS = 15 * 60_000;
const CONVERGE_TIMEOUT_MS = 60_000;

export interface SwarmRenewalRun {
  /**
   * The renewal's end — certbot's last link swap, `live/NAME/fullchain.pem`'s mtime — → rollout
   * `done` (the server's done transition).
   */
  readonly endToEndMs: number;
  /** certbot's last link swap → version accepted (rollout startedAt). */
  readonly detectionMs: number;
  /**
   * certbot's exit → version accepted; negative when the server accepted the version before
   * certbot exited (it saves its renewal config and runs hooks after the swap).
   */
  readonly detectionFromCertbotExitMs: number;
  /** accepted → converged (every node confirmed). */
  readonly propagationMs: number;
  /** converged → reloading (the tracker's own hand-over). */
  readonly handoverMs: number;
  /** reloading → reload record finished (docker service update --force until completed). */
  readonly reloadMs: number;
  /** proof start → proof finish (unseal + TLS check of every replica). */
  readonly proofMs: number;
  /** proof finish → done. */
  readonly tailMs: number;
  /** certbot renew itself (not part of the end-to-end). */
  readonly certbotMs: number;
}

export interface SwarmUpdateRun {
  /** Our command start → Docker's UpdateStatus.CompletedAt. */
  readonly totalMs: number;
  /** Docker's UpdateStatus.StartedAt → CompletedAt. */
  readonly dockerMs: number;
  /** For the secret rotation: the two `docker secret create` calls before the update. */
  readonly secretCreateMs?: number;
}

export interface SwarmResult {
  readonly bringUpS: number;
  readonly phases: string[];
  readonly renewals: SwarmRenewalRun[];
  readonly secretRotations: SwarmUpdateRun[];
  readonly bareForceUpdates: SwarmUpdateRun[];
  readonly summary: {
    readonly endToEnd: DurationSummary;
    readonly detection: DurationSummary;
    readonly propagation: DurationSummary;
    readonly reload: DurationSummary;
    readonly proof: DurationSummary;
    readonly secretRotation: DurationSummary;
    readonly secretRotationWithCreate: DurationSummary;
    readonly bareForceUpdate: DurationSummary;
    /** certsync end-to-end p50 / secret rotation (create + update) p50. */
    readonly renewalVsSecretRotation: number;
    /** certsync end-to-end p50 / bare force-update p50 (the 1.2× target). */
    readonly endToEndVsBare: number;
    /** certsync reload p50 / bare force-update p50. */
    readonly reloadVsBare: number;
  };
  readonly secretRotationServes?: string;
  readonly notes: string[];
}

const TOOLS = [
  'dockerd',
  'docker',
  'ip',
  'iptables',
  'nsenter',
  'unshare',
  'busybox',
  'pebble',
  'certbot',
];

/** Why the swarm scenarios cannot run here, or undefined. */
export function swarmSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, dockerd), as the swarm e2e';
  const tools = checkTools(TOOLS);
  return tools.skip === false ? undefined : tools.skip;
}

export async function runSwarm(options: {
  repetitions: number;
  say: (line: string) => void;
}): Promise<SwarmResult> {
  const { repetitions, say } = options;
  const projectRoot = findProjectRoot();
  const layout = createLayout();
  const timer = new PhaseTimer();
  const began = Date.now();
  const release = await timer.time('wait for other e2e runs', () =>
    acquireRunLock(layout.baseDir, LOCK_TIMEOUT_MS, (pid) =>
      say(`  another e2e run (pid ${pid}) holds the host; waiting`),
    ),
  );
  let swarm: CertsyncSwarm | undefined;
  try {
    swarm = await startCertsyncSwarm(layout, projectRoot, timer);
    const configPath = await writeE2eConfig(projectRoot, layout.runDir, CONVERGE_TIMEOUT_MS);
    await timer.time('stack deploy + stand-in services', async () => {
      await swarm!.deployStack(configPath);
      await swarm!.createStandInServices();
      await createSecretService(swarm!);
    });
    await timer.time('agents connected + v1 done', async () => {
      await waitForRunningTasks(swarm!.manager, 'certsync_agent', 3);
      await waitForStatus(
        swarm!,
        'all 3 agents connected',
        (s) => s.nodes.filter((node) => node.connected).length === 3,
      );
      await waitForRolloutDone(swarm!, 1);
      await waitForRunningTasks(swarm!.manager, SECRET_SERVICE, 2);
    });
    const bringUpS = round((Date.now() - began) / 1000);
    say(`  swarm up in ${bringUpS} s`);

    const renewals: SwarmRenewalRun[] = [];
    const secretRotations: SwarmUpdateRun[] = [];
    const bareForceUpdates: SwarmUpdateRun[] = [];
    const notes: string[] = [];
    let secretGeneration = 0;
    for (let i = 0; i < repetitions; i += 1) {
      const renewal = await timeRenewal(swarm);
      renewals.push(renewal);
      say(
        `  renewal ${i + 1}: end-to-end ${renewal.endToEndMs} ms (detection ${renewal.detectionMs}, propagation ${renewal.propagationMs}, reload ${renewal.reloadMs}, proof ${renewal.proofMs})`,
      );

      secretGeneration += 1;
      const rotation = await timeSecretRotation(swarm, secretGeneration);
      secretRotations.push(rotation);
      say(
        `  secret rotation ${i + 1}: ${rotation.totalMs} ms update (+ ${rotation.secretCreateMs} ms secret create)`,
      );

      const bare = await timeUpdate(swarm, VAULT_SERVICE, ['--force']);
      bareForceUpdates.push(bare);
      say(`  bare force-update ${i + 1}: ${bare.totalMs} ms`);
    }

    let secretRotationServes: string | undefined;
    try {
      const leaf = (await readStatus(swarm.manager)).bundles.find(
        (bundle) => bundle.name === BUNDLE,
      )?.leafFingerprintSha256;
      const tasks = runningTasks(await listServiceTasks(swarm.manager, SECRET_SERVICE));
      const served = await Promise.all(tasks.map((task) => servedFingerprint(swarm!, task)));
      secretRotationServes = served.every((fingerprint) => fingerprint === leaf)
        ? `all ${tasks.length} replicas of ${SECRET_SERVICE} serve the current leaf (checked after timing)`
        : `**${SECRET_SERVICE} does not serve the current leaf**: ${served.join(', ')}`;
    } catch (error) {
      secretRotationServes = `check failed: ${error instanceof Error ? error.message : String(error)}`;
    }

    const p50 = (values: number[]) => summarize(values).p50Ms;
    const endToEnd = renewals.map((run) => run.endToEndMs);
    const rotationWithCreate = secretRotations.map(
      (run) => run.totalMs + (run.secretCreateMs ?? 0),
    );
    const bare = bareForceUpdates.map((run) => run.totalMs);
    const reload = renewals.map((run) => run.reloadMs);
    if (renewals.some((run) => run.detectionFromCertbotExitMs < 0))
      notes.push(
        'certsync accepted the version before certbot exited (certbot saves its renewal config after swapping the links); the swarm figures start at the last link swap',
      );
    return {
      bringUpS,
      phases: timer.lines(),
      renewals,
      secretRotations,
      bareForceUpdates,
      summary: {
        endToEnd: summarize(endToEnd),
        detection: summarize(renewals.map((run) => run.detectionMs)),
        propagation: summarize(renewals.map((run) => run.propagationMs)),
        reload: summarize(reload),
        proof: summarize(renewals.map((run) => run.proofMs)),
        secretRotation: summarize(secretRotations.map((run) => run.totalMs)),
        secretRotationWithCreate: summarize(rotationWithCreate),
        bareForceUpdate: summarize(bare),
        renewalVsSecretRotation: round(p50(endToEnd) / p50(rotationWithCreate), 2),
        endToEndVsBare: round(p50(endToEnd) / p50(bare), 2),
        reloadVsBare: round(p50(reload) / p50(bare), 2),
      },
      secretRotationServes,
      notes,
    };
  } finally {
    try {
      if (swarm) await swarm.stop({ keepRunDir: false });
    } finally {
      await release();
    }
  }
}

/** One `certbot renew --force-renewal` of iklim.co, then the rollout it starts, read back from history. */
async function timeRenewal(swarm: CertsyncSwarm): Promise<SwarmRenewalRun> {
  const status = await readStatus(swarm.manager);
  const before = status.bundles.find((bundle) => bundle.name === BUNDLE)?.currentVersion ?? 0;
  const version = Number(before) + 1;
  const certbotStart = Date.now();
  await swarm.certbot.renew(LINEAGE);
  const renewEnd = Date.now();
  const swapAt = (await lstat(path.join(swarm.liveDir, 'fullchain.pem'))).mtimeMs;
  await waitForRolloutDone(swarm, version);
  const entry = (await readHistory(swarm.manager, BUNDLE)).find(
    (rollout) => Number(rollout.version) === version,
  );
  if (!entry) throw new Error(`version ${version} not in certsyncctl history`);
  const at = (iso: string | undefined, what: string) => {
    const ms = Date.parse(iso ?? '');
    if (Number.isNaN(ms)) throw new Error(`version ${version}: no timestamp for ${what}`);
    return ms;
  };
  const transition = (to: string) =>
    at(entry.transitions.find((item) => item.to === to)?.at, `transition to ${to}`);
  const accepted = at(entry.startedAt, 'accepted (startedAt)');
  const converged = transition('converged');
  const reloading = transition('reloading');
  const done = transition('done');
  const reload = entry.reloads.find((record) => record.service === VAULT_SERVICE);
  if (!reload?.ok)
    throw new Error(`version ${version}: reload of ${VAULT_SERVICE} not ok: ${reload?.error}`);
  const proofStart = at(reload.proof?.startedAt, 'proof start');
  const proofEnd = at(reload.proof?.finishedAt, 'proof finish');
  // The reload record's finishedAt may be set after the proof; the reload proper ends where the proof starts.
  const reloadEnd = Math.min(at(reload.finishedAt, 'reload finish'), proofStart);
  return {
    endToEndMs: Math.round(done - swapAt),
    detectionMs: Math.round(accepted - swapAt),
    detectionFromCertbotExitMs: accepted - renewEnd,
    propagationMs: converged - accepted,
    handoverMs: reloading - converged,
    reloadMs: reloadEnd - reloading,
    proofMs: proofEnd - proofStart,
    tailMs: done - proofEnd,
    certbotMs: renewEnd - certbotStart,
  };
}

/** The comparison service: the Vault stand-in, two replicas, TLS files from Docker secrets, not sealed. */
async function createSecretService(swarm: CertsyncSwarm): Promise<void> {
  await createSecrets(swarm, 0);
  await swarm.manager.docker([
    'service',
    'create',
    '--detach',
    '--no-resolve-image',
    '--name',
    SECRET_SERVICE,
    '--replicas',
    '2',
    '--env',
    'VAULT_TLS_DIR=/run/secrets',
    '--env',
    `VAULT_TLS_CERT_NAME=${SECRET_TARGETS.cert}`,
    '--env',
    `VAULT_TLS_KEY_NAME=${SECRET_TARGETS.key}`,
    '--secret',
    `source=${secretName('cert', 0)},target=${SECRET_TARGETS.cert}`,
    '--secret',
    `source=${secretName('key', 0)},target=${SECRET_TARGETS.key}`,
    '--endpoint-mode',
    'dnsrr',
    '--network',
    STACK_NETWORK,
    // As the stand-ins of createStandInServices, so both updates pay the same Docker settings.
    '--stop-grace-period',
    '5s',
    '--update-monitor',
    '2s',
    E2E_IMAGES.vault,
  ]);
}

const secretName = (kind: 'cert' | 'key', generation: number) =>
  `bench_vault_${kind}_${generation}`;

async function createSecrets(swarm: CertsyncSwarm, generation: number): Promise<void> {
  await swarm.manager.docker([
    'secret',
    'create',
    secretName('cert', generation),
    path.join(swarm.liveDir, 'fullchain.pem'),
  ]);
  await swarm.manager.docker([
    'secret',
    'create',
    secretName('key', generation),
    path.join(swarm.liveDir, 'privkey.pem'),
  ]);
}

/** Swarm-native rotation: new secrets from certbot's current files, then secret-rm/secret-add in one update. */
async function timeSecretRotation(
  swarm: CertsyncSwarm,
  generation: number,
): Promise<SwarmUpdateRun> {
  const createStart = Date.now();
  await createSecrets(swarm, generation);
  const secretCreateMs = Date.now() - createStart;
  const run = await timeUpdate(swarm, SECRET_SERVICE, [
    '--secret-rm',
    secretName('cert', generation - 1),
    '--secret-add',
    `source=${secretName('cert', generation)},target=${SECRET_TARGETS.cert}`,
    '--secret-rm',
    secretName('key', generation - 1),
    '--secret-add',
    `source=${secretName('key', generation)},target=${SECRET_TARGETS.key}`,
  ]);
  return { ...run, secretCreateMs };
}

/** `docker service update --detach ARGS SERVICE`, then Docker's UpdateStatus completed and the new tasks running. */
async function timeUpdate(
  swarm: CertsyncSwarm,
  service: string,
  args: string[],
): Promise<SwarmUpdateRun> {
  const replicas = runningTasks(await listServiceTasks(swarm.manager, service)).length;
  const start = Date.now();
  await swarm.manager.docker(['service', 'update', '--detach', ...args, service]);
  let update = await inspectServiceUpdate(swarm.manager, service);
  await waitUntil(
    `${service} update completed`,
    180_000,
    async () => {
      update = await inspectServiceUpdate(swarm.manager, service);
      if (update.updateState === 'rollback_completed' || update.updateState === 'paused')
        throw new Error(`${service} update ${update.updateState}`);
      // Docker's clock is the host's (the engines run in namespaces on this host); 1 s of slack for rounding.
      return (
        update.updateState === 'completed' && (update.startedAt?.getTime() ?? 0) >= start - 1_000
      );
    },
    () => update.updateState,
  );
  await waitForRunningTasks(swarm.manager, service, replicas);
  const completed = update.completedAt?.getTime() ?? Date.now();
  return {
    totalMs: completed - start,
    dockerMs: completed - (update.startedAt?.getTime() ?? start),
  };
}

function findProjectRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'Dockerfile.server'))) return dir;
  }
  throw new Error(`no project root (with Dockerfile.server) above ${__dirname}`);
}
