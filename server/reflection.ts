import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

/** `buf build` outputs written by `npm run generate`; found from source and from dist/. */
const DESCRIPTOR_SETS = ['certsync.binpb', 'health.binpb'];
const GENERATED_DIR_CANDIDATES = [
  path.resolve(__dirname, '../common/gen'),
  path.resolve(__dirname, '../../common/gen'),
];

/**
 * Adds server reflection so grpcurl and `buf curl` can list and call everything without .proto
 * files.
 *
 * Workaround: the usual route (proto-loader → @grpc/reflection) merges each package into one
 * synthetic file, drops its imports and its `syntax`, so clients cannot link `certsync.v1` to
 * `google.protobuf.Timestamp` and fail with "failed to find service … in schema". We feed the
 * reflection service the real descriptors from `buf build` instead. If proto-loader starts
 * keeping file names and imports, the plain route would work again.
 */
export function addReflection(server: grpc.Server): void {
  const generatedDir = GENERATED_DIR_CANDIDATES.find((dir) =>
    DESCRIPTOR_SETS.every((file) => existsSync(path.join(dir, file))),
  );
  if (!generatedDir) {
    throw new Error(
      `descriptor sets not found in ${GENERATED_DIR_CANDIDATES.join(' or ')}; run npm run build`,
    );
  }
  const fileDescriptorProtos = DESCRIPTOR_SETS.flatMap((file) =>
    fromBinary(FileDescriptorSetSchema, readFileSync(path.join(generatedDir, file))).file.map(
      (descriptor) => Buffer.from(toBinary(FileDescriptorProtoSchema, descriptor)),
    ),
  );

  // @grpc/reflection reads only `fileDescriptorProtos` from each entry; one entry carrying every
  // file is enough for it to index all services and messages, so the rest of the shape is unused.
  const entry = { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos };
  const definition = { 'certsync.v1': entry } as unknown as PackageDefinition;
  new ReflectionService(definition).addToServer(server);
}
