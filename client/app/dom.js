/**
 * The one way the demo builds DOM: `el()` creates an element whose text is set with `textContent`.
 * There is deliberately no HTML-string path anywhere in the client, so user text (messages,
 * usernames, server messages) can never become markup.
 */

/**
 * Creates an element.
 *
 * @param {string} tag
 * @param {{className?: string, text?: string, attrs?: Record<string, string>}} [props]
 * @param {...(Node|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function el(tag, { className, text, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

/**
 * Looks up an element by id, failing loudly if the markup and the script disagree.
 *
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return /** @type {T} */ (node);
}

/**
 * Shows `text` in an element that is hidden while empty (form and banner messages).
 *
 * @param {HTMLElement} node
 * @param {string} [text] - nothing or '' hides the element.
 */
export function showText(node, text) {
  node.textContent = text ?? '';
  node.hidden = !text;
}
