import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { PackageDefinition } from '@grpc/proto-loader';
import { addLazyService, type LazyMethod, type ServiceRegistrar } from './lazy-service';

/** `buf build` outputs written by `npm run generate`; found from source and from dist/. */
const DESCRIPTOR_SETS = ['certsync.binpb', 'health.binpb'];
const GENERATED_DIR_CANDIDATES = [
  path.resolve(__dirname, '../common/gen'),
  path.resolve(__dirname, '../../common/gen'),
];

/** The methods @grpc/reflection registers (v1 and v1alpha), declared before it is loaded. */
export const REFLECTION_METHODS: readonly LazyMethod[] = ['v1', 'v1alpha'].map((version) => ({
  path: `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
  requestStream: true,
  responseStream: true,
}));

/**
 * Adds server reflection so grpcurl and `buf curl` can list and call everything without .proto
 * files. The descriptor sets must exist at start; @grpc/reflection, @bufbuild/protobuf and
 * proto-loader (about 3 MB of heap together) are loaded and the descriptors parsed at the first
 * reflection call, which a server that nobody inspects never gets.
 *
 * Workaround: the usual route (proto-loader → @grpc/reflection) merges each package into one
 * synthetic file, drops its imports and its `syntax`, so clients cannot link `certsync.v1` to
 * `google.protobuf.Timestamp` and fail with "failed to find service … in schema". We feed the
 * reflection service the real descriptors from `buf build` instead. If proto-loader starts
 * keeping file names and imports, the plain route would work again.
 */
export function addReflection(server: ServiceRegistrar): void {
  const generatedDir = GENERATED_DIR_CANDIDATES.find((dir) =>
    DESCRIPTOR_SETS.every((file) => existsSync(path.join(dir, file))),
  );
  if (!generatedDir) {
    throw new Error(
      `descriptor sets not found in ${GENERATED_DIR_CANDIDATES.join(' or ')}; run npm run build`,
    );
  }
  addLazyService(server, REFLECTION_METHODS, (registrar) =>
    registerReflection(registrar, generatedDir),
  );
}

/** Parses the descriptor sets in `generatedDir` and adds @grpc/reflection's services. */
export function registerReflection(registrar: ServiceRegistrar, generatedDir: string): void {
  const { fromBinary, toBinary } =
    require('@bufbuild/protobuf') as typeof import('@bufbuild/protobuf');
  const { FileDescriptorProtoSchema, FileDescriptorSetSchema } =
    require('@bufbuild/protobuf/wkt') as typeof import('@bufbuild/protobuf/wkt');
  const { ReflectionService } = require('@grpc/reflection') as typeof import('@grpc/reflection');
  const fileDescriptorProtos = DESCRIPTOR_SETS.flatMap((file) =>
    fromBinary(FileDescriptorSetSchema, readFileSync(path.join(generatedDir, file))).file.map(
      (descriptor) => Buffer.from(toBinary(FileDescriptorProtoSchema, descriptor)),
    ),
  );

  // @grpc/reflection reads only `fileDescriptorProtos` from each entry; one entry carrying every
  // file is enough for it to index all services and messages, so the rest of the shape is unused.
  const entry = { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos };
  const definition = { 'certsync.v1': entry } as unknown as PackageDefinition;
  // addToServer only calls addService on what it is given (its type is the server of the
  // grpc-js copy nested under @grpc/reflection).
  type ReflectionServer = Parameters<InstanceType<typeof ReflectionService>['addToServer']>[0];
  new ReflectionService(definition).addToServer(registrar as unknown as ReflectionServer);
}
