import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../common/log';
import type { VerifyConfig } from './config';
import type { DockerClient } from './docker-client';
import type { ProofResultData, ReplicaProofData } from './rollout';
import { probeServedCertificate } from './tls-probe';
import { ensureUnsealed, readUnsealKeys, SealedError } from './vault-seal';

/** One replica to probe: a running task's address, or a configured endpoint. */
interface Replica {
  taskId: string;
  nodeId: string;
  /** Candidate HOST:PORT addresses; the first that answers is used. */
  endpoints: string[];
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5_000;
const ATTEMPT_TIMEOUT_MS = 5_000;
const MIN_ATTEMPT_TIMEOUT_MS = 500;

/**
 * Proves a reload: every replica of the service serves the version's leaf (SHA-256 of the DER)
 * and, where Vault is configured, is unsealed — unsealing it with the configured key(s) when it
 * came back sealed. Each replica is retried with backoff until the deadline.
 */
export class Prover {
  constructor(
    private readonly docker: () => DockerClient,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async prove(
    service: string,
    verify: VerifyConfig,
    expected: { version: number; fingerprintSha256: string },
  ): Promise<ProofResultData> {
    const startedAt = this.now();
    const deadline = Date.now() + verify.timeoutMs;
    const result = (ok: boolean, error: string, replicas: ReplicaProofData[]): ProofResultData => ({
      service,
      version: expected.version,
      expectedFingerprintSha256: expected.fingerprintSha256,
      ok,
      error,
      startedAt,
      finishedAt: this.now(),
      replicas,
    });

    let replicas: Replica[];
    let keys: string[] | undefined;
    try {
      replicas = await this.replicas(service, verify);
      keys = verify.vault?.unsealKeyFile
        ? await readUnsealKeys(verify.vault.unsealKeyFile)
        : undefined;
    } catch (error) {
      return result(
        false,
        `proof of "${service}" could not start: ${(error as Error).message}`,
        [],
      );
    }
    if (replicas.length === 0)
      return result(false, `service "${service}" has no running task to probe`, []);

    const proofs = await Promise.all(
      replicas.map((replica) =>
        this.proveReplica(replica, verify, expected.fingerprintSha256, keys, deadline),
      ),
    );
    const failed = proofs.filter((proof) => !proof.ok);
    const error = failed
      .map((proof) => `${proof.taskId.slice(0, 12) || proof.endpoint}: ${proof.error}`)
      .join('; ');
    const fields = {
      service,
      version: expected.version,
      replicas: proofs.length,
      failed: failed.length,
    };
    if (failed.length === 0) this.log.info(fields, 'Reload proved');
    else this.log.error({ ...fields, error }, 'Reload not proved');
    return result(
      failed.length === 0,
      failed.length === 0
        ? ''
        : `${failed.length} of ${proofs.length} replica(s) failed the proof: ${error}`,
      proofs,
    );
  }

  private async replicas(service: string, verify: VerifyConfig): Promise<Replica[]> {
    if (verify.tls.endpoints)
      return verify.tls.endpoints.map((endpoint) => ({
        taskId: '',
        nodeId: '',
        endpoints: [endpoint],
      }));
    const tasks = await this.docker().listServiceTasks(service);
    return tasks
      .filter((task) => task.desiredState === 'running' && task.state === 'running')
      .map((task) => ({
        taskId: task.id,
        nodeId: task.nodeId,
        endpoints: task.addresses.map(
          (address) => (address.includes(':') ? `[${address}]` : address) + `:${verify.tls.port}`,
        ),
      }));
  }

  private async proveReplica(
    replica: Replica,
    verify: VerifyConfig,
    expectedFingerprint: string,
    keys: string[] | undefined,
    deadline: number,
  ): Promise<ReplicaProofData> {
    const proof: ReplicaProofData = {
      taskId: replica.taskId,
      nodeId: replica.nodeId,
      endpoint: replica.endpoints[0] ?? '',
      fingerprintSha256: '',
      notAfter: undefined,
      matches: false,
      sealState: '',
      ok: false,
      error: replica.endpoints.length === 0 ? 'the task has no network address' : '',
      attempts: 0,
    };
    let delayMs = FIRST_RETRY_MS;
    while (replica.endpoints.length > 0) {
      proof.attempts += 1;
      // Each try gets what is left of the deadline (at most ATTEMPT_TIMEOUT_MS), so a replica
      // that accepts connections but never answers cannot push the proof past verify.timeoutMs.
      const attemptTimeoutMs = Math.max(
        MIN_ATTEMPT_TIMEOUT_MS,
        Math.min(ATTEMPT_TIMEOUT_MS, deadline - Date.now()),
      );
      await this.attempt(replica, verify, expectedFingerprint, keys, proof, attemptTimeoutMs);
      if (proof.ok || Date.now() + delayMs > deadline) break;
      await sleep(delayMs);
      delayMs = Math.min(delayMs * 2, MAX_RETRY_MS);
    }
    return proof;
  }

  /** One try at one replica; fills in `proof`. Errors name the step, never a key. */
  private async attempt(
    replica: Replica,
    verify: VerifyConfig,
    expectedFingerprint: string,
    keys: string[] | undefined,
    proof: ReplicaProofData,
    timeoutMs: number,
  ): Promise<void> {
    const serverName = verify.tls.serverName;
    let lastError = '';
    for (const endpoint of replica.endpoints) {
      try {
        const served = await probeServedCertificate(endpoint, serverName, timeoutMs);
        Object.assign(proof, {
          endpoint,
          fingerprintSha256: served.fingerprintSha256,
          notAfter: served.notAfter,
        });
        proof.matches = served.fingerprintSha256 === expectedFingerprint;
        if (!proof.matches) {
          proof.error = `serves leaf ${served.fingerprintSha256.slice(0, 16)}…, expected ${expectedFingerprint.slice(0, 16)}…`;
          return;
        }
        if (verify.vault) {
          proof.sealState = await ensureUnsealed(endpoint, {
            serverName,
            expectedFingerprint,
            keys,
            timeoutMs,
          });
        }
        proof.ok = true;
        proof.error = '';
        return;
      } catch (error) {
        if (error instanceof SealedError) proof.sealState = 'sealed';
        lastError = `${endpoint}: ${(error as Error).message}`;
      }
    }
    proof.error = lastError;
  }
}
