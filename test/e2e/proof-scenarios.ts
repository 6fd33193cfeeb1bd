import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { readHistory, readStatus, runCertsyncctl } from './support/certsync-admin.js';
import type { CertsyncSwarm } from './support/certsync-swarm.js';
import type { PhaseTimer } from './support/phase-timer.js';
import {
  assertEveryNodeHolds,
  assertProof,
  assertServes,
  containerStarts,
} from './support/proof-checks.js';
import { describeRollout, waitForRollout, waitForRolloutDone } from './support/rollout-checks.js';
import { FAILING_PROOF_TIMEOUT_MS, STAND_INS } from './support/stand-ins.js';
import { inspectServiceUpdate, waitForRunningTasks, waitUntil } from './support/swarm.js';

// The proof step on the real swarm, for the two stand-ins reloaded by signal (stand-ins.ts): a
// SIGHUP reload needs no restart and no unseal; a stand-in that keeps its old certificate fails
// the proof, and certsync either rolls every node back (`web`) or holds (`hold`).

const { web, hold } = STAND_INS;

async function leafOf(swarm: CertsyncSwarm, bundle: string): Promise<string> {
  const entry = (await readStatus(swarm.manager)).bundles.find((b) => b.name === bundle);
  assert.ok(entry?.leafFingerprintSha256, `bundle ${bundle} has a current leaf`);
  return entry.leafFingerprintSha256;
}

/** Adds the signal/rollback/hold subtests to the swarm suite; they run after the force-update ones. */
export async function proofScenarios(
  t: TestContext,
  swarm: CertsyncSwarm,
  timer: PhaseTimer,
): Promise<void> {
  await t.test(
    'the signal-reloaded stand-ins got their first version: web unsealed by certsync, hold proved',
    async (tt) => {
      const [webDone, holdDone] = await timer.time('web v1 + hold v1 proved', () =>
        Promise.all([
          waitForRolloutDone(swarm, 1, web.bundle),
          waitForRolloutDone(swarm, 1, hold.bundle),
        ]),
      );
      const webLeaf = await leafOf(swarm, web.bundle);
      // The web stand-in starts sealed; the proof after the SIGHUP reload unsealed it.
      assertProof(webDone, {
        leaf: webLeaf,
        replicas: web.replicas,
        sealState: 'unsealed by certsync',
      });
      await assertServes(swarm, web, webLeaf);
      const holdLeaf = await leafOf(swarm, hold.bundle);
      assertProof(holdDone, { leaf: holdLeaf, replicas: hold.replicas, sealState: '' });
      await assertServes(swarm, hold, holdLeaf);
      tt.diagnostic(describeRollout(webDone));
    },
  );

  await t.test(
    'with signal: SIGHUP a renewal is served by every replica with no restart and no unseal',
    async (tt) => {
      const before = await assertServes(swarm, web, await leafOf(swarm, web.bundle));
      const startsBefore = await containerStarts(swarm, before);

      await timer.time('certbot renew web', () => swarm.certbot.renew(web.lineage));
      const rollout = await timer.time('web v2 signalled + proved', () =>
        waitForRolloutDone(swarm, 2, web.bundle),
      );
      const leaf = await leafOf(swarm, web.bundle);
      assert.equal(rollout.reloads[0]?.action, 'signal');
      // "unsealed", not "unsealed by certsync": no replica was ever sealed again.
      assertProof(rollout, { leaf, replicas: web.replicas, sealState: 'unsealed' });
      const after = await assertServes(swarm, web, leaf);
      assert.deepEqual(await containerStarts(swarm, after), startsBefore, 'no container restarted');
      const signalled = rollout.reloads[0]!.signals.flatMap((node) => node.containers);
      assert.equal(signalled.length, web.replicas, 'each replica was signalled once');
      await assertEveryNodeHolds(swarm, web, { cert: 'fullchain2.pem', key: 'privkey2.pem' });
      tt.diagnostic(describeRollout(rollout));
    },
  );

  await t.test(
    'a renewal the web stand-in refuses to serve fails its proof; rollback puts version 2 back everywhere',
    async (tt) => {
      const v2Leaf = await leafOf(swarm, web.bundle);
      // From now on the stand-in ignores SIGHUP: it keeps serving the certificate it starts with.
      // The update restarts its tasks, so they come back sealed, serving version 2.
      await timer.time('web told to ignore SIGHUP', async () => {
        await swarm.manager.docker([
          'service',
          'update',
          '--detach',
          '--env-add',
          'VAULT_STAND_IN_IGNORE_SIGHUP=1',
          web.service,
        ]);
        await waitForRunningTasks(swarm.manager, web.service, web.replicas);
        await waitForUpdateCompleted(swarm);
      });
      await assertServes(swarm, web, v2Leaf, true);

      await timer.time('certbot renew web (not served)', () => swarm.certbot.renew(web.lineage));
      const rollback = await timer.time('web v3 failed + rolled back to v2', () =>
        waitForRollout(
          swarm,
          'the rollback of version 3 done',
          (rollout) => rollout.rollbackOf === 3 && rollout.state === 'done',
          FAILING_PROOF_TIMEOUT_MS + 120_000,
          web.bundle,
        ),
      );
      const [latest, failed] = await readHistory(swarm.manager, web.bundle);
      assert.equal(latest?.rollbackOf, 3);
      assert.equal(latest?.version, 2, 'the rollback reinstated version 2');
      assert.equal(failed?.version, 3);
      assert.equal(failed?.state, 'failed');
      assert.match(
        failed?.reason ?? '',
        /2 of 2 replica\(s\) failed the proof: .*serves leaf .*, expected .*rolling back to version 2/,
      );
      assert.deepEqual(
        failed?.reloads[0]?.proof?.replicas.map((replica) => replica.matches),
        [false, false],
      );
      // The restarted replicas were sealed: the rollback's proof unsealed them on version 2.
      assertProof(rollback, {
        leaf: v2Leaf,
        replicas: web.replicas,
        sealState: 'unsealed by certsync',
      });
      await assertServes(swarm, web, v2Leaf);
      await assertEveryNodeHolds(swarm, web, { cert: 'fullchain2.pem', key: 'privkey2.pem' });
      const status = (await readStatus(swarm.manager)).bundles.find((b) => b.name === web.bundle);
      assert.equal(status?.currentVersion, 2, 'version 3 is withdrawn while the source holds it');
      tt.diagnostic(`failed: ${failed?.reason}`);
    },
  );

  await t.test(
    'with onFailure: hold a renewal the stand-in refuses to serve fails, and nothing more happens',
    async (tt) => {
      const v1Leaf = await leafOf(swarm, hold.bundle);
      const before = await assertServes(swarm, hold, v1Leaf);
      const startsBefore = await containerStarts(swarm, before);

      await timer.time('certbot renew hold (not served)', () => swarm.certbot.renew(hold.lineage));
      const failed = await timer.time('hold v2 failed', () =>
        waitForRollout(
          swarm,
          'version 2 failed',
          (rollout) => rollout.version === 2 && rollout.state === 'failed',
          FAILING_PROOF_TIMEOUT_MS + 120_000,
          hold.bundle,
        ),
      );
      assert.match(failed.reason, /1 of 1 replica\(s\) failed the proof: .*serves leaf/);
      assert.match(failed.reason, /onFailure is hold: every node keeps version 2/);

      // Long enough for a rollback or a retry to have started, were certsync to try one.
      await sleep(5_000);
      const history = await readHistory(swarm.manager, hold.bundle);
      assert.deepEqual(
        history.map((rollout) => `${rollout.version}:${rollout.state}`),
        ['2:failed', '1:done'],
        'no rollback, no second attempt',
      );
      await assertEveryNodeHolds(swarm, hold, { cert: 'fullchain2.pem', key: 'privkey2.pem' });
      const after = await assertServes(swarm, hold, v1Leaf);
      assert.deepEqual(await containerStarts(swarm, after), startsBefore, 'no container restarted');

      const text = await runCertsyncctl(swarm.manager, ['history', hold.bundle]);
      assert.match(text.stdout, /rollout of version 2: FAILED/);
      assert.match(text.stdout, /onFailure is hold/);
      tt.diagnostic(`failed: ${failed.reason}`);
    },
  );
}

/** Swarm's record of the web service's last update says it finished. */
async function waitForUpdateCompleted(swarm: CertsyncSwarm): Promise<void> {
  await waitUntil('the web update to complete', 120_000, async () => {
    const update = await inspectServiceUpdate(swarm.manager, web.service);
    return update.updateState === 'completed';
  });
}
