import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Set to `1` (CI does) to turn a missing tool from a skipped test into a failed one, so a broken
 * install step can never pass as a green run that tested nothing.
 */
export const REQUIRE_TOOLS_ENV = 'CERTSYNC_REQUIRE_TOOLS';

/** Folders searched after PATH: where Debian puts packaged tools, even for a sparse PATH. */
const FALLBACK_DIRS = ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin'];

/** The Debian package that brings each tool, for the install hint in skip and error messages. */
const DEBIAN_PACKAGES: Readonly<Record<string, string>> = {
  pebble: 'pebble',
  certbot: 'certbot',
  openssl: 'openssl',
  dockerd: 'docker.io',
  docker: 'docker.io',
  ip: 'iproute2',
  iptables: 'iptables',
  nsenter: 'util-linux',
  unshare: 'util-linux',
  busybox: 'busybox-static',
  go: 'golang-go',
  mount: 'mount',
  umount: 'mount',
  chattr: 'e2fsprogs',
};

/** Thrown when a test needs a tool that is not installed and skipping is not allowed. */
export class ToolMissingError extends Error {
  constructor(readonly tools: readonly string[]) {
    super(`${describeMissing(tools)} (${REQUIRE_TOOLS_ENV}=1 forbids skipping)`);
    this.name = 'ToolMissingError';
  }
}

/** The result of checking a test's tools, made once at module level and used twice (see below). */
export interface ToolCheck {
  /** For `test(name, { skip }, …)`: the reason to skip, or false when the test must run. */
  readonly skip: string | false;
  /** Call first in the test body: the tools' absolute paths, or a ToolMissingError. */
  require(): Readonly<Record<string, string>>;
}

/** The absolute path of an executable found on PATH or in the usual system folders. */
export function findTool(name: string): string | undefined {
  const pathDirs = (process.env['PATH'] ?? '').split(delimiter).filter((dir) => dir !== '');

  for (const dir of [...pathDirs, ...FALLBACK_DIRS]) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Checks external tools for a test that drives them. Use both halves:
 *
 *     const tools = checkTools(['pebble', 'certbot']);
 *     test('renews', { skip: tools.skip }, async () => {
 *       const { pebble } = tools.require();
 *
 * Without CERTSYNC_REQUIRE_TOOLS=1 a missing tool skips the test and node:test prints the reason
 * with an install hint. With it, `skip` is false so the test runs, and `require()` fails it.
 */
export function checkTools(names: readonly string[]): ToolCheck {
  const found = new Map(names.map((name) => [name, findTool(name)] as const));
  const missing = names.filter((name) => found.get(name) === undefined);
  const mustFail = process.env[REQUIRE_TOOLS_ENV] === '1';

  return {
    skip: missing.length > 0 && !mustFail ? describeMissing(missing) : false,
    require() {
      if (missing.length > 0) throw new ToolMissingError(missing);
      const paths: Record<string, string> = {};
      for (const [name, path] of found) if (path !== undefined) paths[name] = path;
      return paths;
    },
  };
}

/** Finds one tool or throws ToolMissingError, for harness code that cannot run without it. */
export function requireTool(name: string): string {
  const path = findTool(name);
  if (path === undefined) throw new ToolMissingError([name]);
  return path;
}

function describeMissing(tools: readonly string[]): string {
  const packages = [...new Set(tools.map((tool) => DEBIAN_PACKAGES[tool] ?? tool))];
  const verb = tools.length === 1 ? 'is' : 'are';
  return `${tools.join(', ')} ${verb} not installed: apt-get install ${packages.join(' ')}`;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * For tests that need root (chown to other users, mounts, chattr) and, optionally, some tools.
 * Skips with the reason when not root, unless CERTSYNC_REQUIRE_TOOLS=1 turns that into a failure.
 */
export function checkRootAndTools(purpose: string, names: readonly string[] = []): ToolCheck {
  const tools = checkTools(names);
  const notRoot = process.getuid?.() !== 0 ? `needs root (${purpose})` : '';
  const mustFail = process.env[REQUIRE_TOOLS_ENV] === '1';
  const skip = notRoot !== '' && !mustFail ? notRoot : tools.skip;
  return {
    skip,
    require() {
      if (notRoot !== '') throw new Error(`${notRoot} (${REQUIRE_TOOLS_ENV}=1 forbids skipping)`);
      return tools.require();
    },
  };
}
