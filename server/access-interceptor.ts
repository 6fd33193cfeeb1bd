import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from '../common/log';
import { authorizeCall, type AccessPolicy } from './access-policy';
import { toGrpcStatus } from './status-mapping';

/**
 * The one place where calls are authenticated: a server interceptor that runs before any
 * handler sees the call (a refused Sync stream never reaches the agent service). The
 * authorization header is removed once checked, so no handler can log or echo the token.
 */
export function createAccessInterceptor(policy: AccessPolicy, log: Logger): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, passOn) => {
            try {
              authorizeCall(policy, method.path, metadata, call.getAuthContext());
            } catch (error) {
              const refusal = toGrpcStatus(error, log, { method: method.path });
              log.warn(
                {
                  method: method.path,
                  peer: call.getPeer(),
                  code: refusal.code,
                  reason: refusal.details,
                },
                'Call refused',
              );
              call.sendStatus(refusal);
              return;
            }
            metadata.remove('authorization');
            passOn(metadata);
          },
        }),
    });
}
