/** The part of lezer's parser this file uses. */
interface SyntaxNodeRef {
  readonly name: string;
  readonly from: number;
  readonly to: number;
  readonly type: { readonly isError: boolean };
  readonly node: { readonly parent: { readonly name: string } | null };
}
interface PromqlParser {
  parse(text: string): { iterate(spec: { enter(node: SyntaxNodeRef): void }): void };
}

// The package is "type": "module" with a CommonJS build under its `require` export; its types are
// the ESM ones, which a CommonJS file may not import, so the CommonJS build is required directly.
const { parser } = require('@prometheus-io/lezer-promql') as { parser: PromqlParser };

/** Thrown when an expression is not valid PromQL; names the expression and the offset. */
export class PromqlSyntaxError extends Error {
  override readonly name = 'PromqlSyntaxError';
}

/**
 * The metric names a PromQL expression selects, read with Prometheus's own grammar
 * (@prometheus-io/lezer-promql). Throws PromqlSyntaxError on an expression Prometheus would refuse.
 */
export function metricNamesInPromql(expression: string): string[] {
  const names = new Set<string>();
  let errorAt: number | undefined;
  parser.parse(expression).iterate({
    enter(node) {
      if (node.type.isError && errorAt === undefined) errorAt = node.from;
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') {
        names.add(expression.slice(node.from, node.to));
      }
    },
  });
  if (errorAt !== undefined)
    throw new PromqlSyntaxError(`not valid PromQL at offset ${errorAt}: ${expression}`);
  return [...names];
}
