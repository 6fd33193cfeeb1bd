import { type Client, connectivityState } from '@grpc/grpc-js';

/** The two calls made on a client's channel (grpc-js exports only the implementation class). */
type WatchableChannel = Pick<
  ReturnType<Client['getChannel']>,
  'getConnectivityState' | 'watchConnectivityState'
>;

/** Thrown when the channel to certsync-server did not become ready; `state` says how far it got. */
export class ChannelNotReadyError extends Error {
  override readonly name = 'ChannelNotReadyError';

  constructor(
    readonly state: string,
    options?: { cause?: unknown },
  ) {
    super(
      `channel to certsync-server is ${state}; is the server running and reachable, does --ca-file ` +
        'trust its certificate for the --server (or --server-name) name, and does --insecure match the server?',
      options,
    );
  }
}

/**
 * Resolves once `channel` is READY; rejects as soon as it fails or the deadline passes.
 *
 * grpc-js's own waitForReady keeps waiting through TRANSIENT_FAILURE (retrying on its internal
 * schedule) until the deadline. The agent wants the first failure instead, so its own backoff,
 * with jitter across the fleet, decides when to knock again.
 */
export function waitForChannelReady(channel: WatchableChannel, deadlineMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const state = channel.getConnectivityState(true);
      if (state === connectivityState.READY) {
        resolve();
        return;
      }
      if (state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN) {
        reject(new ChannelNotReadyError(connectivityState[state]));
        return;
      }
      channel.watchConnectivityState(state, deadlineMs, (error) => {
        if (error) {
          reject(
            new ChannelNotReadyError(`${connectivityState[state]} at the deadline`, {
              cause: error,
            }),
          );
          return;
        }
        check();
      });
    };
    check();
  });
}
