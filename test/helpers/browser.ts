import { accessSync, constants, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type LaunchOptions } from 'playwright-core';

/**
 * A Chromium-family browser already on this machine, looked up without installing anything (a test must not
 * run apt-get or download a browser: that needs root, a network and minutes, and differs per system):
 * 1. `CHROMIUM_PATH`, when set (and then only it: a wrong value is reported, not silently replaced);
 * 2. `chromium`, `chromium-browser`, `google-chrome`, `google-chrome-stable` on `PATH` (Debian, Ubuntu, Fedora);
 * 3. playwright's own browser (`npx playwright-core install chromium` puts it under ~/.cache/ms-playwright);
 * 4. Google Chrome where it installs itself (macOS /Applications, Linux /opt/google/chrome), which
 *    playwright finds as channel `chrome`.
 * Returns the launch options, or why there is none (for one skip line).
 */
export function findBrowser(): { launch: LaunchOptions; name: string } | { missing: string } {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    return executable(fromEnv)
      ? { launch: { executablePath: fromEnv }, name: fromEnv }
      : { missing: `CHROMIUM_PATH=${fromEnv} is not an executable file` };
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
      const file = path.join(dir, name);
      if (executable(file)) return { launch: { executablePath: file }, name: file };
    }
  }
  const own = chromium.executablePath();
  if (own && executable(own)) return { launch: { executablePath: own }, name: own };
  const chrome = ['/Applications/Google Chrome.app/Contents/MacOS/Google Chrome', '/opt/google/chrome/chrome'].find(
    existsSync,
  );
  if (chrome) return { launch: { channel: 'chrome' }, name: chrome };
  return {
    missing: 'no browser for the console tests: set CHROMIUM_PATH, or install chromium or google-chrome (on PATH)',
  };
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Why browser tests are skipped here, or undefined when a browser was found: `test(..., { skip: noBrowser })`. */
export const noBrowser: string | undefined = (() => {
  const found = findBrowser();
  return 'missing' in found ? found.missing : undefined;
})();

/** Launches the browser findBrowser() found, headless; bounded, so a browser that never starts fails the test. */
export async function launchBrowser(): Promise<Browser> {
  const found = findBrowser();
  if ('missing' in found) throw new Error(found.missing);
  // --no-sandbox: the sandbox needs user namespaces or a setuid helper, which containers and root often lack
  return chromium.launch({ ...found.launch, headless: true, args: ['--no-sandbox'], timeout: 60_000 });
}
