import * as fs from 'node:fs';
import { promisify } from 'node:util';

/**
 * The agent's file-system calls, with the promise signatures of `node:fs/promises` but run on the
 * event loop's own thread — except fsync.
 *
 * Why: every `fs/promises` call is a round trip through libuv's thread pool (queue, wake a
 * thread, wake the loop back, settle a promise). On the certificate-sized files the agent handles
 * the syscall itself takes a few microseconds and the round trip tens of them; applying a
 * two-file bundle made ~60 such calls and measured ~3 ms of CPU, most of it that overhead
 * (BENCHMARKS.md, "Where the time goes"). fsync is the one call that waits on the disk, often for
 * milliseconds, so it alone still goes to the pool and never blocks the loop.
 *
 * Known limit: a folder on a mount that hangs (a dead NFS server) blocks the agent's event loop in
 * open/stat/rename instead of one pool thread; its connection then times out and the server
 * reports the node as not confirming, which is what an operator would need to see anyway.
 *
 * Errors are the same `ErrnoException`s (code, syscall, path) the promise API rejects with, and
 * every function here returns a promise, so a synchronous throw still reaches `.catch`.
 */

const fsyncOnPool = promisify(fs.fsync);

/** An open file descriptor; the counterpart of `FileHandle` for what the agent uses. */
export class LocalFile {
  private closed = false;

  constructor(readonly fd: number) {}

  async writeFile(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      offset += fs.writeSync(this.fd, data, offset, data.length - offset);
    }
  }

  /** The whole file, from its start, sized by fstat (one read for a file that does not grow). */
  async readFile(): Promise<Buffer> {
    const { size } = fs.fstatSync(this.fd);
    const chunks: Buffer[] = [];
    let total = 0;
    let chunk = Buffer.allocUnsafe(Math.max(size, 1) + 1);
    for (;;) {
      const read = fs.readSync(this.fd, chunk, 0, chunk.length, total);
      if (read === 0) break;
      chunks.push(chunk.subarray(0, read));
      total += read;
      if (read < chunk.length) break;
      chunk = Buffer.allocUnsafe(chunk.length);
    }
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
  }

  async stat(): Promise<fs.Stats> {
    return fs.fstatSync(this.fd);
  }

  async chmod(mode: number): Promise<void> {
    fs.fchmodSync(this.fd, mode);
  }

  async chown(uid: number, gid: number): Promise<void> {
    fs.fchownSync(this.fd, uid, gid);
  }

  /** Waits for the disk on a pool thread: the one call here that may take milliseconds. */
  async sync(): Promise<void> {
    await fsyncOnPool(this.fd);
  }

  /** Closes once; later calls do nothing (so `finally` blocks can always call it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

export async function open(filePath: string, flags: number, mode?: number): Promise<LocalFile> {
  return new LocalFile(fs.openSync(filePath, flags, mode));
}

export async function lstat(filePath: string): Promise<fs.Stats> {
  return fs.lstatSync(filePath);
}

export async function link(existingPath: string, newPath: string): Promise<void> {
  fs.linkSync(existingPath, newPath);
}

export async function rename(oldPath: string, newPath: string): Promise<void> {
  fs.renameSync(oldPath, newPath);
}

export async function unlink(filePath: string): Promise<void> {
  fs.unlinkSync(filePath);
}

export async function mkdir(folder: string, options: { mode: number }): Promise<void> {
  fs.mkdirSync(folder, options);
}

export async function rmdir(folder: string): Promise<void> {
  fs.rmdirSync(folder);
}

export async function readdir(folder: string): Promise<fs.Dirent[]> {
  return fs.readdirSync(folder, { withFileTypes: true });
}
