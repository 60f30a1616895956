/** Positions in a channel's history (docs/protocol.md, "Subscriptions"). @module */
/**
 * Order of two positions: tuples of integers split on `-` (docs/protocol.md).
 * @param {string} a @param {string} b
 * @returns {number} negative, 0 or positive
 */
export function comparePositions(a: string, b: string): number;
