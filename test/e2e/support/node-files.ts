import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { sha256Hex } from '../../../common/digest.js';
import type { CertsyncSwarm } from './certsync-swarm.js';

/** The files deploy/certsync.yml writes, with the live/ file each comes from and its mode. */
export const TARGETS = [
  { live: 'fullchain.pem', target: 'STAR.iklim.co.full.crt', mode: 0o644 },
  // deploy/certsync.yml gives the key to Vault's uid 100, gid 1000.
  { live: 'privkey.pem', target: 'STAR.iklim.co_key.pem', mode: 0o600, owner: [100, 1000] },
] as const;

/** Every node's host folder (bound at /opt/iklimco/ssl on that node) holds the live/ bytes, with the configured modes. */
export async function assertEveryNodeHoldsLive(
  swarm: CertsyncSwarm,
  nodeIndexes: readonly number[],
): Promise<void> {
  for (const index of nodeIndexes) {
    for (const { live, target, mode, ...rest } of TARGETS) {
      const expected = sha256Hex(await readFile(path.join(swarm.liveDir, live)));
      const written = path.join(swarm.layout.nodeSslDir(index), target);
      assert.equal(
        sha256Hex(await readFile(written)),
        expected,
        `node${index}/${target} bytes = live/${live}`,
      );
      const stats = await stat(written);
      assert.equal(stats.mode & 0o777, mode, `node${index}/${target} mode`);
      if ('owner' in rest)
        assert.deepEqual([stats.uid, stats.gid], rest.owner, `node${index}/${target} owner`);
    }
  }
}

export async function readTargets(swarm: CertsyncSwarm, index: number): Promise<string[]> {
  return Promise.all(
    TARGETS.map(async ({ target }) =>
      sha256Hex(await readFile(path.join(swarm.layout.nodeSslDir(index), target))),
    ),
  );
}
