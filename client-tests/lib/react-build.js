/**
 * Builds the React test page (client-tests/react-app/) with esbuild into target/browser/react-app/:
 * index.html and app.css as they are, main.jsx bundled with React (the app's copy, from
 * client-tests/node_modules) and client/react.js + client/wsgate.js, as one ES module, app.js.
 * Deterministic: the same sources give the same bytes (no timestamps, no hashes). Nothing built is
 * committed; react.test.js builds it before starting its server.
 */

import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { ARTIFACTS, REPO } from './server.js';

export const REACT_APP_SOURCE = path.join(REPO, 'client-tests', 'react-app');
export const REACT_APP_DIR = path.join(ARTIFACTS, 'react-app');

/**
 * Builds the page; resolves to esbuild's metafile (what went into the bundle).
 *
 * @returns {Promise<import('esbuild').Metafile>}
 */
export async function buildReactApp() {
  rmSync(REACT_APP_DIR, { recursive: true, force: true });
  mkdirSync(REACT_APP_DIR, { recursive: true });
  for (const file of ['index.html', 'app.css']) {
    copyFileSync(path.join(REACT_APP_SOURCE, file), path.join(REACT_APP_DIR, file));
  }
  const result = await build({
    absWorkingDir: REPO,
    entryPoints: [path.join(REACT_APP_SOURCE, 'main.jsx')],
    outfile: path.join(REACT_APP_DIR, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    jsx: 'automatic',
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    // client/react.js imports the bare 'react': resolved, like the app's own imports, to this one copy.
    nodePaths: [path.join(REPO, 'client-tests', 'node_modules')],
    define: { 'process.env.NODE_ENV': '"production"' },
    metafile: true,
    logLevel: 'silent',
  });
  return result.metafile;
}
