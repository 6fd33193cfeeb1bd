import type { DockerEngine } from './docker-engine';

/** A container labelled as a Swarm task of `service`, that survives SIGHUP (it logs each one). */
export async function runSignalledTask(
  engine: DockerEngine,
  image: string,
  service: string,
  taskId: string,
): Promise<string> {
  const name = `${service}.1.${taskId}`;
  await engine.docker([
    ...['run', '-d', '--network', 'none', '--name', name],
    ...[
      '--label',
      `com.docker.swarm.service.name=${service}`,
      '--label',
      `com.docker.swarm.task.id=${taskId}`,
    ],
    ...[image, 'sh', '-c', 'trap "echo hup" HUP; while :; do sleep 0.2; done'],
  ]);
  return name;
}

/**
 * The signals the engine delivered to `container` between two instants (ms since the epoch), read
 * from the engine's own event log (`docker events`, kill events with their signal): an account of
 * real reloads that does not rely on anything certsync says about itself.
 */
export async function signalsDelivered(
  engine: DockerEngine,
  container: string,
  sinceMs: number,
  untilMs = Date.now(),
): Promise<string[]> {
  const seconds = (ms: number) => (ms / 1000).toFixed(3);
  const output = await engine.docker([
    ...['events', '--since', seconds(sinceMs), '--until', seconds(untilMs)],
    ...[
      '--filter',
      'type=container',
      '--filter',
      'event=kill',
      '--filter',
      `container=${container}`,
    ],
    ...['--format', '{{index .Actor.Attributes "signal"}}'],
  ]);
  return output.split('\n').filter((line) => line !== '');
}
