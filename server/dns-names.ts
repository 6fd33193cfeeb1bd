import type { X509Certificate } from 'node:crypto';

/** DNS names of a certificate and TLS wildcard matching, for the expected-names check. */

/**
 * Whether SAN `san` covers `name`. A wildcard SAN `*.a.b` covers exactly one label left of a.b;
 * an expected wildcard is covered only by the identical wildcard SAN.
 */
export function covers(san: string, name: string): boolean {
  const sanLower = san.toLowerCase();
  const nameLower = name.toLowerCase();
  if (sanLower === nameLower) return true;
  // An expected `*.a.b` reaches here only if the SAN differs, and `*` is not a label we expand.
  if (!sanLower.startsWith('*.')) return false;
  const firstDot = nameLower.indexOf('.');
  return firstDot > 0 && nameLower.slice(firstDot) === sanLower.slice(1);
}

/**
 * DNS names from Node's `subjectAltName` text ("DNS:a, DNS:b"). Node quotes an entry as a JSON
 * string when it holds separators, so quoted entries are decoded rather than split.
 */
export function dnsNamesOf(certificate: X509Certificate): string[] {
  const text = certificate.subjectAltName ?? '';
  const entries = text.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? [];
  const names: string[] = [];
  for (const entry of entries.map((raw) => raw.trim())) {
    if (!entry.startsWith('DNS:')) continue;
    const value = entry.slice('DNS:'.length);
    names.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return names;
}
