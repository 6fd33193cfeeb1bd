import { spawnSync } from 'node:child_process';

/** The Debian package that provides each peer's command. */
const PEER_PACKAGES = { lsyncd: ['lsyncd', 'rsync'], 'ansible-playbook': ['ansible'] } as const;
export type PeerCommand = keyof typeof PEER_PACKAGES;

function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure the peer tools are there: installs missing ones with apt-get when running as root,
 * otherwise returns the reason each one will be skipped.
 */
export function ensurePeers(say: (line: string) => void): Map<PeerCommand, string> {
  const missing = (Object.keys(PEER_PACKAGES) as PeerCommand[]).filter(
    (command) => !hasCommand(command) || (command === 'lsyncd' && !hasCommand('rsync')),
  );
  const skipped = new Map<PeerCommand, string>();
  if (missing.length === 0) return skipped;
  const packages = missing.flatMap((command) => PEER_PACKAGES[command]);
  if (process.getuid?.() !== 0 || !hasCommand('apt-get')) {
    for (const command of missing)
      skipped.set(
        command,
        `${command} not installed and not root with apt-get (apt-get install -y ${PEER_PACKAGES[command].join(' ')})`,
      );
    return skipped;
  }
  say(`installing peers: apt-get install -y ${packages.join(' ')}`);
  spawnSync('apt-get', ['install', '-y', ...packages], {
    stdio: 'ignore',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  for (const command of missing) {
    if (!hasCommand(command))
      skipped.set(command, `apt-get install -y ${PEER_PACKAGES[command].join(' ')} failed`);
  }
  return skipped;
}
