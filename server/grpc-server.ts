import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import {
  AdminServiceService,
  type AdminServiceServer,
  type AgentServiceServer,
} from '../common/contract';
import type { Logger } from '../common/log';
import { createAccessInterceptor } from './access-interceptor';
import { createAgentServiceDefinition } from './agent-service-definition';
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
  health: HealthImplementation;
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
    interceptors: [createAccessInterceptor(parts.transport.policy, parts.log)],
  });
  server.addService(createAgentServiceDefinition(), parts.agentService);
  server.addService(AdminServiceService, parts.adminService);

  const health = new HealthImplementation({
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
        const forceTimer = setTimeout(() => server.forceShutdown(), 2_000);
        server.tryShutdown(() => {
          clearTimeout(forceTimer);
          resolve();
        });
      }),
  };
}
