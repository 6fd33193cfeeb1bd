import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

import { PROJECT_ROOT } from '../support/processes';
import { REQUIRE_TOOLS_ENV, checkTools } from '../support/tools';
import { readStatus, runCertsyncctl, type StatusJson } from './support/certsync-admin';
import {
  LINEAGE,
  VAULT_SERVICE,
  writeE2eConfig,
  type CertsyncSwarm,
} from './support/certsync-swarm';
import { killNodeProcesses } from './support/cleanup';
import { startEngine } from './support/docker-engine';
import { assertEveryNodeHoldsLive } from './support/node-files';
import { BUNDLE, describeRollout, type RolloutJson } from './support/rollout-checks';
import { E2E_LOCK_TIMEOUT_MS, startE2eRun } from './support/e2e-run';
import {
  inspectServiceUpdate,
  listServiceTasks,
  runningTasks,
  waitForRunningTasks,
  waitUntil,
  WaitAbandonedError,
  type SwarmMember,
} from './support/swarm';

// certsync's server on a swarm of three managers with its state in the swarm's own replicated
// store (stateStore: swarm, deploy/docker-stack.ha.yml): a second server task started by hand
// waits for the lease and does nothing; the manager running the server is killed mid-rollout,
// Swarm starts the server on another manager, and the rollout finishes there — Vault reloaded
// exactly once, every node on the new version.

const tools = checkTools([
  'dockerd',
  'docker',
  'ip',
  'iptables',
  'nsenter',
  'unshare',
  'busybox',
  'pebble',
  'certbot',
]);
const isRoot = process.getuid?.() === 0;
const mustRun = process.env[REQUIRE_TOOLS_ENV] === '1';
const skip = !isRoot && !mustRun ? 'needs root (network namespaces, dockerd)' : tools.skip;

const SUITE_TIMEOUT_MS = E2E_LOCK_TIMEOUT_MS + 20 * 60_000;
/** Short, so a successor does not wait long for the lease of a killed server. */
const LEASE_TTL_MS = 6_000;
const SERVER_SERVICE = 'certsync_server';
const STATE_KEY_SECRET = 'certsync_state_key';
const WAITING_FOR_LEASE =
  'Waiting for the lease held by another server; not distributing or reloading';

test(
  'certsync survives losing the manager that runs its server',
  { skip, timeout: SUITE_TIMEOUT_MS },
  async (t) => {
    if (!isRoot)
      throw new Error(
        `needs root (network namespaces, dockerd); ${REQUIRE_TOOLS_ENV}=1 forbids skipping`,
      );
    tools.require();
    const projectRoot = PROJECT_ROOT;
    const { swarm, layout, timer } = await startE2eRun(t, projectRoot, { managerCount: 3 });
    /** Members whose engine is alive; the killed manager leaves it. */
    const alive = new Set<SwarmMember>(swarm.members);
    let reloads = 0;

    await t.test(
      'the stack deploys with the swarm state store on three managers; version 1 is rolled out',
      async () => {
        assert.deepEqual(
          swarm.members.map((member) => member.spec.role),
          ['manager', 'manager', 'manager'],
        );
        const configPath = await writeFailoverConfig(projectRoot, layout.runDir);
        await timer.time('stack deploy (HA overlay) + stand-ins', async () => {
          await swarm.deployStack(configPath, {
            overlayFiles: ['deploy/docker-stack.ha.yml'],
            secrets: [[STATE_KEY_SECRET, `${randomBytes(32).toString('hex')}\n`]],
          });
          await swarm.createStandInServices();
        });
        await timer.time('server + 3 agents running', async () => {
          await waitForRunningTasks(swarm.manager, SERVER_SERVICE, 1);
          await waitForRunningTasks(swarm.manager, 'certsync_agent', 3);
        });
        const rollout = await timer.time('v1 done', () =>
          waitForRollout(
            swarm,
            alive,
            'version 1 done',
            (r) => r.version === 1 && r.state === 'done',
          ),
        );
        reloads += 1;
        const [firstServer] = await waitForRunningTasks(swarm.manager, SERVER_SERVICE, 1);
        assert.ok(
          rollout.transitions.every((transition) =>
            transition.detail.includes(`[server certsync_server.1.${firstServer!.id}]`),
          ),
          'every transition names the server task that made it (the lease holder)',
        );
        assert.equal(
          (await inspectServiceUpdate(swarm.manager, VAULT_SERVICE)).forceUpdate,
          reloads,
        );
        const versions = await swarm.manager.dockerJson<
          Array<{ Spec: { Name: string; Data: string; Labels: Record<string, string> } }>
        >(['config', 'inspect', `certsync-${BUNDLE}-v000001`]);
        assert.equal(
          versions[0]?.Spec.Labels['io.certsync.version'],
          '1',
          'version 1 is a swarm config',
        );
        const keyBytes = await readFile(path.join(swarm.liveDir, 'privkey.pem'));
        assert.equal(
          Buffer.from(versions[0]?.Spec.Data ?? '', 'base64').includes(keyBytes.subarray(40, 80)),
          false,
          'the private key is not in the swarm config in clear',
        );
        t.diagnostic(describeRollout(rollout));
      },
    );

    await t.test(
      'a second server task started by hand waits for the lease and neither distributes nor reloads',
      async () => {
        const [first] = await waitForRunningTasks(swarm.manager, SERVER_SERVICE, 1);
        assert.ok(first);
        const holderBefore = await leaseHolder(swarm.manager);
        const updateBefore = await inspectServiceUpdate(swarm.manager, VAULT_SERVICE);
        const historyBefore = (
          await waitForRollout(swarm, alive, 'the current rollout', () => true)
        ).transitions.length;

        await swarm.manager.docker(['service', 'scale', '--detach', `${SERVER_SERVICE}=2`]);
        const both = await timer.time('second server task running', () =>
          waitForRunningTasks(swarm.manager, SERVER_SERVICE, 2),
        );
        const second = both.find((task) => task.id !== first.id);
        assert.ok(second?.containerId);
        const secondEngine = engineOfNode(swarm, second.nodeId);
        await waitUntil('the second server to say it waits for the lease', 60_000, async () =>
          (await containerLog(secondEngine, second.containerId!)).includes(WAITING_FOR_LEASE),
        );
        // Give it time to do something wrong, then check it did nothing.
        await sleep(3 * LEASE_TTL_MS);
        const log = await containerLog(secondEngine, second.containerId);
        assert.ok(
          !log.includes('certsync-server started'),
          'the second server never started serving',
        );
        assert.ok(!log.includes('Rollout started'), 'the second server started no rollout');
        assert.equal(
          await leaseHolder(swarm.manager),
          holderBefore,
          'the first server keeps the lease',
        );
        assert.deepEqual(
          await inspectServiceUpdate(swarm.manager, VAULT_SERVICE),
          updateBefore,
          'no reload meanwhile',
        );
        const after = await waitForRollout(swarm, alive, 'the current rollout', () => true);
        assert.equal(after.transitions.length, historyBefore, 'no rollout transition meanwhile');

        await swarm.manager.docker(['service', 'scale', '--detach', `${SERVER_SERVICE}=1`]);
        await timer.time('back to one server task', () =>
          waitForRunningTasks(swarm.manager, SERVER_SERVICE, 1),
        );
      },
    );

    await t.test(
      'the manager running the server is killed mid-rollout: the server moves, the rollout finishes, Vault is reloaded once',
      async () => {
        const [server] = await waitForRunningTasks(swarm.manager, SERVER_SERVICE, 1);
        assert.ok(server);
        const doomed = memberOfNode(swarm, server.nodeId);
        const frozen = swarm.members.find((member) => member !== doomed);
        assert.ok(frozen);
        const survivor = swarm.members.find((member) => member !== doomed && member !== frozen);
        assert.ok(survivor);
        // Hold the rollout in `distributing`: one agent (not on the doomed node) is paused.
        const agentTask = runningTasks(
          await listServiceTasks(survivor.engine, 'certsync_agent'),
        ).find((task) => task.nodeId === frozen.nodeId);
        assert.ok(agentTask?.containerId);
        await frozen.engine.docker(['pause', agentTask.containerId]);
        const updateBefore = await inspectServiceUpdate(survivor.engine, VAULT_SERVICE);

        await timer.time('certbot renew --force-renewal', () => swarm.certbot.renew(LINEAGE));
        const before = await timer.time('v2 distributing, one node missing', () =>
          waitForRollout(
            swarm,
            alive,
            'version 2 confirmed by the two unfrozen nodes',
            (r) => r.version === 2 && r.confirmedNodes.length === 2 && r.reloads.length === 0,
          ),
        );
        assert.ok(!before.confirmedNodes.includes(frozen.nodeId));

        const killedAt = Date.now();
        const killed = await killNodeProcesses(doomed.spec.namespace);
        alive.delete(doomed);
        t.diagnostic(
          `killed ${doomed.spec.hostname} (${killed} processes) at ${new Date(killedAt).toISOString()}`,
        );
        await frozen.engine.docker(['unpause', agentTask.containerId]);

        const moved = await timer.time('server rescheduled on another manager', async () => {
          let task;
          await waitUntil('a server task running on a surviving manager', 180_000, async () => {
            task = runningTasks(await listServiceTasks(survivor.engine, SERVER_SERVICE)).find(
              (candidate) => candidate.nodeId !== doomed.nodeId,
            );
            return task !== undefined;
          });
          return task!;
        });
        assert.notEqual(moved.id, server.id);

        const rollout = await timer.time('v2 done on the new server', () =>
          waitForRollout(
            swarm,
            alive,
            'version 2 done',
            (r) => r.version === 2 && r.state === 'done',
            240_000,
          ),
        );
        reloads += 1;
        const update = await inspectServiceUpdate(survivor.engine, VAULT_SERVICE);
        assert.equal(
          update.forceUpdate,
          updateBefore.forceUpdate + 1,
          'Vault was force-updated exactly once',
        );
        assert.equal(update.forceUpdate, reloads);
        assert.equal(rollout.reloads.length, 1, 'one reload recorded');
        assert.ok(rollout.reloads[0]?.ok, rollout.reloads[0]?.error);

        // One timeline across both servers: started (first server) before the kill, converged and
        // reloaded (second server) after it.
        assert.ok(
          Date.parse(rollout.startedAt ?? '') < killedAt,
          'the rollout began on the first server',
        );
        const converged = rollout.transitions.find((transition) => transition.to === 'converged');
        assert.ok(
          converged && Date.parse(converged.at ?? '') > killedAt,
          'it converged on the second server',
        );
        assert.deepEqual(
          rollout.transitions.map((transition) => transition.to).filter((to) => to !== 'stalled'),
          ['converged', 'reloading', 'done'],
        );
        for (const transition of rollout.transitions)
          assert.ok(
            transition.detail.includes(`.${moved.id}]`),
            `made by the new server: ${transition.detail}`,
          );
        const movedLog = await containerLog(engineOfNode(swarm, moved.nodeId), moved.containerId!);
        assert.ok(movedLog.includes('Lease acquired'), 'the new server took the lease');
        t.diagnostic(describeRollout(rollout));

        const history = await runCertsyncctl(await serverEngine(swarm, alive), ['history', BUNDLE]);
        assert.equal(history.code, 0, history.stderr);
        assert.match(history.stdout, /rollout of version 2: DONE[^]*converged → reloading/);
        assert.match(
          history.stdout,
          /rollout of version 1: DONE/,
          'history of the first server is kept',
        );

        await timer.time('killed manager back: its agent catches up', async () => {
          await startEngine({
            name: doomed.spec.namespace,
            dir: layout.engineDir(`n${doomed.spec.index}`),
            node: {
              namespace: doomed.spec.namespace,
              hostname: doomed.spec.hostname,
              sslDir: layout.nodeSslDir(doomed.spec.index),
            },
          });
          alive.add(doomed);
          await waitUntil('every node on version 2', 240_000, async () => {
            const status = await readStatus(await serverEngine(swarm, alive));
            const bundle = status.bundles.find((entry) => entry.name === BUNDLE);
            return (
              bundle?.nodes.length === 3 &&
              bundle.nodes.every((node) => node.appliedVersion === 2 && node.inSync)
            );
          });
        });
        await assertEveryNodeHoldsLive(
          swarm,
          swarm.members.map((member) => member.spec.index),
        );
        assert.equal(
          (await inspectServiceUpdate(survivor.engine, VAULT_SERVICE)).forceUpdate,
          reloads,
          'the returning node caused no second reload',
        );
      },
    );
  },
);

/** deploy/certsync.yml as the e2e uses it, with the swarm state store and a short lease. */
async function writeFailoverConfig(projectRoot: string, runDir: string): Promise<string> {
  const configPath = await writeE2eConfig(projectRoot, runDir, 60_000);
  const config = parseYaml(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  config['stateStore'] = {
    kind: 'swarm',
    keyFile: `/run/secrets/${STATE_KEY_SECRET}`,
    leaseTtlMs: LEASE_TTL_MS,
  };
  await writeFile(configPath, stringifyYaml(config));
  return configPath;
}

function memberOfNode(swarm: CertsyncSwarm, nodeId: string): SwarmMember {
  const member = swarm.members.find((candidate) => candidate.nodeId === nodeId);
  if (!member) throw new Error(`no member for node ${nodeId}`);
  return member;
}

function engineOfNode(swarm: CertsyncSwarm, nodeId: string) {
  return memberOfNode(swarm, nodeId).engine;
}

/** The engine of the node running the server task (certsyncctl is run inside its container). */
async function serverEngine(swarm: CertsyncSwarm, alive: ReadonlySet<SwarmMember>) {
  for (const member of alive) {
    const tasks = await listServiceTasks(member.engine, SERVER_SERVICE).catch(() => undefined);
    if (!tasks) continue;
    const running = runningTasks(tasks).filter((task) =>
      [...alive].some((live) => live.nodeId === task.nodeId),
    );
    for (const task of running) {
      const engine = engineOfNode(swarm, task.nodeId);
      // A standby task has not started its gRPC server; the lease holder answers.
      const probe = await runCertsyncctl(engine, ['--json', 'status'], SERVER_SERVICE).catch(
        () => undefined,
      );
      if (probe && (probe.code === 0 || probe.code === 1)) return engine;
    }
  }
  throw new Error('no running server task answers');
}

async function waitForRollout(
  swarm: CertsyncSwarm,
  alive: ReadonlySet<SwarmMember>,
  what: string,
  predicate: (rollout: RolloutJson) => boolean,
  timeoutMs = 180_000,
): Promise<RolloutJson> {
  let found: RolloutJson | undefined;
  let last = '';
  await waitUntil(
    what,
    timeoutMs,
    async () => {
      const status: StatusJson = await readStatus(await serverEngine(swarm, alive));
      const rollout = status.bundles.find((bundle) => bundle.name === BUNDLE)?.rollout;
      if (!rollout) return false;
      last = describeRollout(rollout);
      if (rollout.state === 'failed') throw new WaitAbandonedError(`rollout failed: ${last}`);
      if (!predicate(rollout)) return false;
      found = rollout;
      return true;
    },
    () => last,
  );
  return found!;
}

async function leaseHolder(engine: CertsyncSwarm['manager']): Promise<string> {
  const [lease] = await engine.dockerJson<Array<{ Spec: { Labels: Record<string, string> } }>>([
    'config',
    'inspect',
    'certsync-lease',
  ]);
  return lease?.Spec.Labels['io.certsync.holder'] ?? '';
}

async function containerLog(
  engine: CertsyncSwarm['manager'],
  containerId: string,
): Promise<string> {
  const result = await engine.docker(['logs', containerId], { allowFailure: true });
  return `${result.stdout}\n${result.stderr}`;
}
