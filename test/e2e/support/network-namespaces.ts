import { runCommand } from './command.js';
import {
  BRIDGE_ADDRESS,
  BRIDGE_NAME,
  NAME_PREFIX,
  SUBNET_PREFIX_LENGTH,
  type NodeSpec,
} from './layout.js';

/**
 * The iptables rule that lets bridged traffic between the nodes through. An earlier dockerd on
 * this host may have left the FORWARD chain on DROP, and with br_netfilter bridged frames pass
 * through that chain too; without the rule the nodes cannot reach each other (swarm join hangs).
 */
const FORWARD_RULE = ['FORWARD', '-i', BRIDGE_NAME, '-o', BRIDGE_NAME, '-j', 'ACCEPT'];

/** Creates the host bridge the nodes join, with its address and the FORWARD rule. */
export async function createBridge(): Promise<void> {
  await ip(['link', 'add', BRIDGE_NAME, 'type', 'bridge']);
  await ip(['addr', 'add', `${BRIDGE_ADDRESS}/${SUBNET_PREFIX_LENGTH}`, 'dev', BRIDGE_NAME]);
  await ip(['link', 'set', BRIDGE_NAME, 'up']);
  await runCommand('iptables', ['-I', ...FORWARD_RULE]);
}

/**
 * Creates the node's network namespace and a veth pair: the host end on the bridge, the other
 * end inside as eth0 with the node's address and a default route via the bridge.
 */
export async function createNodeNamespace(node: NodeSpec): Promise<void> {
  const hostEnd = `${NAME_PREFIX}-h${node.index}`;
  const nodeEnd = `${NAME_PREFIX}-p${node.index}`;
  const inside = (args: string[]) => ip(['-n', node.namespace, ...args]);

  await ip(['netns', 'add', node.namespace]);
  await ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', nodeEnd]);
  await ip(['link', 'set', hostEnd, 'master', BRIDGE_NAME, 'up']);
  await ip(['link', 'set', nodeEnd, 'netns', node.namespace]);
  await inside(['link', 'set', nodeEnd, 'name', 'eth0']);
  await inside(['addr', 'add', `${node.address}/${SUBNET_PREFIX_LENGTH}`, 'dev', 'eth0']);
  await inside(['link', 'set', 'eth0', 'up']);
  await inside(['link', 'set', 'lo', 'up']);
  await inside(['route', 'add', 'default', 'via', BRIDGE_ADDRESS]);
}

/** The harness's namespaces that exist now (from this run or an earlier one). */
export async function listOwnNamespaces(): Promise<string[]> {
  const { stdout } = await runCommand('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${NAME_PREFIX}-`));
}

/** PIDs of the processes whose network namespace is `namespace`. */
export async function namespacePids(namespace: string): Promise<number[]> {
  const { stdout } = await runCommand('ip', ['netns', 'pids', namespace], { allowFailure: true });
  return stdout.split('\n').filter(Boolean).map(Number);
}

/**
 * Deletes the harness's namespaces, veths, bridge and FORWARD rule. Processes still inside a
 * namespace must be gone first (see cleanup.ts); each step tolerates "already gone".
 */
export async function removeNetwork(): Promise<void> {
  for (const namespace of await listOwnNamespaces()) {
    await ip(['netns', 'del', namespace], true);
  }
  const { stdout } = await runCommand('ip', ['-o', 'link', 'show'], { allowFailure: true });
  const links = [...stdout.matchAll(/^\d+: ([^:@\s]+)/gm)].map((match) => match[1] ?? '');
  for (const link of links.filter((name) => name.startsWith(`${NAME_PREFIX}-`))) {
    await ip(['link', 'del', link], true);
  }
  // The rule may have been added more than once by interrupted runs; remove every copy.
  for (let removed = 0; removed < 10; removed++) {
    const result = await runCommand('iptables', ['-D', ...FORWARD_RULE], { allowFailure: true });
    if (result.code !== 0) break;
  }
}

async function ip(args: string[], allowFailure = false): Promise<void> {
  await runCommand('ip', args, { allowFailure });
}
