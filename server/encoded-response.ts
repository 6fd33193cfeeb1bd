import { AgentServiceService, SyncResponse } from '../common/contract';

/**
 * A SyncResponse already encoded, written to a Sync stream as it is. The hub encodes a bundle
 * push once and hands the same bytes to every agent, instead of every stream encoding its own
 * copy of the certificate and key bytes.
 */
export class EncodedSyncResponse {
  constructor(readonly bytes: Buffer) {}

  static encode(response: SyncResponse): EncodedSyncResponse {
    return new EncodedSyncResponse(Buffer.from(SyncResponse.encode(response).finish()));
  }
}

/** What the hub writes to a Sync stream. */
export type OutgoingSyncResponse = SyncResponse | EncodedSyncResponse;

/**
 * AgentService's definition, with a Sync response serializer that passes EncodedSyncResponse
 * bytes through and encodes anything else as the generated code does.
 */
export const AGENT_SERVICE_DEFINITION = {
  ...AgentServiceService,
  sync: {
    ...AgentServiceService.sync,
    responseSerialize: (value: OutgoingSyncResponse): Buffer =>
      value instanceof EncodedSyncResponse
        ? value.bytes
        : AgentServiceService.sync.responseSerialize(value),
  },
};
