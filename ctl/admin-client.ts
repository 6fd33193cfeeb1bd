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
  type ImportResponse,
  type PauseResponse,
  type ResumeResponse,
  type RollbackResponse,
  type WatchRolloutResponse,
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
    return this.call((deadline, done) =>
      this.client.getStatus({}, this.transport.metadata(), { deadline }, done),
    );
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.call((deadline, done) =>
      this.client.listNodes({}, this.transport.metadata(), { deadline }, done),
    );
  }

  getBundle(name: string, version = 0): Promise<GetBundleResponse> {
    return this.call((deadline, done) =>
      this.client.getBundle({ name, version }, this.transport.metadata(), { deadline }, done),
    );
  }

  reload(bundle: string, force: boolean): Promise<ReloadResponse> {
    return this.call((deadline, done) =>
      this.client.reload({ bundle, force }, this.transport.metadata(), { deadline }, done),
    );
  }

  rollout(bundle: string, version = 0): Promise<RolloutResponse> {
    return this.call((deadline, done) =>
      this.client.rollout({ bundle, version }, this.transport.metadata(), { deadline }, done),
    );
  }

  listRollouts(bundle: string, limit = 0): Promise<ListRolloutsResponse> {
    return this.call((deadline, done) =>
      this.client.listRollouts({ bundle, limit }, this.transport.metadata(), { deadline }, done),
    );
  }

  /** Runs the proof now; it may take as long as the targets' verify.timeoutMs, so no short deadline. */
  verify(bundle: string, timeoutMs = 15 * 60_000): Promise<VerifyResponse> {
    const deadline = new Date(Date.now() + timeoutMs);
    return this.call((_deadline, done) =>
      this.client.verify({ bundle }, this.transport.metadata(), { deadline }, done),
    );
  }

  pause(bundle: string): Promise<PauseResponse> {
    return this.call((deadline, done) =>
      this.client.pause({ bundle }, this.transport.metadata(), { deadline }, done),
    );
  }

  resume(bundle: string): Promise<ResumeResponse> {
    return this.call((deadline, done) =>
      this.client.resume({ bundle }, this.transport.metadata(), { deadline }, done),
    );
  }

  rollback(bundle: string, toVersion = 0): Promise<RollbackResponse> {
    return this.call((deadline, done) =>
      this.client.rollback({ bundle, toVersion }, this.transport.metadata(), { deadline }, done),
    );
  }

  /** The key travels only inside this call's (TLS) channel. */
  import(
    bundle: string,
    pem: { cert: Buffer; key: Buffer; chain: Buffer },
  ): Promise<ImportResponse> {
    return this.call((deadline, done) =>
      this.client.import({ bundle, ...pem }, this.transport.metadata(), { deadline }, done),
    );
  }

  /**
   * Streams the bundle's current rollout to `onEvent` until the server ends it (the rollout is
   * final) or `timeoutMs` passes; resolves true when the server ended it, false on the timeout.
   */
  watchRollout(
    bundle: string,
    onEvent: (event: WatchRolloutResponse) => void,
    options: {
      next?: boolean;
      timeoutMs?: number;
      /** Only snapshots, transitions, reloads and proofs; no event per confirmed node. */
      transitionsOnly?: boolean;
      /** Runs once the server has subscribed the watch: no later event of the bundle is missed. */
      onSubscribed?: () => void;
    } = {},
  ): Promise<boolean> {
    const timeoutMs = options.timeoutMs ?? 0;
    return new Promise((resolve, reject) => {
      const call = this.client.watchRollout(
        {
          bundle,
          next: options.next ?? false,
          transitionsOnly: options.transitionsOnly ?? false,
        },
        this.transport.metadata(),
      );
      if (options.onSubscribed) call.once('metadata', options.onSubscribed);
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          timedOut = true;
          call.cancel();
        }, timeoutMs);
      }
      call.on('data', onEvent);
      call.on('end', () => {
        clearTimeout(timer);
        resolve(true);
      });
      call.on('error', (error: grpc.ServiceError) => {
        clearTimeout(timer);
        if (timedOut && error.code === grpc.status.CANCELLED) return resolve(false);
        reject(this.callError(error));
      });
    });
  }

  close(): void {
    this.client.close();
  }

  private call<T>(
    start: (deadline: Date, done: (error: grpc.ServiceError | null, response: T) => void) => void,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      start(new Date(Date.now() + this.timeoutMs), (error, response) => {
        if (!error) return resolve(response);
        reject(this.callError(error));
      });
    });
  }

  private callError(error: grpc.ServiceError): AdminCallError {
    const hint =
      error.code === grpc.status.UNAVAILABLE || error.code === grpc.status.DEADLINE_EXCEEDED
        ? ` (is certsync-server running and listening on ${this.address}, with TLS unless started with insecure: true?)`
        : error.code === grpc.status.UNAUTHENTICATED
          ? ' (pass the admin token with --token-file or CERTSYNC_ADMIN_TOKEN_FILE, or an admin client certificate)'
          : error.code === grpc.status.CANCELLED
            ? ' (the server ended the call: it is stopping or restarting; run the command again once it is back)'
            : '';
    // grpc-js ends some connection errors with an empty "Resolution note: "; drop it.
    const details = (error.details || error.message).replace(/\.?\s*Resolution note:\s*$/, '');
    return new AdminCallError(`${this.address}: ${details}${hint}`, error.code, { cause: error });
  }
}
