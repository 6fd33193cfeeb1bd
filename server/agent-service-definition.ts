import { AgentServiceService, type SyncResponse } from '../common/contract';

/**
 * The AgentService definition with a response serializer that encodes each message object once.
 * grpc-js serializes on every write, so a bundle distributed to N agents was protobuf-encoded N
 * times; the hub sends one shared object per version instead, and this turns that into one
 * encoding. Safe because grpc-js copies the returned bytes into each frame, and because the hub
 * never changes a message it has sent; a message changed after its first write would go out
 * stale, so build a new object instead.
 */
export function createAgentServiceDefinition(): typeof AgentServiceService {
  const encoded = new WeakMap<SyncResponse, Buffer>();
  const serialize = AgentServiceService.sync.responseSerialize;
  return {
    ...AgentServiceService,
    sync: {
      ...AgentServiceService.sync,
      responseSerialize: (value: SyncResponse): Buffer => {
        let bytes = encoded.get(value);
        if (!bytes) {
          bytes = serialize(value);
          encoded.set(value, bytes);
        }
        return bytes;
      },
    },
  };
}
