import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import { sha256Hex } from '../../common/digest';
import { REQUIRE_TOOLS_ENV, checkTools } from '../support/tools';
import { readStatus, type StatusJson } from './support/certsync-admin';
import { E2E_IMAGES, LINEAGE, VAULT_SERVICE, startCertsyncSwarm, writeE2eConfig, type CertsyncSwarm } from './support/certsync-swarm';
import { createLayout } from './support/layout';
import { PhaseTimer } from './support/phase-timer';
import { probeVault, type VaultProbe } from './support/vault-probe';
import { inspectServiceUpdate, listServiceTasks, runningTasks, waitForRunningTasks, waitUntil, type ServiceTask } from './support/swarm';

// certsync on a real three-node Docker Swarm: the images built from the real Dockerfiles, the
// stack deployed from deploy/docker-stack.yml unchanged, a real certbot renewing against pebble
// on the host, and every claim checked against what is on disk and what Docker itself reports.

const tools = checkTools(['dockerd', 'docker', 'ip', 'iptables', 'nsenter', 'unshare', 'busybox', 'pebble', 'certbot']);
const isRoot = process.getuid?.() === 0;
const mustRun = process.env[REQUIRE_TOOLS_ENV] === '1';
const skip = !isRoot && !mustRun ? 'needs root (network namespaces, dockerd)' : tools.skip;

const BUNDLE = 'iklim-co';
const CONVERGE_TIMEOUT_MS = 25_000;
/** The files deploy/certsync.yml writes, with the live/ file each comes from and its mode. */
const TARGETS = [
  { live: 'fullchain.pem', target: 'STAR.iklim.co.full.crt', mode: 0o644 },
  { live: 'privkey.pem', target: 'STAR.iklim.co_key.pem', mode: 0o600 },
] as const;
const SUITE_TIMEOUT_MS = 15 * 60_000;

type RolloutJson = NonNullable<StatusJson['bundles'][number]['rollout']>;

test('certsync on a three-node Docker Swarm', { skip, timeout: SUITE_TIMEOUT_MS }, async (t) => {
  if (!isRoot) throw new Error(`needs root (network namespaces, dockerd); ${REQUIRE_TOOLS_ENV}=1 forbids skipping`);
  tools.require();
  const projectRoot = findProjectRoot();
  const layout = createLayout();
  const timer = new PhaseTimer();
  const keepRunDir = process.env['CERTSYNC_KEEP_TEST_DIRS'] === '1';

  const swarm = await startCertsyncSwarm(layout, projectRoot, timer);
  t.after(async () => {
    await timer.time('teardown', () => swarm.stop({ keepRunDir }));
    for (const line of timer.lines()) t.diagnostic(`e2e phase  ${line}`);
    if (keepRunDir) t.diagnostic(`e2e folders kept in ${layout.runDir}`);
  });
  const [manager] = swarm.members;
  assert.ok(manager);
  let doneReloads = 0;

  await t.test('the images come from the real Dockerfiles and reach every node', async () => {
    const builtIds = await imageIds(swarm.builder);
    for (const member of swarm.members) assert.deepEqual(await imageIds(member.engine), builtIds, `images on ${member.spec.hostname}`);

    for (const [role, entry] of [['server', 'server'], ['agent', 'agent']] as const) {
      const [config] = await swarm.builder.dockerJson<Array<{ Config: { User: string; Entrypoint: string[] } }>>(['image', 'inspect', E2E_IMAGES[role]]);
      assert.equal(config?.Config.User, 'node', `${role} image default user`);
      assert.deepEqual(config?.Config.Entrypoint, ['node', `/app/dist/${entry}/main.js`]);
    }
    const ctl = await swarm.builder.docker(['run', '--rm', '--network=none', '--entrypoint=node', E2E_IMAGES.server, '/app/dist/ctl/main.js', '-V']);
    const { version } = JSON.parse(await readFile(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
    assert.equal(ctl.stdout.trim(), version, 'certsyncctl in the server image');
  });

  await t.test('the stack deploys: a server on the manager, an agent on each of the 3 nodes, all connected', async (tt) => {
    const configPath = await writeE2eConfig(projectRoot, layout.runDir, CONVERGE_TIMEOUT_MS);
    await timer.time('stack deploy + Vault stand-in service', async () => {
      await swarm.deployStack(configPath);
      // Right after the stack: the first version cannot converge before its agents have started.
      await swarm.createVaultService();
    });

    const agents = await timer.time('3 agents + server running', async () => {
      const [server] = await waitForRunningTasks(swarm.manager, 'certsync_server', 1);
      assert.equal(server?.nodeId, manager.nodeId, 'the server runs on the manager');
      return waitForRunningTasks(swarm.manager, 'certsync_agent', 3);
    });
    const nodeIds = swarm.members.map((member) => member.nodeId).sort();
    assert.deepEqual(agents.map((task) => task.nodeId).sort(), nodeIds, 'one agent task per node');

    const status = await timer.time('3 agents connected', () =>
      waitForStatus(swarm, 'all 3 agents connected', (s) => s.nodes.filter((node) => node.connected).length === 3),
    );
    assert.deepEqual(status.nodes.map((node) => node.nodeId).sort(), nodeIds, 'agents report their swarm node IDs');
    assert.equal(status.fleetMode, 'swarm');
    tt.diagnostic(`nodes: ${status.nodes.map((node) => `${node.hostname}=${node.nodeId.slice(0, 12)}`).join(', ')}`);
  });

  await t.test('the first certificate reaches every node; Vault is force-updated once, after the last confirmation', async (tt) => {
    const rollout = await timer.time('v1 distributed + Vault reloaded', () => waitForRolloutDone(swarm, 1));
    doneReloads += 1;

    await assertEveryNodeHoldsLive(swarm, swarm.members.map((member) => member.spec.index));
    const status = await readStatus(swarm.manager);
    assertBundleInSync(status, 1);
    const reload = await assertReloadedOnceAfterConvergence(swarm, status, rollout, doneReloads);
    const firstGeneration = firstTaskPerSlot(await listServiceTasks(swarm.manager, VAULT_SERVICE));
    assert.deepEqual([...reload.tasksBefore].sort(), firstGeneration.map((task) => task.id).sort(), 'tasksBefore = the first Vault tasks');
    tt.diagnostic(describeRollout(rollout));
  });

  await t.test('a real certbot renewal reaches every node, then Vault is reloaded once', async (tt) => {
    const vaultBefore = runningTasks(await listServiceTasks(swarm.manager, VAULT_SERVICE));
    await timer.time('certbot renew --force-renewal', () => swarm.certbot.renew(LINEAGE));
    assert.equal(await readLink(swarm.liveDir, 'fullchain.pem'), `../../archive/${LINEAGE}/fullchain2.pem`);

    const rollout = await timer.time('v2 distributed + Vault reloaded', () => waitForRolloutDone(swarm, 2));
    doneReloads += 1;
    await assertEveryNodeHoldsLive(swarm, swarm.members.map((member) => member.spec.index));
    const status = await readStatus(swarm.manager);
    assertBundleInSync(status, 2);
    const reload = await assertReloadedOnceAfterConvergence(swarm, status, rollout, doneReloads);
    assert.deepEqual([...reload.tasksBefore].sort(), vaultBefore.map((task) => task.id).sort(), 'tasksBefore = the tasks running before');
    tt.diagnostic(describeRollout(rollout));
  });

  await t.test('with one agent frozen the rollout stalls, names the node and reloads nothing; unfrozen, it catches up', async (tt) => {
    const frozen = swarm.members[1];
    assert.ok(frozen, 'a worker to freeze');
    const agentTask = runningTasks(await listServiceTasks(swarm.manager, 'certsync_agent')).find((task) => task.nodeId === frozen.nodeId);
    assert.ok(agentTask?.containerId, `the agent task on ${frozen.spec.hostname}`);
    const vaultBefore = runningTasks(await listServiceTasks(swarm.manager, VAULT_SERVICE));
    const updateBefore = await inspectServiceUpdate(swarm.manager, VAULT_SERVICE);
    const frozenBytesBefore = await readTargets(swarm, frozen.spec.index);

    await frozen.engine.docker(['pause', agentTask.containerId]);
    let paused = true;
    tt.after(async () => {
      if (paused) await frozen.engine.docker(['unpause', agentTask.containerId!], { allowFailure: true });
    });
    await timer.time('certbot renew --force-renewal (agent frozen)', () => swarm.certbot.renew(LINEAGE));

    const stalled = await timer.time('v3 stalled', () =>
      waitForRollout(swarm, 'version 3 stalled', (r) => r.version === 3 && r.state === 'stalled', CONVERGE_TIMEOUT_MS + 60_000),
    );
    assert.deepEqual(stalled.missingNodes, [frozen.nodeId], 'the stalled rollout names the frozen node');
    assert.equal(stalled.reloads.length, 0, 'nothing is reloaded while a node is missing');
    const others = swarm.members.filter((member) => member !== frozen).map((member) => member.spec.index);
    await assertEveryNodeHoldsLive(swarm, others);
    assert.deepEqual(await readTargets(swarm, frozen.spec.index), frozenBytesBefore, 'the frozen node still has the previous files');
    assert.deepEqual(await inspectServiceUpdate(swarm.manager, VAULT_SERVICE), updateBefore, 'Docker saw no Vault update');
    assert.deepEqual(runningTasks(await listServiceTasks(swarm.manager, VAULT_SERVICE)).map((task) => task.id), vaultBefore.map((task) => task.id));

    await frozen.engine.docker(['unpause', agentTask.containerId]);
    paused = false;
    const rollout = await timer.time('v3 caught up + Vault reloaded', () => waitForRolloutDone(swarm, 3));
    doneReloads += 1;
    const states = rollout.transitions.map((transition) => `${transition.from}→${transition.to}`);
    assert.ok(states.includes('distributing→stalled') && states.includes('stalled→converged'), `transitions: ${states.join(', ')}`);
    await assertEveryNodeHoldsLive(swarm, swarm.members.map((member) => member.spec.index));
    const status = await readStatus(swarm.manager);
    assertBundleInSync(status, 3);
    await assertReloadedOnceAfterConvergence(swarm, status, rollout, doneReloads);
    tt.diagnostic(describeRollout(rollout));
  });
});

/** Every node's host folder (bound at /opt/iklimco/ssl on that node) holds the live/ bytes, with the configured modes. */
async function assertEveryNodeHoldsLive(swarm: CertsyncSwarm, nodeIndexes: readonly number[]): Promise<void> {
  for (const index of nodeIndexes) {
    for (const { live, target, mode } of TARGETS) {
      const expected = sha256Hex(await readFile(path.join(swarm.liveDir, live)));
      const written = path.join(swarm.layout.nodeSslDir(index), target);
      assert.equal(sha256Hex(await readFile(written)), expected, `node${index}/${target} bytes = live/${live}`);
      assert.equal((await stat(written)).mode & 0o777, mode, `node${index}/${target} mode`);
    }
  }
}

function assertBundleInSync(status: StatusJson, version: number): void {
  const bundle = status.bundles.find((entry) => entry.name === BUNDLE);
  assert.ok(bundle, `bundle ${BUNDLE} in status`);
  assert.equal(bundle.currentVersion, version);
  assert.equal(bundle.nodesExpected, 3);
  assert.equal(bundle.nodesInSync, 3);
  for (const node of bundle.nodes) {
    assert.equal(node.appliedVersion, version, `node ${node.nodeId} applied version`);
    assert.ok(node.inSync, `node ${node.nodeId} in sync`);
  }
}

/**
 * The rollout reloaded Vault exactly once and only after every node had confirmed; Docker's own
 * record agrees (update started inside the reload window, force-update counter = reloads so far),
 * and the tasks certsync reports afterwards are new, running, and one generation per reload.
 */
async function assertReloadedOnceAfterConvergence(swarm: CertsyncSwarm, status: StatusJson, rollout: RolloutJson, reloadsSoFar: number) {
  assert.equal(rollout.reloads.length, 1, 'one reload per accepted version');
  const [reload] = rollout.reloads;
  assert.ok(reload?.ok, `reload ok: ${reload?.error}`);
  assert.equal(reload.service, VAULT_SERVICE);
  assert.equal(reload.action, 'force-update');
  const reloadStarted = Date.parse(reload.startedAt ?? '');
  const reloadFinished = Date.parse(reload.finishedAt ?? '');

  const converged = rollout.transitions.find((transition) => transition.to === 'converged');
  assert.ok(converged, 'the rollout converged');
  assert.ok(Date.parse(converged.at ?? '') <= reloadStarted, 'converged before the reload started');
  assert.deepEqual([...rollout.confirmedNodes].sort(), swarm.members.map((member) => member.nodeId).sort());
  const bundle = status.bundles.find((entry) => entry.name === BUNDLE);
  for (const node of bundle?.nodes ?? []) {
    assert.ok(Date.parse(node.updatedAt ?? '') <= reloadStarted, `node ${node.nodeId} confirmed before the reload`);
  }

  const update = await inspectServiceUpdate(swarm.manager, VAULT_SERVICE);
  assert.equal(update.forceUpdate, reloadsSoFar, 'Docker counted one force-update per accepted version');
  assert.equal(update.updateState, 'completed');
  assert.ok(update.startedAt, 'Docker recorded the update start');
  assert.ok(update.startedAt.getTime() >= reloadStarted && update.startedAt.getTime() <= reloadFinished, 'Docker started the update inside the reload window');

  const tasks = await listServiceTasks(swarm.manager, VAULT_SERVICE);
  const running = runningTasks(tasks);
  assert.deepEqual(running.map((task) => task.id).sort(), [...reload.tasksAfter].sort(), 'tasksAfter = the running tasks');
  for (const task of running) {
    assert.ok(!reload.tasksBefore.includes(task.id), `task ${task.id} is new`);
    assert.ok(task.createdAt.getTime() >= reloadStarted, `task ${task.id} created by the reload`);
  }
  assertGenerations(tasks, reloadsSoFar + 1);
  for (const task of running) {
    assert.equal(await servedFingerprint(swarm, task), bundle?.leafFingerprintSha256, `Vault task ${task.id} serves the new leaf on 8200`);
  }
  return reload;
}

/** `docker service ps`: every replica slot has exactly one task per generation (the first + one per reload). */
function assertGenerations(tasks: readonly ServiceTask[], generations: number): void {
  const slots = new Map<number, ServiceTask[]>();
  for (const task of tasks) slots.set(task.slot ?? 0, [...(slots.get(task.slot ?? 0) ?? []), task]);
  assert.equal(slots.size, 2, 'two replica slots');
  for (const [slot, history] of slots) {
    assert.equal(history.length, generations, `slot ${slot}: ${history.map((task) => `${task.state}/${task.desiredState}`).join(', ')}`);
    assert.equal(history.filter((task) => task.desiredState === 'running').length, 1, `slot ${slot} has one task meant to run`);
  }
}

function firstTaskPerSlot(tasks: readonly ServiceTask[]): ServiceTask[] {
  const first = new Map<number, ServiceTask>();
  for (const task of tasks) if (!first.has(task.slot ?? 0)) first.set(task.slot ?? 0, task);
  return [...first.values()];
}

/** The leaf a Vault stand-in task serves on 8200, probed inside its container on its node's engine. */
async function servedFingerprint(swarm: CertsyncSwarm, task: ServiceTask): Promise<string | undefined> {
  const member = swarm.members.find((candidate) => candidate.nodeId === task.nodeId);
  assert.ok(member && task.containerId, `node and container of Vault task ${task.id}`);
  let probe: VaultProbe | undefined;
  // A task reported running may still be reading its files; give it a moment to listen.
  await waitUntil(`Vault task ${task.id} to answer on 8200`, 20_000, async () => {
    probe = await probeVault(member.engine, task.containerId!);
    return true;
  });
  assert.equal(probe?.sealStatus.type, 'shamir', 'seal-status has the shape of Vault\'s');
  assert.equal(probe?.sealStatus.initialized, true);
  return probe?.servedFingerprintSha256;
}

async function waitForStatus(swarm: CertsyncSwarm, what: string, check: (status: StatusJson) => boolean, timeoutMs = 120_000): Promise<StatusJson> {
  let last: StatusJson | undefined;
  await waitUntil(what, timeoutMs, async () => {
    last = await readStatus(swarm.manager);
    return check(last);
  }, () => (last ? JSON.stringify({ nodes: last.nodes.length, rollout: last.bundles[0]?.rollout?.state }) : ''));
  return last!;
}

async function waitForRollout(swarm: CertsyncSwarm, what: string, check: (rollout: RolloutJson) => boolean, timeoutMs: number): Promise<RolloutJson> {
  let last: RolloutJson | undefined;
  await waitUntil(what, timeoutMs, async () => {
    const status = await readStatus(swarm.manager);
    last = status.bundles.find((bundle) => bundle.name === BUNDLE)?.rollout;
    return last !== undefined && check(last);
  }, () => (last ? `version ${last.version} ${last.state} ${last.reason}` : ''));
  return last!;
}

function waitForRolloutDone(swarm: CertsyncSwarm, version: number): Promise<RolloutJson> {
  return waitForRollout(swarm, `version ${version} done`, (rollout) => {
    if (rollout.version === version && rollout.state === 'failed') throw new Error(`rollout ${version} failed: ${rollout.reason}`);
    return rollout.version === version && rollout.state === 'done';
  }, 180_000);
}

async function readTargets(swarm: CertsyncSwarm, index: number): Promise<string[]> {
  return Promise.all(TARGETS.map(async ({ target }) => sha256Hex(await readFile(path.join(swarm.layout.nodeSslDir(index), target)))));
}

async function imageIds(engine: CertsyncSwarm['builder']): Promise<string[]> {
  const images = await engine.dockerJson<Array<{ Id: string }>>(['image', 'inspect', ...Object.values(E2E_IMAGES)]);
  return images.map((image) => image.Id);
}

function readLink(dir: string, name: string): Promise<string> {
  return readlink(path.join(dir, name));
}

function describeRollout(rollout: RolloutJson): string {
  const started = Date.parse(rollout.startedAt ?? '');
  const at = (iso: string | undefined) => `+${((Date.parse(iso ?? '') - started) / 1000).toFixed(1)}s`;
  const transitions = rollout.transitions.map((transition) => `${transition.to} ${at(transition.at)}`).join(', ');
  const reloads = rollout.reloads.map((reload) => `${reload.service} ${at(reload.startedAt)}..${at(reload.finishedAt)}`).join(', ');
  return `v${rollout.version}: ${transitions}; reload ${reloads}`;
}

function findProjectRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'Dockerfile.server'))) return dir;
  }
  throw new Error(`no project root (with Dockerfile.server) above ${__dirname}`);
}
