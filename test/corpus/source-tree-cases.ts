import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { highestArchiveVersion, linkTarget, renewCertbotTree } from '../support/certbot-tree';
import type { CorpusTree, SourceTreeCase } from './corpus-case';
import { pemSetFor, type CorpusMaterials } from './corpus-materials';

/**
 * Changes to a real certbot tree (live/ links into archive/) that already holds a valid version
 * 1. Decision on links: certbot's live/NAME links point into ../../archive/NAME, so a link may
 * lead anywhere inside the letsencrypt folder (the one holding live/ and archive/); a link that
 * leaves it is refused (link-outside-tree), whatever it points at. `bundles[].linkRoot` widens it.
 */

/** A complete renewal's files: a new leaf for the same names (the "stranger" key pair). */
const renewal = (m: CorpusMaterials) => pemSetFor(m, m.stranger);
/** How long the writer pauses between the two halves of a file. */
const HALVES_APART_MS = 2_000;

async function replaceLink(link: string, target: string): Promise<void> {
  await fs.unlink(link);
  await fs.symlink(target, link);
}

export const SOURCE_TREE_CASES: readonly SourceTreeCase[] = [
  {
    type: 'source-tree',
    name: 'certbot-renewal',
    description: "certbot's own renewal: new archive files, relative links swapped one by one",
    arrange: async (tree, m) => {
      await renewCertbotTree(tree.root, tree.name, renewal(m));
    },
    expected: { kind: 'accepted' },
  },
  {
    type: 'source-tree',
    name: 'absolute-link-inside-tree',
    description: 'a renewal whose fullchain link is absolute but still into archive/: allowed',
    arrange: async (tree, m) => {
      const { version } = await renewCertbotTree(tree.root, tree.name, renewal(m));
      const target = path.join(tree.archiveDir, `fullchain${version}.pem`);
      await replaceLink(path.join(tree.liveDir, 'fullchain.pem'), target);
    },
    expected: { kind: 'accepted' },
  },
  {
    type: 'source-tree',
    name: 'symlink-outside-tree',
    description:
      'fullchain.pem and privkey.pem re-pointed (relative ../..) to a folder outside letsencrypt',
    arrange: async (tree, m) => {
      const pems = renewal(m);
      for (const linkName of ['fullchain', 'privkey'] as const) {
        const outside = path.join(tree.outsideDir, `${linkName}.pem`);
        await fs.writeFile(outside, pems[linkName], { mode: 0o600 });
        const link = path.join(tree.liveDir, `${linkName}.pem`);
        await replaceLink(link, path.relative(tree.liveDir, outside));
      }
    },
    expected: {
      kind: 'rejected',
      reason: 'link-outside-tree',
      message:
        /fullchain\.pem resolves to .*outside .*; certsync follows links only within that tree/,
    },
  },
  {
    type: 'source-tree',
    name: 'certbot-swap-interrupted',
    description: 'certbot killed after swapping cert and privkey: new key, old fullchain',
    arrange: async (tree, m) => {
      await renewCertbotTree(tree.root, tree.name, renewal(m), {
        linksToSwap: ['cert', 'privkey'],
      });
    },
    expected: {
      kind: 'rejected',
      reason: 'key-mismatch',
      message: /privkey\d+\.pem .* matches no certificate/,
    },
  },
  {
    type: 'source-tree',
    name: 'certbot-link-missing',
    description: 'certbot killed between unlinking fullchain.pem and re-creating it',
    arrange: async (tree) => {
      await fs.unlink(path.join(tree.liveDir, 'fullchain.pem'));
    },
    expected: {
      kind: 'rejected',
      reason: 'source-unreadable',
      message: /cannot read .*fullchain\.pem: ENOENT/,
    },
  },
  {
    type: 'source-tree',
    name: 'fifo-in-place-of-file',
    description: 'fullchain.pem is a named pipe: refused without opening it (it would block)',
    arrange: async (tree) => {
      const version = (await highestArchiveVersion(tree.archiveDir)) + 1;
      const fifo = path.join(tree.archiveDir, `fullchain${version}.pem`);
      execFileSync('mkfifo', [fifo]);
      await replaceLink(
        path.join(tree.liveDir, 'fullchain.pem'),
        linkTarget(tree.name, 'fullchain', version),
      );
    },
    expected: {
      kind: 'rejected',
      reason: 'not-a-file',
      message: /fullchain\.pem is not a regular file/,
    },
  },
  {
    type: 'source-tree',
    name: 'file-written-in-two-halves',
    description: `a renewal whose fullchain is written in two halves ${HALVES_APART_MS} ms apart: refused, then taken`,
    arrange: async (tree: CorpusTree, m) => {
      const pems = renewal(m);
      const half = pems.fullchain.slice(0, Math.floor(pems.fullchain.length / 2));
      const { version } = await renewCertbotTree(tree.root, tree.name, {
        ...pems,
        fullchain: half,
      });
      const startedMs = Date.now();
      await tree.expectNow({
        kind: 'rejected',
        reason: 'pem-invalid',
        message: /fullchain\d+\.pem: block 'CERTIFICATE' .* is not terminated \(file truncated\?\)/,
      });
      await sleep(Math.max(0, HALVES_APART_MS - (Date.now() - startedMs)));
      await fs.appendFile(
        path.join(tree.archiveDir, `fullchain${version}.pem`),
        pems.fullchain.slice(half.length),
      );
    },
    expected: { kind: 'accepted' },
  },
];
