import type * as grpc from '@grpc/grpc-js';

/** How a method is called: its path and whether each side streams. */
export interface LazyMethod {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** What a library's `addToServer(server)` needs of the server: only `addService`. */
export type ServiceRegistrar = Pick<grpc.Server, 'addService'>;

interface LoadedMethod {
  readonly definition: grpc.MethodDefinition<unknown, unknown>;
  readonly handler: grpc.UntypedHandleCall;
}

/**
 * Registers `methods` on `server` now and loads what serves them at their first call: `register`
 * runs then (once) and calls `addService` on the registrar it is given, as a library's
 * `addToServer` does. Use it for services that are rarely called (health, reflection) and whose
 * libraries cost memory from the moment they are required.
 *
 * The paths and streaming kinds are declared up front because grpc-js needs them before the
 * first call; resolveLazyService checks them against what `register` adds (a unit test runs it).
 */
export function addLazyService(
  server: ServiceRegistrar,
  methods: readonly LazyMethod[],
  register: (registrar: ServiceRegistrar) => void,
): void {
  let loaded: Map<string, LoadedMethod> | undefined;
  const method = (path: string): LoadedMethod => {
    loaded ??= resolveLazyService(methods, register);
    return loaded.get(path) as LoadedMethod;
  };

  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const { path, requestStream, responseStream } of methods) {
    definition[path] = {
      path,
      requestStream,
      responseStream,
      requestSerialize: (value) => method(path).definition.requestSerialize(value),
      requestDeserialize: (bytes) => method(path).definition.requestDeserialize(bytes),
      responseSerialize: (value) => method(path).definition.responseSerialize(value),
      responseDeserialize: (bytes) => method(path).definition.responseDeserialize(bytes),
    };
    implementation[path] = ((...args: unknown[]) =>
      (method(path).handler as (...handlerArgs: unknown[]) => void)(
        ...args,
      )) as grpc.UntypedHandleCall;
  }
  server.addService(definition, implementation);
}

/**
 * Runs `register` against a recording registrar and returns each declared method's definition
 * and handler. Throws when `register` adds a method that was not declared, or declares it with
 * other streaming kinds, or misses one: the lazy registration would then route calls wrongly.
 */
export function resolveLazyService(
  methods: readonly LazyMethod[],
  register: (registrar: ServiceRegistrar) => void,
): Map<string, LoadedMethod> {
  const added = new Map<string, LoadedMethod>();
  register({
    addService(service, implementation) {
      for (const [name, definition] of Object.entries(service)) {
        const handler = implementation[name] ?? implementation[definition.originalName ?? ''];
        if (!handler) throw new Error(`no handler for ${definition.path}`);
        added.set(definition.path, { definition, handler: handler.bind(implementation) });
      }
    },
  });
  for (const declared of methods) {
    const found = added.get(declared.path)?.definition;
    if (
      !found ||
      found.requestStream !== declared.requestStream ||
      found.responseStream !== declared.responseStream
    ) {
      throw new Error(`lazily registered method ${declared.path} does not match what was loaded`);
    }
  }
  if (added.size !== methods.length) {
    const undeclared = [...added.keys()].filter(
      (path) => !methods.some((declared) => declared.path === path),
    );
    throw new Error(`loaded methods not declared for lazy registration: ${undeclared.join(', ')}`);
  }
  return added;
}
