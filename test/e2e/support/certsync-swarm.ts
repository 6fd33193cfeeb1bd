import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';

import { createCertbot, type Certbot } from '../../support/certbot.js';
import { startPebble, type Pebble } from '../../support/pebble.js';
import { createTransportFixture } from '../../support/transport-fixture.js';
import { removeLeftovers } from './cleanup.js';
import { startEngine, type DockerEngine } from './docker-engine.js';
import { buildImage, copyImages, ensureBaseImage } from './images.js';
import { NAME_PREFIX, NODE_SSL_DIR, nodeSpecs, type E2eLayout } from './layout.js';
import { createBridge, createNodeNamespace } from './network-namespaces.js';
import type { PhaseTimer } from './phase-timer.js';
import {
  STAND_INS,
  UNSEAL_KEY_COUNT,
  UNSEAL_SECRET,
  extraBundles,
  standInServiceArgs,
  type StandIn,
} from './stand-ins.js';
import { createSwarm, type SwarmMember } from './swarm.js';

/** The images the e2e builds, tagged so they never collide with a production tag. */
export const E2E_IMAGES = {
  server: 'certsync/server:e2e',
  agent: 'certsync/agent:e2e',
  vault: 'certsync-test/vault-stand-in:e2e',
} as const;

export const STACK_NAME = 'certsync';
export const LINEAGE = STAND_INS.vault.lineage;
export const VAULT_SERVICE = STAND_INS.vault.service;
/** The stack's overlay network: `<stack>_<network key>` in deploy/docker-stack.yml. */
export const STACK_NETWORK = `${STACK_NAME}_certsync`;

/** Everything one e2e run brought up; `stop()` tears it all down. */
export interface CertsyncSwarm {
  readonly layout: E2eLayout;
  readonly members: readonly SwarmMember[];
  readonly manager: DockerEngine;
  readonly builder: DockerEngine;
  readonly certbot: Certbot;
  /** certbot's `live/iklim.co`, the folder deploy/certsync.yml's bundle reads. */
  readonly liveDir: string;
  /** The unseal keys in the `vault_unseal_key` secret (random per run). */
  readonly unsealKeys: readonly string[];
  /**
   * Deploys deploy/docker-stack.yml as an operator would, with `config` as the server config,
   * after creating the unseal secret the stack expects to exist.
   */
  deployStack(configPath: string, options?: DeployOptions): Promise<void>;
  /** Creates the stand-in services of stand-ins.ts (dnsrr, on the stack's network). */
  createStandInServices(): Promise<void>;
  stop(options: { keepRunDir: boolean }): Promise<void>;
}

/** Extra stack files and secrets for a deploy (the failover e2e's HA overlay and state key). */
export interface DeployOptions {
  /** Stack files deployed on top of deploy/docker-stack.yml, paths relative to the project. */
  overlayFiles?: readonly string[];
  /** Secrets created before the deploy: name and content. */
  secrets?: ReadonlyArray<readonly [string, string]>;
}

/**
 * Brings up the e2e world on this host: a real ACME CA and certbot lineage, three dockerd nodes
 * in their own namespaces joined into a swarm, and the images built from the real Dockerfiles
 * and loaded into every node. Leftovers of an earlier run are removed first.
 */
export async function startCertsyncSwarm(
  layout: E2eLayout,
  projectRoot: string,
  timer: PhaseTimer,
  options: { managerCount?: number } = {},
): Promise<CertsyncSwarm> {
  const specs = nodeSpecs(options.managerCount ?? 1);
  await timer.time('cleanup of earlier runs', () => removeLeftovers(layout));
  await mkdir(layout.runDir, { recursive: true });

  let pebble: Pebble | undefined;
  const engines: DockerEngine[] = [];
  const stop = async ({ keepRunDir }: { keepRunDir: boolean }) => {
    await pebble?.stop();
    await Promise.all(engines.map((engine) => engine.stop()));
    await removeLeftovers(layout, { keepRunDir });
  };

  try {
    const certbotReady = timer.time('pebble + certbot issue', async () => {
      pebble = await startPebble(layout.runDir);
      const certbot = createCertbot({
        workDir: layout.runDir,
        directoryUrl: pebble.directoryUrl,
        apiCaPath: pebble.apiCaPath,
      });
      for (const standIn of Object.values(STAND_INS))
        await certbot.issue(standIn.lineage, standIn.domains);
      return certbot;
    });
    // Handled below; marked handled now so an engine failure meanwhile is not an unhandled rejection.
    certbotReady.catch(() => undefined);

    const [builder, ...nodeEngines] = await timer.time('network + 4 engines start', async () => {
      await createBridge();
      await Promise.all(specs.map((spec) => createNodeNamespace(spec)));
      return Promise.all([
        startEngine({ name: `${NAME_PREFIX}-builder`, dir: path.join(layout.cacheDir, 'builder') }),
        ...specs.map((spec) =>
          startEngine({
            name: spec.namespace,
            dir: layout.engineDir(`n${spec.index}`),
            node: {
              namespace: spec.namespace,
              hostname: spec.hostname,
              sslDir: layout.nodeSslDir(spec.index),
            },
          }),
        ),
      ]);
    });
    engines.push(...nodeEngines);
    if (builder) engines.push(builder);
    if (!builder || nodeEngines.length !== specs.length) throw new Error('engines did not start');

    const [members] = await Promise.all([
      timer.time('swarm init + join', () =>
        createSwarm(specs.map((spec, index) => ({ spec, engine: nodeEngines[index]! }))),
      ),
      timer.time('image build (base, server, agent, vault stand-in)', () =>
        buildAll(builder, layout, projectRoot),
      ),
    ]);
    await timer.time('image save + load into 3 nodes', () =>
      copyImages(
        builder,
        nodeEngines,
        Object.values(E2E_IMAGES),
        path.join(layout.runDir, 'images.tar'),
      ),
    );
    const certbot = await certbotReady;
    const manager = nodeEngines[0]!;
    const unsealKeys = Array.from({ length: UNSEAL_KEY_COUNT }, () =>
      randomBytes(24).toString('base64'),
    );

    return {
      layout,
      members,
      manager,
      builder,
      certbot,
      liveDir: certbot.liveDir(LINEAGE),
      unsealKeys,
      async deployStack(configPath, deployOptions = {}) {
        for (const [name, content] of deployOptions.secrets ?? [])
          await manager.docker(['secret', 'create', name, '-'], { input: content });
        // The secrets deploy/docker-stack.yml expects to exist. `docker secret create NAME -`
        // reads the secret from stdin.
        await manager.docker(['secret', 'create', UNSEAL_SECRET, '-'], {
          input: `${unsealKeys.join('\n')}\n`,
        });
        // Agents dial the stack's service name `server`; certsyncctl in the server's container
        // dials 127.0.0.1 with `localhost` as the name (both on the certificate).
        const transport = await createTransportFixture(path.join(layout.runDir, 'transport'), {
          serverDnsNames: ['server'],
        });
        for (const [name, file] of [
          ['certsync_ca', transport.caFile],
          ['certsync_server_cert', transport.serverCertFile],
          ['certsync_server_key', transport.serverKeyFile],
          ['certsync_agent_token', transport.agentTokenFile],
          ['certsync_admin_token', transport.adminTokenFile],
        ] as const)
          await manager.docker(['secret', 'create', name, file]);
        await manager.docker(
          [
            'stack',
            'deploy',
            '--resolve-image',
            'never',
            '-c',
            path.join(projectRoot, 'deploy/docker-stack.yml'),
            ...(deployOptions.overlayFiles ?? []).flatMap((file) => [
              '-c',
              path.join(projectRoot, file),
            ]),
            STACK_NAME,
          ],
          {
            env: {
              CERTSYNC_SERVER_IMAGE: E2E_IMAGES.server,
              CERTSYNC_AGENT_IMAGE: E2E_IMAGES.agent,
              // The manager's engine shares the host's files, so certbot's folder is bound as is.
              CERTSYNC_LETSENCRYPT_DIR: certbot.configDir,
              CERTSYNC_CONFIG_FILE: configPath,
            },
          },
        );
      },
      async createStandInServices() {
        for (const standIn of Object.values(STAND_INS) as StandIn[]) {
          await manager.docker([
            'service',
            'create',
            '--detach',
            '--no-resolve-image',
            '--name',
            standIn.service,
            ...standInServiceArgs(standIn),
            '--endpoint-mode',
            'dnsrr',
            '--network',
            STACK_NETWORK,
            '--stop-grace-period',
            '5s',
            // Docker watches each updated task this long before the next (default 5 s); the
            // reload waits for the whole update, so a shorter watch keeps the suite quick.
            '--update-monitor',
            '2s',
            '--mount',
            `type=bind,source=${NODE_SSL_DIR},target=/vault/tls,readonly`,
            E2E_IMAGES.vault,
          ]);
        }
      },
      stop,
    };
  } catch (error) {
    await stop({ keepRunDir: true }).catch(() => undefined);
    throw error;
  }
}

/**
 * Writes the e2e's server config: deploy/certsync.yml (the production example) with a shorter
 * convergeTimeoutMs, so the stalled-rollout test waits seconds instead of five minutes, and the
 * `web` and `hold` bundles of stand-ins.ts after its own.
 */
export async function writeE2eConfig(
  projectRoot: string,
  runDir: string,
  convergeTimeoutMs: number,
): Promise<string> {
  const production = parseYaml(
    await readFile(path.join(projectRoot, 'deploy/certsync.yml'), 'utf8'),
  ) as Record<string, unknown>;
  const configPath = path.join(runDir, 'certsync.yml');
  const bundles = [...(production['bundles'] as unknown[]), ...extraBundles()];
  await writeFile(configPath, stringifyYaml({ ...production, convergeTimeoutMs, bundles }));
  return configPath;
}

async function buildAll(
  builder: DockerEngine,
  layout: E2eLayout,
  projectRoot: string,
): Promise<void> {
  const baseImage = await ensureBaseImage(builder, layout.runDir);
  // Server first: the agent's build stage is identical and comes from the layer cache.
  for (const role of ['server', 'agent'] as const) {
    await buildImage(builder, {
      context: projectRoot,
      dockerfile: path.join(projectRoot, `Dockerfile.${role}`),
      tag: E2E_IMAGES[role],
      baseImage,
    });
  }
  const vaultContext = path.join(projectRoot, 'test/e2e/fixtures/vault-stand-in');
  await buildImage(builder, {
    context: vaultContext,
    dockerfile: path.join(vaultContext, 'Dockerfile'),
    tag: E2E_IMAGES.vault,
    baseImage,
  });
}
