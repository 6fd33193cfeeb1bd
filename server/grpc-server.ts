import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import {
  AdminServiceService,
  AgentServiceService,
  type AdminServiceServer,
  type AgentServiceServer,
} from '../common/contract';
import { addReflection } from './reflection';

/** Largest message accepted or sent; a bundle is a few KiB, so this is generous. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface GrpcServerParts {
  agentService: AgentServiceServer;
  adminService: AdminServiceServer;
}

export interface RunningGrpcServer {
  server: grpc.Server;
  health: HealthImplementation;
  port: number;
  close(): Promise<void>;
}

/**
 * Builds the gRPC server: AgentService, AdminService, the standard health service and server
 * reflection (so `grpcurl` and `buf curl` work without the .proto files).
 */
export async function startGrpcServer(listen: string, parts: GrpcServerParts): Promise<RunningGrpcServer> {
  const server = new grpc.Server({
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  server.addService(AgentServiceService, parts.agentService);
  server.addService(AdminServiceService, parts.adminService);

  const health = new HealthImplementation({
    '': 'NOT_SERVING',
    'certsync.v1.AgentService': 'NOT_SERVING',
    'certsync.v1.AdminService': 'NOT_SERVING',
  });
  health.addToServer(server);
  addReflection(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(new Error(`cannot listen on ${listen}: ${error.message}`, { cause: error })) : resolve(boundPort),
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
