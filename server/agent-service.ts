import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { AgentServiceServer, SyncRequest, SyncResponse } from '../common/contract';
import type { Logger } from '../common/log';
import type { ExpectedNodes } from './expected-nodes';
import type { OutgoingSyncResponse } from './encoded-response';
import type { AgentSession, FanoutHub } from './fanout-hub';
import type { SignalDispatcher } from './signal-dispatcher';
import { InvalidRequestError, toGrpcStatus } from './status-mapping';

/** How long a new stream may stay silent before its hello; a client that never speaks is dropped. */
export const HELLO_TIMEOUT_MS = 10_000;

const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

type SyncCall = ServerDuplexStream<SyncRequest, SyncResponse>;

/** Where signal reports go (the SignalDispatcher). */
type SignalReports = Pick<SignalDispatcher, 'handleReport' | 'sessionClosed'>;

/** The AgentService implementation: turns one Sync stream into one hub session. */
export function createAgentService(
  hub: FanoutHub,
  expectedNodes: ExpectedNodes,
  signals: SignalReports,
  log: Logger,
): AgentServiceServer {
  return {
    sync(call: SyncCall) {
      const peer = call.getPeer();
      let session: AgentSession | undefined;
      let failed = false;
      let closed = false;
      // Messages are handled one at a time: the hello waits for admission (a Docker API call in
      // swarm mode), and nothing after it may overtake it.
      let queue = Promise.resolve();
      const fail = (error: unknown) => {
        if (failed) return;
        failed = true;
        call.emit('error', toGrpcStatus(error, log, { peer, node: session?.nodeId }));
      };
      const helloTimer = setTimeout(
        () => fail(new InvalidRequestError(`no hello within ${HELLO_TIMEOUT_MS} ms`)),
        HELLO_TIMEOUT_MS,
      );

      const handle = async (request: SyncRequest) => {
        if (failed) return;
        try {
          const message = request.message;
          if (!session) {
            if (message?.$case !== 'hello')
              throw new InvalidRequestError('the first message on Sync must be a hello');
            const nodeId = message.value.nodeId;
            if (!NODE_ID_PATTERN.test(nodeId)) {
              throw new InvalidRequestError(
                `node ID "${nodeId.slice(0, 64)}" is not valid (letters, digits, ".", "_", "-")`,
              );
            }
            clearTimeout(helloTimer);
            await expectedNodes.admit(nodeId);
            if (closed) return;
            const candidate: AgentSession = {
              nodeId,
              peer,
              // The stream's serializer (AGENT_SERVICE_DEFINITION) takes encoded responses too.
              send: (response: OutgoingSyncResponse) => call.write(response as SyncResponse),
            };
            hub.attach(candidate, message.value);
            session = candidate;
            return;
          }
          switch (message?.$case) {
            case 'applyReport':
              hub.handleApplyReport(session, message.value);
              return;
            case 'driftReport':
              hub.handleDriftReport(session, message.value);
              return;
            case 'signalReport':
              signals.handleReport(session, message.value);
              return;
            default:
              throw new InvalidRequestError(
                `unexpected message ${message?.$case ?? '(empty)'} after hello`,
              );
          }
        } catch (error) {
          fail(error);
        }
      };
      call.on('data', (request: SyncRequest) => {
        queue = queue.then(() => handle(request));
      });

      const finish = (reason: string) => {
        closed = true;
        clearTimeout(helloTimer);
        if (!session) return;
        hub.detach(session, reason);
        signals.sessionClosed(session);
      };
      call.on('end', () => {
        finish('stream ended');
        call.end();
      });
      call.on('cancelled', () => finish('cancelled'));
      call.on('error', () => finish('stream error'));
      call.on('close', () => finish('closed'));
    },
  };
}
