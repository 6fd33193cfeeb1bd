import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { sha256Hex } from '../../common/digest';
import { assertOutcome, keyBase64Windows, type ObservedOutcome } from '../corpus/assert-outcome';
import { CONTENT_CASES } from '../corpus/content-cases';
import type { CorpusCase, CorpusTree, ExpectedOutcome } from '../corpus/corpus-case';
import {
  CORPUS_DOMAIN,
  createCorpusMaterials,
  pemSetFor,
  type CorpusMaterials,
} from '../corpus/corpus-materials';
import { SOURCE_TREE_CASES } from '../corpus/source-tree-cases';
import { createCertbotTree, directoriesOf, renewCertbotTree } from '../support/certbot-tree';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import type { CertbotPemSet } from '../support/pki';
import { waitFor } from '../support/processes';

/**
 * "Nothing on any node changes for a rejected input": corpus cases sent through a running server
 * and three agents (real processes on loopback), each as a certbot renewal of the watched tree.
 * After each, GetStatus must show the case's rejection reason and every node folder must hold
 * the same files, bytes, inodes and mtimes as before. A good renewal at the end still converges.
 */

const NODES = ['node-a', 'node-b', 'node-c'];
const FLEET_CASES = [
  'truncated-inside-block',
  'truncated-at-block-boundary',
  'binary-file',
  'huge-file',
  'blank-line-inside-base64',
  'expired-leaf',
  'two-keys-one-file',
  'certbot-swap-interrupted',
  // Last: its links stay outside until the closing renewal re-creates them.
  'symlink-outside-tree',
];

function corpusCase(name: string): CorpusCase {
  const found = [...CONTENT_CASES, ...SOURCE_TREE_CASES].find(
    (candidate) => candidate.name === name,
  );
  if (found === undefined) throw new Error(`no corpus case ${name}`);
  return found;
}

/** Every node's folder: entry names, and per file its SHA-256, inode and mtime. */
async function nodeFolders(harness: FleetHarness): Promise<string[]> {
  const lines: string[] = [];
  for (const nodeId of NODES) {
    const dir = harness.nodeDir(nodeId);
    for (const entry of (await fs.readdir(dir)).sort()) {
      const file = path.join(dir, entry);
      const stat = await fs.stat(file);
      lines.push(
        `${nodeId}/${entry} ${sha256Hex(await fs.readFile(file))} ino ${stat.ino} mtime ${stat.mtimeMs}`,
      );
    }
  }
  return lines;
}

describe('corpus cases through a running server and three agents', () => {
  let workDir: string;
  let root: string;
  let harness: FleetHarness;
  let materials: CorpusMaterials;
  let initial: CertbotPemSet;
  let lastRejectionText = '';

  before(async () => {
    workDir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-corpus-fleet-')));
    root = path.join(workDir, 'letsencrypt');
    materials = await createCorpusMaterials();
    initial = pemSetFor(materials, materials.leaves.ec);
    const { liveDir } = await createCertbotTree(root, CORPUS_DOMAIN, initial);
    harness = await FleetHarness.create({ workDir, liveDir });
    await harness.startServer();
    for (const nodeId of NODES) await harness.startAgent(nodeId);
    await harness.waitForConvergence(1, NODES);
  });

  after(async () => {
    await harness.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  /** Waits for GetStatus to show a rejection newer than the last one seen. */
  async function nextRejection(): Promise<ObservedOutcome> {
    const text = await waitFor('a new rejection in GetStatus', async () => {
      const status = await harness.admin.getStatus();
      const rejected = status.bundles[0]?.lastRejected?.reason;
      return rejected !== undefined && rejected !== lastRejectionText ? rejected : undefined;
    });
    lastRejectionText = text;
    const separator = text.indexOf(': ');
    return {
      kind: 'rejected',
      reason: text.slice(0, separator),
      message: text.slice(separator + 2),
    };
  }

  function treeFor(caseName: string, expectations: { keyWindows: string[] }): CorpusTree {
    const { liveDir, archiveDir } = directoriesOf(root, CORPUS_DOMAIN);
    return {
      root,
      name: CORPUS_DOMAIN,
      liveDir,
      archiveDir,
      outsideDir: path.join(workDir, 'outside'),
      expectNow: async (expected: ExpectedOutcome) => {
        const context = { caseName: caseName, pathHint: root, ...expectations };
        assertOutcome(await nextRejection(), expected, context);
      },
    };
  }

  for (const name of FLEET_CASES) {
    test(`${name}: rejected, shown in GetStatus, nothing changed on any node`, async () => {
      const chosen = corpusCase(name);
      assert.equal(chosen.expected.kind, 'rejected', 'the fleet test sends only rejected cases');
      const before = await nodeFolders(harness);
      const contents =
        chosen.type === 'content'
          ? chosen.contents(materials)
          : pemSetFor(materials, materials.stranger);
      const texts = Object.values(contents).map((value) => Buffer.from(value).toString('latin1'));
      const keyWindows = keyBase64Windows([...materials.keyPems, ...texts]);

      await fs.mkdir(path.join(workDir, 'outside'), { recursive: true });
      if (chosen.type === 'content') await renewCertbotTree(root, CORPUS_DOMAIN, contents);
      else await chosen.arrange(treeFor(name, { keyWindows }), materials);

      assertOutcome(await nextRejection(), chosen.expected, {
        caseName: name,
        pathHint: root,
        keyWindows,
      });
      const status = await harness.admin.getStatus();
      assert.equal(status.bundles[0]?.currentVersion, 1);
      assert.equal(status.bundles[0]?.nodesInSync, NODES.length);
      assert.deepEqual(await nodeFolders(harness), before, 'node folders unchanged');
    });
  }

  test('every node still holds version 1 byte for byte, and a good renewal converges', async () => {
    for (const nodeId of NODES) {
      const dir = harness.nodeDir(nodeId);
      assert.deepEqual(
        (await fs.readdir(dir)).sort(),
        Object.values(HARNESS_TARGETS)
          .map(({ target }) => target)
          .sort(),
      );
      for (const kind of ['fullchain', 'privkey'] as const) {
        const bytes = await fs.readFile(path.join(dir, HARNESS_TARGETS[kind].target));
        assert.equal(sha256Hex(bytes), sha256Hex(initial[kind]), `${nodeId} ${kind}`);
      }
    }

    const renewal = pemSetFor(materials, materials.stranger);
    await renewCertbotTree(root, CORPUS_DOMAIN, renewal);
    await harness.waitForConvergence(2, NODES);
    for (const nodeId of NODES) {
      const bytes = await fs.readFile(
        path.join(harness.nodeDir(nodeId), HARNESS_TARGETS.fullchain.target),
      );
      assert.equal(sha256Hex(bytes), sha256Hex(renewal.fullchain), nodeId);
    }
  });
});
