/**
 * Node identity in a cluster: session ids carry their node's id as a prefix (`n2-1a2b…`) so that a proxy can send
 * every request of a session to the daemon that holds it without any shared state (API.md, "Running as a cluster").
 */

/** A node id: 1–16 lower-case letters and digits (no `-`: the first `-` of a session id ends the prefix). */
export const NODE_ID_PATTERN = /^[a-z0-9]{1,16}$/;

/** The node id of a daemon started without one: today's `s-…` session ids keep their shape. */
export const DEFAULT_NODE_ID = 's';

export function isNodeId(s: string): boolean {
  return NODE_ID_PATTERN.test(s);
}

/** The node prefix of a session id, or null when the id has none. */
export function nodeOfSession(id: string): string | null {
  const dash = id.indexOf('-');
  return dash > 0 ? id.slice(0, dash) : null;
}
