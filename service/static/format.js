// Small helpers the dashboard's modules share: building elements and writing numbers.

/** A new `tag` element holding `text`, with `props` assigned (className, title, ...). */
export function el(tag, text = "", props = {}) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  return Object.assign(node, props);
}

/** Four significant digits; very large or small values in exponent form; "—" for none. */
export function formatNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}
