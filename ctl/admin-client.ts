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
    private readonly timeoutMs = 10_000,
  ) {
    this.client = new AdminServiceClient(address, grpc.credentials.createInsecure());
  }

  getStatus(): Promise<GetStatusResponse> {
    return this.call((deadline, done) => this.client.getStatus({}, new grpc.Metadata(), { deadline }, done));
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.call((deadline, done) => this.client.listNodes({}, new grpc.Metadata(), { deadline }, done));
  }

  getBundle(name: string, version = 0): Promise<GetBundleResponse> {
    return this.call((deadline, done) => this.client.getBundle({ name, version }, new grpc.Metadata(), { deadline }, done));
  }

  reload(bundle: string, force: boolean): Promise<ReloadResponse> {
    return this.call((deadline, done) => this.client.reload({ bundle, force }, new grpc.Metadata(), { deadline }, done));
  }

  rollout(bundle: string, version = 0): Promise<RolloutResponse> {
    return this.call((deadline, done) => this.client.rollout({ bundle, version }, new grpc.Metadata(), { deadline }, done));
  }

  listRollouts(bundle: string, limit = 0): Promise<ListRolloutsResponse> {
    return this.call((deadline, done) => this.client.listRollouts({ bundle, limit }, new grpc.Metadata(), { deadline }, done));
  }

  /** Runs the proof now; it may take as long as the targets' verify.timeoutMs, so no short deadline. */
  verify(bundle: string, timeoutMs = 15 * 60_000): Promise<VerifyResponse> {
    const deadline = new Date(Date.now() + timeoutMs);
    return this.call((_deadline, done) => this.client.verify({ bundle }, new grpc.Metadata(), { deadline }, done));
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
            ? ` (is certsync-server running and listening on ${this.address}?)`
            : '';
        reject(new AdminCallError(`${this.address}: ${error.details || error.message}${hint}`, error.code, { cause: error }));
      });
    });
  }
}
