import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Names and folders of the e2e swarm. Everything the harness creates on the host carries the
 * `cse2e` prefix (namespaces, bridge, veths, cgroups) or lives under one base folder, so a
 * leftover from an earlier run can be found and removed without touching anyone else's engines.
 */
export const NAME_PREFIX = 'cse2e';
export const BRIDGE_NAME = `${NAME_PREFIX}-br0`;
export const BRIDGE_ADDRESS = '10.78.0.1';
export const SUBNET_PREFIX_LENGTH = 24;

/** One swarm node: its namespace, address and the hostname its engine reports. */
export interface NodeSpec {
  readonly index: number;
  readonly namespace: string;
  readonly address: string;
  readonly hostname: string;
  readonly role: 'manager' | 'worker';
}

/** The three nodes; the first `managerCount` join as managers (the failover e2e uses three). */
export function nodeSpecs(managerCount = 1): readonly NodeSpec[] {
  return [1, 2, 3].map((index) => ({
    index,
    namespace: `${NAME_PREFIX}-n${index}`,
    address: `10.78.0.${10 + index}`,
    hostname: `node${index}`,
    role: index <= managerCount ? 'manager' : 'worker',
  }));
}

export const NODE_SPECS: readonly NodeSpec[] = nodeSpecs(1);

/** The folder every node's agent writes into; each engine sees its own node folder there. */
export const NODE_SSL_DIR = '/opt/iklimco/ssl';

/** Folders of one e2e run: `run/` is removed at the start of every run, `cache/` is kept. */
export interface E2eLayout {
  readonly baseDir: string;
  /** Per-run state: engines, node folders, certbot, pebble, configs, logs. */
  readonly runDir: string;
  /** The builder engine's data root, kept between runs so image layers are reused. */
  readonly cacheDir: string;
  engineDir(name: string): string;
  /** The host folder bound at /opt/iklimco/ssl inside node `index`'s mount namespace. */
  nodeSslDir(index: number): string;
}

/** Where the harness keeps its folders: CERTSYNC_E2E_DIR, else `<tmpdir>/certsync-e2e`. */
export function createLayout(baseDir = process.env['CERTSYNC_E2E_DIR']): E2eLayout {
  // Short on purpose: dockerd's and containerd's unix sockets live below it (108-byte limit).
  const base = baseDir ?? path.join(tmpdir(), 'certsync-e2e');
  const runDir = path.join(base, 'run');
  return {
    baseDir: base,
    runDir,
    cacheDir: path.join(base, 'cache'),
    engineDir: (name) => path.join(runDir, name),
    nodeSslDir: (index) => path.join(runDir, `n${index}`, 'ssl'),
  };
}
