/**
 * Formats an amount in euros with a decimal comma, e.g. 7 -> "7,00 €".
 * @param {number} amount
 * @returns {string}
 */
export function formatPrice(amount) {
  const fixed = (Math.round(amount * 100) / 100).toFixed(2);
  return `${fixed.replace(".", ",")} €`;
}

/**
 * Shortens a product name to at most `max` characters, ending in an ellipsis.
 * @param {string} name
 * @param {number} [max=24]
 */
export function shortName(name, max = 24) {
  if (name.length <= max) {
    return name;
  }
  return name.slice(0, max - 1).trimEnd() + "…";
}

/** Turns "Ethiopian Coffee 250g" into "ethiopian-coffee-250g". */
export const slugify = (text) =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
