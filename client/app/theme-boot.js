// Theme, before the first paint: applies a theme the user chose earlier (light or dark, overriding the
// system's). A classic, blocking script in <head>, because the deferred app module would run after
// the first paint and the page would flash in the other theme. The toggle itself is app/theme.js.
'use strict';
try {
  const saved = localStorage.getItem('wsgate-theme');
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
} catch {
  // Storage can be unavailable (privacy settings): then the page simply follows the system.
}
