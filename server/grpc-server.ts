import * as grpc from '@grpc/grpc-js';
import {
  AdminServiceService,
  type AdminServiceServer,
  type AgentServiceServer,
} from '../common/contract';
import type { Logger } from '../common/log';
import { createAccessInterceptor } from './access-interceptor';
import { AGENT_SERVICE_DEFINITION } from './encoded-response';
import { HealthService } from './health-service';
import { addReflection } from './reflection';
import type { ServerTransport } from './server-transport';

export interface GrpcServerParts {
  agentService: AgentServiceServer;
  adminService: AdminServiceServer;
  transport: ServerTransport;
  /** Largest message accepted or sent (limits.maxMessageBytes); a bundle push is one message. */
  maxMessageBytes: number;
  /** Where refused calls are logged. */
  log: Logger;
}

export interface RunningGrpcServer {
  server: grpc.Server;
  health: HealthService;
  port: number;
  close(): Promise<void>;
}

/**
 * Builds the gRPC server: AgentService, AdminService, the standard health service and server
 * reflection (so `grpcurl` and `buf curl` work without the .proto files). Every call passes the
 * access interceptor first; health and reflection are open, the rest need their role.
 */
export async function startGrpcServer(
  listen: string,
  parts: GrpcServerParts,
): Promise<RunningGrpcServer> {
  const server = new grpc.Server({
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    'grpc.max_receive_message_length': parts.maxMessageBytes,
    'grpc.max_send_message_length': parts.maxMessageBytes,
    // Nothing serves channelz here; left on, grpc-js keeps per-connection and per-call trackers
    // for it: ~16 KB of RSS per agent (bench, N=1000). Known grpc-js 1.14 quirk with it off:
    // forceShutdown() no longer destroys open sessions (it finds them only through channelz), so
    // close() below does not wait for them; the process exits right after and drops them.
    'grpc.enable_channelz': 0,
    interceptors: [createAccessInterceptor(parts.transport.policy, parts.log)],
  });
  server.addService(AGENT_SERVICE_DEFINITION, parts.agentService);
  server.addService(AdminServiceService, parts.adminService);

  const health = new HealthService({
    '': 'NOT_SERVING',
    'certsync.v1.AgentService': 'NOT_SERVING',
    'certsync.v1.AdminService': 'NOT_SERVING',
  });
  health.addToServer(server);
  addReflection(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, parts.transport.credentials, (error, boundPort) =>
      error
        ? reject(new Error(`cannot listen on ${listen}: ${error.message}`, { cause: error }))
        : resolve(boundPort),
    );
  });

  return {
    server,
    health,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // Streams (agents, watchers) do not end by themselves; after 2 s close() stops waiting
        // for them, and the exit that follows a stop closes their connections.
        const forceTimer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(forceTimer);
          resolve();
        });
      }),
  };
}
