import type { HealthImplementation, ServingStatus } from 'grpc-health-check';
import { addLazyService, type LazyMethod, type ServiceRegistrar } from './lazy-service';

/** The methods grpc-health-check registers, declared before it is loaded. */
export const HEALTH_METHODS: readonly LazyMethod[] = [
  { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false },
  { path: '/grpc.health.v1.Health/Watch', requestStream: false, responseStream: true },
  { path: '/grpc.health.v1.Health/List', requestStream: false, responseStream: false },
];

/**
 * The standard gRPC health service (grpc.health.v1.Health). Statuses are kept here from the
 * start; grpc-health-check, proto-loader and the health .proto (about 1.5 MB of heap) are loaded
 * at the first health call, which a server without probes never gets.
 */
export class HealthService {
  private readonly statuses: Map<string, ServingStatus>;
  private implementation: HealthImplementation | undefined;

  constructor(initial: Record<string, ServingStatus>) {
    this.statuses = new Map(Object.entries(initial));
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    this.implementation?.setStatus(service, status);
  }

  addToServer(server: ServiceRegistrar): void {
    addLazyService(server, HEALTH_METHODS, (registrar) => this.register(registrar));
  }

  /** Loads grpc-health-check with the statuses set so far and adds its service. */
  register(registrar: ServiceRegistrar): void {
    const { HealthImplementation: Implementation } =
      require('grpc-health-check') as typeof import('grpc-health-check');
    const implementation = new Implementation(Object.fromEntries(this.statuses));
    // addToServer only calls addService on what it is given.
    type HealthServer = Parameters<HealthImplementation['addToServer']>[0];
    implementation.addToServer(registrar as unknown as HealthServer);
    this.implementation = implementation;
  }
}
