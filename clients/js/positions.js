// @ts-check
/** Positions in a channel's history (docs/protocol.md, "Subscriptions"). @module */

/**
 * Order of two positions: tuples of integers split on `-` (docs/protocol.md).
 * @param {string} a @param {string} b
 * @returns {number} negative, 0 or positive
 */
export function comparePositions(a, b) {
  const left = String(a).split("-");
  const right = String(b).split("-");
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = Number(left[i] ?? 0) - Number(right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}
