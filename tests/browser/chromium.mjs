// Launches Debian's Chromium headless with playwright-core.
//
// Chromium on a loaded 2-core CI machine now and then dies while it starts
// (SIGSEGV before the DevTools pipe opens: seen once in CI, never in the page
// under test). A launch that fails that way is retried, with a fresh profile,
// a bounded number of times; any failure after the browser is up is the
// test's to report.
import { chromium } from "playwright-core";

export const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

const LAUNCH_ATTEMPTS = 3;

export async function launch() {
  let lastError;
  for (let attempt = 1; attempt <= LAUNCH_ATTEMPTS; attempt++) {
    try {
      return await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
        args: CHROMIUM_FLAGS,
      });
    } catch (error) {
      lastError = error;
      const first = String(error?.message ?? error).split("\n")[0];
      process.stderr.write(`[chromium] launch attempt ${attempt}/${LAUNCH_ATTEMPTS} failed: ${first}\n`);
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
  throw lastError;
}
