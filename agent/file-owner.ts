import { constants, type Stats } from 'node:fs';
import type { FileOwner } from '../common/contract';
import { ApplyError, applyErrorFromFileSystem } from './apply-error';
import { type LocalFile, open } from './local-fs';
import type { TargetPath } from './target-path';

const ROOT_UID = 0;
const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

/** The owner, group and permission bits of a file as it is on disk. */
export interface FileAttributes {
  readonly uid: number;
  readonly gid: number;
  /** Permission bits, masked to 0o7777. */
  readonly mode: number;
}

export function attributesOf(stats: Stats): FileAttributes {
  return { uid: stats.uid, gid: stats.gid, mode: stats.mode & 0o7777 };
}

/** True when the file already has the mode and (if one is configured) the owner asked for. */
export function hasAttributes(stats: Stats, mode: number, owner: FileOwner | undefined): boolean {
  const sameOwner = owner === undefined || (stats.uid === owner.uid && stats.gid === owner.gid);
  return (stats.mode & 0o7777) === mode && sameOwner;
}

/**
 * Would a process running as `reader` (its uid and primary gid) be allowed to read a file with
 * these attributes? The kernel's rule: the owner class when the uid matches, else the group class
 * when the gid matches, else other; root reads everything. Known limit: supplementary groups of
 * the reader are not known here, so a reader that could read through one is reported unreadable.
 */
export function isReadableBy(attributes: FileAttributes, reader: FileOwner): boolean {
  if (reader.uid === ROOT_UID) return true;
  if (attributes.uid === reader.uid) return (attributes.mode & 0o400) !== 0;
  if (attributes.gid === reader.gid) return (attributes.mode & 0o040) !== 0;
  return (attributes.mode & 0o004) !== 0;
}

/**
 * Throws NOT_READABLE unless the configured owner can read the file as it is on disk: a key the
 * service cannot read must stop that service's reload, not break it. Checks the real attributes
 * (after chown and chmod), so a file system that ignores chown (some FUSE, NFS with root_squash)
 * is caught too.
 */
export function assertReadableByOwner(
  attributes: FileAttributes,
  owner: FileOwner | undefined,
  target: TargetPath,
): void {
  if (owner === undefined || isReadableBy(attributes, owner)) return;
  const mode = attributes.mode.toString(8).padStart(4, '0');
  const message =
    `${target.relativePath} mode ${mode} owner ${attributes.uid}:${attributes.gid} is not readable by uid ${owner.uid}` +
    ` (gid ${owner.gid}); give the owner class a read bit in the configured mode, or check that the file system keeps chown`;
  throw new ApplyError('NOT_READABLE', message, target.relativePath);
}

/**
 * Throws MODE_NOT_KEPT when the file system did not keep the mode just set (vfat, some CIFS and
 * FUSE mounts): reporting success would have the server count the node out of sync and send the
 * bundle again, forever. Only another mount (or a mode the file system keeps) can fix it.
 */
export function assertModeKept(attributes: FileAttributes, mode: number, target: TargetPath): void {
  if (attributes.mode === mode) return;
  const octal = (bits: number) => bits.toString(8).padStart(4, '0');
  const message =
    `${target.relativePath} keeps mode ${octal(attributes.mode)} after chmod ${octal(mode)}; ` +
    'the file system ignores modes: mount the folder from one that keeps them';
  throw new ApplyError('MODE_NOT_KEPT', message, target.relativePath);
}

/** chown through an open descriptor, so a link planted meanwhile is never followed. */
export async function chownHandle(
  handle: LocalFile,
  owner: FileOwner,
  target: TargetPath,
): Promise<void> {
  try {
    await handle.chown(owner.uid, owner.gid);
  } catch (error) {
    throw applyErrorFromFileSystem(
      error,
      `setting owner ${owner.uid}:${owner.gid}`,
      target.relativePath,
    );
  }
}

/**
 * Sets mode (and owner, if given) of a file already in place, through a descriptor opened
 * without following links; returns the attributes found afterwards.
 */
export async function setAttributesNoFollow(
  target: TargetPath,
  mode: number,
  owner: FileOwner | undefined,
): Promise<FileAttributes> {
  let handle: LocalFile;
  try {
    handle = await open(target.absolutePath, READ_NO_FOLLOW);
  } catch (error) {
    throw applyErrorFromFileSystem(error, 'opening to set attributes', target.relativePath);
  }
  try {
    if (owner !== undefined) await chownHandle(handle, owner, target);
    await handle.chmod(mode).catch((error: unknown) => {
      throw applyErrorFromFileSystem(error, 'setting mode', target.relativePath);
    });
    return attributesOf(await handle.stat());
  } finally {
    await handle.close();
  }
}
