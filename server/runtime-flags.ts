/**
 * Node flags every certsync-server process starts with: the image's ENTRYPOINT, the
 * `certsync-server` bin (the shebang of server/main.ts) and the test and bench harness
 * (test/support/processes.ts). test/unit/server-runtime-flags.test.ts keeps the three equal.
 *
 * `--max-semi-space-size=1` (MiB): V8 grows the young generation up to 16 MiB per semi-space
 * (32 MiB in all) on a machine with this much memory, and the bursts of short-lived objects a
 * start or a wave of agent connections make fill it and stay resident. With 1 MiB the server
 * measured ~8 MiB less RSS at start and about half the RSS per connected agent, for more
 * frequent young-generation collections (see BENCHMARKS.md). If the flag is dropped, nothing
 * breaks; RSS goes back up.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
