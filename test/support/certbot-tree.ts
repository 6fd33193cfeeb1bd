import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A certbot-shaped `live/ -> archive/` tree on real disk, so the source watcher and reader are
 * tested against the same symlink dance certbot (and SWAG, which runs certbot) performs.
 */

/** The four files of a lineage, in the order certbot swaps their `live/` links on renewal. */
export const LINK_ORDER = ['cert', 'privkey', 'chain', 'fullchain'] as const;
export type LinkName = (typeof LINK_ORDER)[number];

/** The bytes of the four files; a CertbotPemSet, or damaged content the corpus writes. */
export type CertbotFileContents = Readonly<Record<LinkName, string | Uint8Array>>;

const ARCHIVE_FILE = /^(cert|chain|fullchain|privkey)(\d+)\.pem$/;
const PRIVATE_KEY_MODE = 0o600;
const PUBLIC_FILE_MODE = 0o644;

const LIVE_README =
  'This directory contains your keys and certificates.\n' +
  'Written by the certsync test fixture to mirror the README certbot leaves here.\n';

export function directoriesOf(root: string, name: string): { liveDir: string; archiveDir: string } {
  return { liveDir: path.join(root, 'live', name), archiveDir: path.join(root, 'archive', name) };
}

/** Writes the N-th version of each archive file; private keys get 0600 like certbot's. */
async function writeArchiveVersion(
  archiveDir: string,
  version: number,
  pems: CertbotFileContents,
): Promise<void> {
  for (const linkName of LINK_ORDER) {
    const file = path.join(archiveDir, `${linkName}${version}.pem`);
    const mode = linkName === 'privkey' ? PRIVATE_KEY_MODE : PUBLIC_FILE_MODE;
    await fs.writeFile(file, pems[linkName], { mode });
    // writeFile's mode is filtered by the umask; certbot's modes are exact.
    await fs.chmod(file, mode);
  }
}

/** The relative target certbot uses, so the tree still resolves when mounted elsewhere. */
export function linkTarget(name: string, linkName: LinkName, version: number): string {
  return path.join('..', '..', 'archive', name, `${linkName}${version}.pem`);
}

/** A fresh lineage at version 1: archive files, relative live links and the live README. */
export async function createCertbotTree(
  root: string,
  name: string,
  pems: CertbotFileContents,
): Promise<{ liveDir: string; archiveDir: string }> {
  const { liveDir, archiveDir } = directoriesOf(root, name);
  await fs.mkdir(liveDir, { recursive: true });
  await fs.mkdir(archiveDir, { recursive: true, mode: 0o700 });

  await writeArchiveVersion(archiveDir, 1, pems);
  for (const linkName of LINK_ORDER) {
    await fs.symlink(linkTarget(name, linkName, 1), path.join(liveDir, `${linkName}.pem`));
  }
  await fs.writeFile(path.join(liveDir, 'README'), LIVE_README);
  return { liveDir, archiveDir };
}

/** The highest archive version present, so renewals continue from whatever a test left. */
export async function highestArchiveVersion(archiveDir: string): Promise<number> {
  let highest = 0;
  for (const entry of await fs.readdir(archiveDir)) {
    const match = ARCHIVE_FILE.exec(entry);
    if (match) {
      highest = Math.max(highest, Number(match[2]));
    }
  }
  if (highest === 0) {
    throw new Error(`no certbot archive files in ${archiveDir}; create the tree first`);
  }
  return highest;
}

/**
 * Renews like certbot: writes version N+1 into the archive, then swaps the live links one at a
 * time (cert, privkey, chain, fullchain), each as unlink then symlink, so a watcher sees a link
 * briefly missing and, between swaps, a live/ directory that mixes two versions.
 * `delayBetweenLinksMs` widens those windows for tests that must observe them.
 */
export async function renewCertbotTree(
  root: string,
  name: string,
  pems: CertbotFileContents,
  options: { delayBetweenLinksMs?: number; linksToSwap?: readonly LinkName[] } = {},
): Promise<{ version: number }> {
  const { liveDir, archiveDir } = directoriesOf(root, name);
  const version = (await highestArchiveVersion(archiveDir)) + 1;
  await writeArchiveVersion(archiveDir, version, pems);

  const delayMs = options.delayBetweenLinksMs ?? 0;
  // linksToSwap stops the swap part-way, like a certbot run killed between two links.
  const linkNames = LINK_ORDER.filter(
    (linkName) => options.linksToSwap?.includes(linkName) ?? true,
  );
  for (const [index, linkName] of linkNames.entries()) {
    if (index > 0 && delayMs > 0) {
      await sleep(delayMs);
    }
    const link = path.join(liveDir, `${linkName}.pem`);
    await fs.unlink(link);
    await fs.symlink(linkTarget(name, linkName, version), link);
  }
  return { version };
}
