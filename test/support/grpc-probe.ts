import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { AdminServiceService, AgentServiceClient, type SyncRequest } from '../../common/contract';
import type { ClientTransport } from '../../common/client-transport';

/** The outcome of one call as a test sees it: the status code and the server's words. */
export interface CallOutcome {
  code: grpc.status;
  details: string;
}

const PROBE_DEADLINE_MS = 5_000;

/**
 * Calls every AdminService method (taken from the generated service definition, so a new RPC is
 * covered without touching the test) with an empty request, and returns each method's outcome.
 */
export async function callEveryAdminRpc(
  address: string,
  transport: ClientTransport,
): Promise<Map<string, CallOutcome>> {
  const client = new grpc.Client(address, transport.credentials, transport.channelOptions);
  const outcomes = new Map<string, CallOutcome>();
  try {
    for (const method of Object.values(AdminServiceService)) {
      const request = method.requestDeserialize(Buffer.alloc(0));
      const outcome = await new Promise<CallOutcome>((resolve) => {
        client.makeUnaryRequest(
          method.path,
          (value: typeof request) => method.requestSerialize(value as never),
          (bytes: Buffer) => bytes,
          request,
          transport.metadata(),
          { deadline: new Date(Date.now() + PROBE_DEADLINE_MS) },
          (error) =>
            resolve({ code: error?.code ?? grpc.status.OK, details: error?.details ?? '' }),
        );
      });
      outcomes.set(method.path, outcome);
    }
  } finally {
    client.close();
  }
  return outcomes;
}

/**
 * Opens a Sync stream, sends `hello` and returns how the server ended it (or OK if it was still
 * open after the server had the time to refuse it).
 */
export async function probeSync(
  address: string,
  transport: ClientTransport,
  hello: SyncRequest,
  options: { maxWaitMs?: number } = {},
): Promise<CallOutcome> {
  const client = new AgentServiceClient(address, transport.credentials, transport.channelOptions);
  try {
    const call = client.sync(transport.metadata(), {
      deadline: new Date(Date.now() + PROBE_DEADLINE_MS),
    });
    const outcome = new Promise<CallOutcome>((resolve) => {
      call.on('data', () => undefined);
      call.on('error', () => undefined);
      call.on('status', (status: grpc.StatusObject) =>
        resolve({ code: status.code, details: status.details }),
      );
    });
    call.write(hello);
    const open = new Promise<CallOutcome>((resolve) =>
      setTimeout(
        () => resolve({ code: grpc.status.OK, details: 'still open' }),
        options.maxWaitMs ?? 2_000,
      ),
    );
    const result = await Promise.race([outcome, open]);
    call.cancel();
    return result;
  } finally {
    client.close();
  }
}

/** A hello for node `nodeId` with no files. */
export function helloFor(nodeId: string, hostname = 'probe'): SyncRequest {
  return {
    message: {
      $case: 'hello',
      value: { nodeId, hostname, agentVersion: 'probe', dir: '/probe', files: [] },
    },
  };
}

/** grpc.health.v1 Check for the whole server; `status` is the serving status the server reported. */
export async function checkHealth(
  address: string,
  transport: ClientTransport,
): Promise<CallOutcome & { status?: unknown }> {
  const check = healthService['Check'];
  if (!check) throw new Error('grpc-health-check has no Check method');
  const client = new grpc.Client(address, transport.credentials, transport.channelOptions);
  try {
    return await new Promise((resolve) =>
      client.makeUnaryRequest(
        check.path,
        check.requestSerialize,
        check.responseDeserialize,
        { service: '' },
        transport.metadata(),
        { deadline: new Date(Date.now() + PROBE_DEADLINE_MS) },
        (error, response?: { status?: unknown }) =>
          resolve({
            code: error?.code ?? grpc.status.OK,
            details: error?.details ?? '',
            status: response?.status,
          }),
      ),
    );
  } finally {
    client.close();
  }
}
