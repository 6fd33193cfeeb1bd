import * as grpc from '@grpc/grpc-js';
import {
  AdminServiceClient,
  type GetBundleResponse,
  type GetStatusResponse,
  type ListNodesResponse,
  type ListRolloutsResponse,
  type ReloadResponse,
  type RolloutResponse,
  type VerifyResponse,
} from '../common/contract';
import type { ClientTransport } from '../common/client-transport';

/** Thrown when the server cannot be reached or answers with an error status. */
export class AdminCallError extends Error {
  constructor(
    message: string,
    readonly code: grpc.status | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AdminCallError';
  }
}

/** A promise-based AdminService client; certsyncctl and the demo use nothing else. */
export class AdminClient {
  private readonly client: AdminServiceClient;

  constructor(
    private readonly address: string,
    private readonly transport: ClientTransport,
    private readonly timeoutMs = 10_000,
  ) {
    this.client = new AdminServiceClient(address, transport.credentials, transport.channelOptions);
  }

  getStatus(): Promise<GetStatusResponse> {
    return this.call((deadline, done) => this.client.getStatus({}, this.transport.metadata(), { deadline }, done));
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.call((deadline, done) => this.client.listNodes({}, this.transport.metadata(), { deadline }, done));
  }

  getBundle(name: string, version = 0): Promise<GetBundleResponse> {
    return this.call((deadline, done) => this.client.getBundle({ name, version }, this.transport.metadata(), { deadline }, done));
  }

  reload(bundle: string, force: boolean): Promise<ReloadResponse> {
    return this.call((deadline, done) => this.client.reload({ bundle, force }, this.transport.metadata(), { deadline }, done));
  }

  rollout(bundle: string, version = 0): Promise<RolloutResponse> {
    return this.call((deadline, done) => this.client.rollout({ bundle, version }, this.transport.metadata(), { deadline }, done));
  }

  listRollouts(bundle: string, limit = 0): Promise<ListRolloutsResponse> {
    return this.call((deadline, done) => this.client.listRollouts({ bundle, limit }, this.transport.metadata(), { deadline }, done));
  }

  /** Runs the proof now; it may take as long as the targets' verify.timeoutMs, so no short deadline. */
  verify(bundle: string, timeoutMs = 15 * 60_000): Promise<VerifyResponse> {
    const deadline = new Date(Date.now() + timeoutMs);
    return this.call((_deadline, done) => this.client.verify({ bundle }, this.transport.metadata(), { deadline }, done));
  }

  close(): void {
    this.client.close();
  }

  private call<T>(start: (deadline: Date, done: (error: grpc.ServiceError | null, response: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      start(new Date(Date.now() + this.timeoutMs), (error, response) => {
        if (!error) return resolve(response);
        const hint =
          error.code === grpc.status.UNAVAILABLE || error.code === grpc.status.DEADLINE_EXCEEDED
            ? ` (is certsync-server running and listening on ${this.address}, with TLS unless started with insecure: true?)`
            : error.code === grpc.status.UNAUTHENTICATED
              ? ' (pass the admin token with --token-file or CERTSYNC_ADMIN_TOKEN_FILE, or an admin client certificate)'
              : '';
        reject(new AdminCallError(`${this.address}: ${error.details || error.message}${hint}`, error.code, { cause: error }));
      });
    });
  }
}
