import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { BundleIntake } from '../../server/bundle-intake';
import { parseServerConfig } from '../../server/config';
import { VersionStore } from '../../server/version-store';
import {
  createCertbotTree,
  directoriesOf,
  type CertbotFileContents,
} from '../support/certbot-tree';
import { assertOutcome, keyBase64Windows, type ObservedOutcome } from './assert-outcome';
import { CONTENT_CASES } from './content-cases';
import type { CaseBundleSettings, CorpusCase, CorpusTree } from './corpus-case';
import {
  CORPUS_DOMAIN,
  createCorpusMaterials,
  pemSetFor,
  type CorpusMaterials,
} from './corpus-materials';
import { SOURCE_TREE_CASES } from './source-tree-cases';

/**
 * The bad-input corpus through the real intake: every case is written into its own certbot-shaped
 * folder (live/ links into archive/) under a temp folder, read by the source reader, validated,
 * and its outcome read back from the version store. A rejected case must leave version 1 (or no
 * version) current.
 */

const BUNDLE = 'corpus';

interface CaseRun {
  tree: CorpusTree;
  intake: BundleIntake;
  store: VersionStore;
  observe(): Promise<ObservedOutcome>;
}

describe('bad-input corpus through the intake', () => {
  let workDir: string;
  let materials: CorpusMaterials;

  before(async () => {
    workDir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-corpus-')));
    materials = await createCorpusMaterials();
  });

  after(async () => {
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('case names are unique', () => {
    const names = [...CONTENT_CASES, ...SOURCE_TREE_CASES].map((corpusCase) => corpusCase.name);
    assert.deepEqual([...new Set(names)], names);
  });

  /** A tree holding `contents` as version 1, and an intake on it that checks only when asked. */
  async function startCase(
    corpusCase: CorpusCase,
    contents: CertbotFileContents,
  ): Promise<CaseRun> {
    const caseDir = path.join(workDir, corpusCase.name);
    const root = path.join(caseDir, 'letsencrypt');
    const outsideDir = path.join(caseDir, 'outside');
    await fs.mkdir(outsideDir, { recursive: true });
    await createCertbotTree(root, CORPUS_DOMAIN, contents);
    const { liveDir, archiveDir } = directoriesOf(root, CORPUS_DOMAIN);
    const config = corpusConfig(path.join(caseDir, 'state'), liveDir, corpusCase.bundle);
    const store = await VersionStore.open(config.stateDir, [BUNDLE], 10, createSilentLogger());
    const intake = new BundleIntake({
      bundle: config.bundles[0]!,
      store,
      // The watcher must not check on its own here; the runner asks, so outcomes are exact.
      settleMs: 600_000,
      rescanIntervalMs: 86_400_000,
      usePolling: false,
      limits: config.limits,
      // No wait before a rejection: the runner asks once and expects the final outcome.
      rejectSettleMs: 0,
      onAccepted: () => undefined,
      log: createSilentLogger(),
    });
    const observe = async (): Promise<ObservedOutcome> => {
      await intake.requestCheck();
      return observedFrom(store);
    };
    const tree: CorpusTree = {
      root,
      name: CORPUS_DOMAIN,
      liveDir,
      archiveDir,
      outsideDir,
      expectNow: async (expected) => {
        assertOutcome(await observe(), expected, context(corpusCase, root, contents));
      },
    };
    return { tree, intake, store, observe };
  }

  function context(corpusCase: CorpusCase, root: string, contents: CertbotFileContents) {
    const texts = Object.values(contents).map((value) => Buffer.from(value).toString('latin1'));
    return {
      caseName: corpusCase.name,
      pathHint: root,
      keyWindows: keyBase64Windows([...materials.keyPems, ...texts]),
    };
  }

  for (const corpusCase of CONTENT_CASES) {
    test(`${corpusCase.name}: ${corpusCase.description}`, async () => {
      const contents = corpusCase.contents(materials);
      const run = await startCase(corpusCase, contents);
      try {
        const observed = await run.observe();
        assertOutcome(observed, corpusCase.expected, context(corpusCase, run.tree.root, contents));
        const current = run.store.current(BUNDLE);
        if (corpusCase.expected.kind === 'rejected') {
          assert.equal(current, undefined);
        } else {
          // Accepted bytes are distributed exactly as the source holds them (no normalising).
          const byTarget = new Map(current?.files.map((file) => [file.target, file.sha256]));
          assert.equal(byTarget.get('full.crt'), sha256Hex(Buffer.from(contents.fullchain)));
          assert.equal(byTarget.get('key.pem'), sha256Hex(Buffer.from(contents.privkey)));
        }
      } finally {
        await run.intake.close();
      }
    });
  }

  for (const corpusCase of SOURCE_TREE_CASES) {
    test(`${corpusCase.name}: ${corpusCase.description}`, async () => {
      const initial = pemSetFor(materials, materials.leaves.ec);
      const run = await startCase(corpusCase, initial);
      try {
        assert.deepEqual(await run.observe(), { kind: 'accepted', version: 1, warnings: [] });
        await corpusCase.arrange(run.tree, materials);
        const observed = await run.observe();
        const renewal = pemSetFor(materials, materials.stranger);
        assertOutcome(observed, corpusCase.expected, context(corpusCase, run.tree.root, renewal));
        const expectedVersion = corpusCase.expected.kind === 'rejected' ? 1 : 2;
        assert.equal(run.store.current(BUNDLE)?.version, expectedVersion, 'current version');
      } finally {
        await run.intake.close();
      }
    });
  }
});

function corpusConfig(stateDir: string, liveDir: string, settings: CaseBundleSettings = {}) {
  return parseServerConfig({
    // Only the intake runs here; no gRPC listener is started.
    insecure: true,
    stateDir,
    bundles: [
      {
        name: BUNDLE,
        source: liveDir,
        files: [
          { source: 'fullchain.pem', target: 'full.crt', mode: '0644' },
          { source: 'privkey.pem', target: 'key.pem', mode: '0600' },
        ],
        expectNames: settings.expectNames ?? [`*.${CORPUS_DOMAIN}`],
        ...(settings.requireChain === undefined ? {} : { requireChain: settings.requireChain }),
      },
    ],
  });
}

/** The current version (with its warnings) if the last check accepted, else the rejection. */
function observedFrom(store: VersionStore): ObservedOutcome {
  const rejected = store.lastRejected(BUNDLE);
  if (rejected !== undefined)
    return { kind: 'rejected', reason: rejected.reason, message: rejected.message };
  const current = store.current(BUNDLE);
  if (current === undefined)
    throw new Error('the intake neither accepted nor rejected the candidate');
  return { kind: 'accepted', version: current.version, warnings: current.validated.warnings };
}
