import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { SERVER_NODE_FLAGS } from '../../server/runtime-flags';
import { PROJECT_ROOT } from '../support/processes';
import { REQUIRE_TOOLS_ENV, checkTools } from '../support/tools';
import { readHistory, readStatus, runCertsyncctl } from './support/certsync-admin';
import {
  E2E_IMAGES,
  LINEAGE,
  VAULT_SERVICE,
  writeE2eConfig,
  type CertsyncSwarm,
} from './support/certsync-swarm';
import { E2E_LOCK_TIMEOUT_MS, startE2eRun } from './support/e2e-run';
import { assertEveryNodeHoldsLive, readTargets } from './support/node-files';
import { assertProof, assertServes } from './support/proof-checks';
import { STAND_INS } from './support/stand-ins';
import { proofScenarios } from './proof-scenarios';
import {
  assertBundleInSync,
  assertReloadedOnceAfterConvergence,
  describeRollout,
  firstTaskPerSlot,
  waitForRollout,
  waitForRolloutDone,
  waitForStatus,
} from './support/rollout-checks';
import {
  inspectServiceUpdate,
  listServiceTasks,
  runningTasks,
  waitForRunningTasks,
} from './support/swarm';

// certsync on a real three-node Docker Swarm: the images built from the real Dockerfiles, the
// stack deployed from deploy/docker-stack.yml unchanged, a real certbot renewing against pebble
// on the host, and every claim checked against what is on disk and what Docker itself reports.

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

const CONVERGE_TIMEOUT_MS = 15_000;
const SUITE_TIMEOUT_MS = E2E_LOCK_TIMEOUT_MS + 15 * 60_000;

test('certsync on a three-node Docker Swarm', { skip, timeout: SUITE_TIMEOUT_MS }, async (t) => {
  if (!isRoot)
    throw new Error(
      `needs root (network namespaces, dockerd); ${REQUIRE_TOOLS_ENV}=1 forbids skipping`,
    );
  tools.require();
  const projectRoot = PROJECT_ROOT;
  const { swarm, layout, timer } = await startE2eRun(t, projectRoot);
  const [manager] = swarm.members;
  assert.ok(manager);
  let doneReloads = 0;

  await t.test('the images come from the real Dockerfiles and reach every node', async () => {
    const builtIds = await imageIds(swarm.builder);
    for (const member of swarm.members)
      assert.deepEqual(
        await imageIds(member.engine),
        builtIds,
        `images on ${member.spec.hostname}`,
      );

    for (const [role, entry] of [
      ['server', 'server'],
      ['agent', 'agent'],
    ] as const) {
      const [config] = await swarm.builder.dockerJson<
        Array<{ Config: { User: string; Entrypoint: string[] } }>
      >(['image', 'inspect', E2E_IMAGES[role]]);
      assert.equal(config?.Config.User, 'node', `${role} image default user`);
      const flags = role === 'server' ? SERVER_NODE_FLAGS : [];
      assert.deepEqual(config?.Config.Entrypoint, ['node', ...flags, `/app/dist/${entry}/main.js`]);
    }
    const ctl = await swarm.builder.docker([
      'run',
      '--rm',
      '--network=none',
      '--entrypoint=node',
      E2E_IMAGES.server,
      '/app/dist/ctl/main.js',
      '-V',
    ]);
    const { version } = JSON.parse(
      await readFile(path.join(projectRoot, 'package.json'), 'utf8'),
    ) as { version: string };
    assert.equal(ctl.stdout.trim(), version, 'certsyncctl in the server image');
  });

  await t.test(
    'the stack deploys: a server on the manager, an agent on each of the 3 nodes, all connected',
    async (tt) => {
      const configPath = await writeE2eConfig(projectRoot, layout.runDir, CONVERGE_TIMEOUT_MS);
      await timer.time('stack deploy + stand-in services', async () => {
        await swarm.deployStack(configPath);
        // Right after the stack: the first version cannot converge before its agents have started.
        await swarm.createStandInServices();
      });

      const agents = await timer.time('3 agents + server running', async () => {
        const [server] = await waitForRunningTasks(swarm.manager, 'certsync_server', 1);
        assert.equal(server?.nodeId, manager.nodeId, 'the server runs on the manager');
        return waitForRunningTasks(swarm.manager, 'certsync_agent', 3);
      });
      const nodeIds = swarm.members.map((member) => member.nodeId).sort();
      assert.deepEqual(
        agents.map((task) => task.nodeId).sort(),
        nodeIds,
        'one agent task per node',
      );

      const status = await timer.time('3 agents connected', () =>
        waitForStatus(
          swarm,
          'all 3 agents connected',
          (s) => s.nodes.filter((node) => node.connected).length === 3,
        ),
      );
      assert.deepEqual(
        status.nodes.map((node) => node.nodeId).sort(),
        nodeIds,
        'agents report their swarm node IDs',
      );
      assert.equal(status.fleetMode, 'swarm');
      tt.diagnostic(
        `nodes: ${status.nodes.map((node) => `${node.hostname}=${node.nodeId.slice(0, 12)}`).join(', ')}`,
      );
    },
  );

  await t.test(
    'the first certificate reaches every node; Vault is force-updated once, after the last confirmation, and unsealed by certsync',
    async (tt) => {
      const rollout = await timer.time('v1 distributed + Vault reloaded', () =>
        waitForRolloutDone(swarm, 1),
      );
      doneReloads += 1;

      await assertEveryNodeHoldsLive(
        swarm,
        swarm.members.map((member) => member.spec.index),
      );
      const status = await readStatus(swarm.manager);
      assertBundleInSync(status, 1);
      const reload = await assertReloadedOnceAfterConvergence(swarm, status, rollout, doneReloads);
      const firstGeneration = firstTaskPerSlot(
        await listServiceTasks(swarm.manager, VAULT_SERVICE),
      );
      assert.deepEqual(
        [...reload.tasksBefore].sort(),
        firstGeneration.map((task) => task.id).sort(),
        'tasksBefore = the first Vault tasks',
      );
      await assertProvedAndUnsealed(swarm, rollout);
      tt.diagnostic(describeRollout(rollout));
    },
  );

  await t.test(
    'a real certbot renewal reaches every node, then Vault is reloaded once, unsealed and proved; history has the timeline',
    async (tt) => {
      const vaultBefore = runningTasks(await listServiceTasks(swarm.manager, VAULT_SERVICE));
      await timer.time('certbot renew --force-renewal', () => swarm.certbot.renew(LINEAGE));
      assert.equal(
        await readLink(swarm.liveDir, 'fullchain.pem'),
        `../../archive/${LINEAGE}/fullchain2.pem`,
      );

      const rollout = await timer.time('v2 distributed + Vault reloaded', () =>
        waitForRolloutDone(swarm, 2),
      );
      doneReloads += 1;
      await assertEveryNodeHoldsLive(
        swarm,
        swarm.members.map((member) => member.spec.index),
      );
      const status = await readStatus(swarm.manager);
      assertBundleInSync(status, 2);
      const reload = await assertReloadedOnceAfterConvergence(swarm, status, rollout, doneReloads);
      assert.deepEqual(
        [...reload.tasksBefore].sort(),
        vaultBefore.map((task) => task.id).sort(),
        'tasksBefore = the tasks running before',
      );
      await assertProvedAndUnsealed(swarm, rollout);

      const [latest, first] = await readHistory(swarm.manager, STAND_INS.vault.bundle);
      assert.deepEqual([latest?.version, first?.version], [2, 1], 'history, newest first');
      for (const entry of [latest, first]) {
        assert.deepEqual(
          entry?.transitions.map((transition) => transition.to),
          ['converged', 'reloading', 'done'],
          `timeline of version ${entry?.version}`,
        );
        assert.ok(entry?.reloads[0]?.proof?.ok, `version ${entry?.version} proved`);
      }
      const text = await runCertsyncctl(swarm.manager, ['history', STAND_INS.vault.bundle]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(
        text.stdout,
        /rollout of version 2: DONE[^]*converged → reloading[^]*proof of iklimco_vault \(version 2.*\): ok/,
      );
      for (const key of swarm.unsealKeys)
        assert.ok(!text.stdout.includes(key), 'no unseal key in history');
      tt.diagnostic(describeRollout(rollout));
    },
  );

  await t.test(
    'with one agent frozen the rollout stalls, names the node and reloads nothing; unfrozen, it catches up',
    async (tt) => {
      const frozen = swarm.members[1];
      assert.ok(frozen, 'a worker to freeze');
      const agentTask = runningTasks(await listServiceTasks(swarm.manager, 'certsync_agent')).find(
        (task) => task.nodeId === frozen.nodeId,
      );
      assert.ok(agentTask?.containerId, `the agent task on ${frozen.spec.hostname}`);
      const vaultBefore = runningTasks(await listServiceTasks(swarm.manager, VAULT_SERVICE));
      const updateBefore = await inspectServiceUpdate(swarm.manager, VAULT_SERVICE);
      const frozenBytesBefore = await readTargets(swarm, frozen.spec.index);

      await frozen.engine.docker(['pause', agentTask.containerId]);
      let paused = true;
      tt.after(async () => {
        if (paused)
          await frozen.engine.docker(['unpause', agentTask.containerId!], { allowFailure: true });
      });
      await timer.time('certbot renew --force-renewal (agent frozen)', () =>
        swarm.certbot.renew(LINEAGE),
      );

      const stalled = await timer.time('v3 stalled', () =>
        waitForRollout(
          swarm,
          'version 3 stalled',
          (r) => r.version === 3 && r.state === 'stalled',
          CONVERGE_TIMEOUT_MS + 60_000,
        ),
      );
      assert.deepEqual(
        stalled.missingNodes,
        [frozen.nodeId],
        'the stalled rollout names the frozen node',
      );
      assert.equal(stalled.reloads.length, 0, 'nothing is reloaded while a node is missing');
      const others = swarm.members
        .filter((member) => member !== frozen)
        .map((member) => member.spec.index);
      await assertEveryNodeHoldsLive(swarm, others);
      assert.deepEqual(
        await readTargets(swarm, frozen.spec.index),
        frozenBytesBefore,
        'the frozen node still has the previous files',
      );
      assert.deepEqual(
        await inspectServiceUpdate(swarm.manager, VAULT_SERVICE),
        updateBefore,
        'Docker saw no Vault update',
      );
      assert.deepEqual(
        runningTasks(await listServiceTasks(swarm.manager, VAULT_SERVICE)).map((task) => task.id),
        vaultBefore.map((task) => task.id),
      );

      await frozen.engine.docker(['unpause', agentTask.containerId]);
      paused = false;
      const rollout = await timer.time('v3 caught up + Vault reloaded', () =>
        waitForRolloutDone(swarm, 3),
      );
      doneReloads += 1;
      const states = rollout.transitions.map((transition) => `${transition.from}→${transition.to}`);
      assert.ok(
        states.includes('distributing→stalled') && states.includes('stalled→converged'),
        `transitions: ${states.join(', ')}`,
      );
      await assertEveryNodeHoldsLive(
        swarm,
        swarm.members.map((member) => member.spec.index),
      );
      const status = await readStatus(swarm.manager);
      assertBundleInSync(status, 3);
      await assertReloadedOnceAfterConvergence(swarm, status, rollout, doneReloads);
      await assertProvedAndUnsealed(swarm, rollout);
      tt.diagnostic(describeRollout(rollout));
    },
  );

  await t.test(
    'a broken renewal (a new key without its certificate) is rejected: no node changes, Vault is not reloaded',
    async (tt) => {
      const livePrivkey = path.join(swarm.liveDir, 'privkey.pem');
      const goodLink = await readlink(livePrivkey);
      const bytesBefore = await Promise.all(
        swarm.members.map((member) => readTargets(swarm, member.spec.index)),
      );
      const updateBefore = await inspectServiceUpdate(swarm.manager, VAULT_SERVICE);
      const tasksBefore = (await listServiceTasks(swarm.manager, VAULT_SERVICE)).map(
        (task) => task.id,
      );

      // What a botched renewal leaves: certbot's link already points at a new key, whose
      // certificate never arrived.
      const strayKey = path.join(swarm.certbot.configDir, 'archive', LINEAGE, 'privkey99.pem');
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await writeFile(strayKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
        mode: 0o600,
      });
      await swapLink(livePrivkey, `../../archive/${LINEAGE}/privkey99.pem`);
      try {
        const status = await timer.time('broken renewal rejected', () =>
          waitForStatus(swarm, 'the stray key rejected', (candidate) =>
            Boolean(bundleOf(candidate)?.lastRejected?.reason.includes('privkey99.pem')),
          ),
        );
        const bundle = bundleOf(status);
        // The reason names the file behind the link, the one to look at.
        assert.match(
          bundle?.lastRejected?.reason ?? '',
          /private key in .*privkey99\.pem .*matches no/,
        );
        assert.equal(bundle?.currentVersion, 3, 'version 3 stays current');
        assert.equal(bundle?.rollout?.version, 3, 'no rollout for the rejected candidate');
        // Give a wrongly accepted candidate the time it would need to reach the nodes.
        await sleep(3_000);
        assert.deepEqual(
          await Promise.all(swarm.members.map((member) => readTargets(swarm, member.spec.index))),
          bytesBefore,
          'every node keeps version 3',
        );
        assert.deepEqual(await inspectServiceUpdate(swarm.manager, VAULT_SERVICE), updateBefore);
        assert.deepEqual(
          (await listServiceTasks(swarm.manager, VAULT_SERVICE)).map((task) => task.id),
          tasksBefore,
          'no new Vault task',
        );
        tt.diagnostic(`rejected: ${bundle?.lastRejected?.reason}`);
      } finally {
        await swapLink(livePrivkey, goodLink);
      }
    },
  );

  await proofScenarios(t, swarm, timer);
});

function bundleOf(status: Awaited<ReturnType<typeof readStatus>>) {
  return status.bundles.find((bundle) => bundle.name === STAND_INS.vault.bundle);
}

/** Points `link` at `target` the way certbot does: a new link renamed over the old one. */
async function swapLink(link: string, target: string): Promise<void> {
  const next = `${link}.certsync-e2e`;
  await symlink(target, next);
  await rename(next, link);
}

/**
 * The force-update restarted every Vault replica, so each came back sealed: certsync's proof
 * unsealed it with the keys from the Docker secret and saw it serve the new leaf, and the
 * replicas themselves (probed inside their containers) agree.
 */
async function assertProvedAndUnsealed(
  swarm: CertsyncSwarm,
  rollout: Parameters<typeof describeRollout>[0],
): Promise<void> {
  const leaf = (await readStatus(swarm.manager)).bundles.find(
    (bundle) => bundle.name === STAND_INS.vault.bundle,
  )?.leafFingerprintSha256;
  assert.ok(leaf);
  assertProof(rollout, {
    leaf,
    replicas: STAND_INS.vault.replicas,
    sealState: 'unsealed by certsync',
  });
  await assertServes(swarm, STAND_INS.vault, leaf);
}

async function imageIds(engine: CertsyncSwarm['builder']): Promise<string[]> {
  const images = await engine.dockerJson<Array<{ Id: string }>>([
    'image',
    'inspect',
    ...Object.values(E2E_IMAGES),
  ]);
  return images.map((image) => image.Id);
}

function readLink(dir: string, name: string): Promise<string> {
  return readlink(path.join(dir, name));
}
