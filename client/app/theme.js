/**
 * The theme toggle. The page follows the system's light or dark preference (prefers-color-scheme,
 * through CSS `color-scheme`); the toggle overrides it, and the override is remembered in
 * localStorage (it is not sensitive) only while it differs from the system, so that switching back
 * to the system's choice means following the system again.
 */

const STORAGE_KEY = 'wsgate-theme';
const root = document.documentElement;
const systemDark = window.matchMedia('(prefers-color-scheme: dark)');

/** @returns {'light'|'dark'} the theme in effect. */
function effectiveTheme() {
  const chosen = root.dataset.theme;
  if (chosen === 'light' || chosen === 'dark') return chosen;
  return systemDark.matches ? 'dark' : 'light';
}

function remember(theme) {
  try {
    if (theme) localStorage.setItem(STORAGE_KEY, theme);
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Without storage the choice lasts until the page is left: fine.
  }
}

/**
 * Wires the toggle button: `aria-pressed` is true while the dark theme is in effect.
 *
 * @param {HTMLButtonElement} button
 */
export function initThemeToggle(button) {
  const render = () => button.setAttribute('aria-pressed', String(effectiveTheme() === 'dark'));
  button.addEventListener('click', () => {
    const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    const system = systemDark.matches ? 'dark' : 'light';
    if (next === system) {
      delete root.dataset.theme;
      remember(null);
    } else {
      root.dataset.theme = next;
      remember(next);
    }
    render();
  });
  systemDark.addEventListener('change', render);
  render();
}
