// Screenshot of the app after analysing a recording, for the README.
// Needs Debian's chromium and `npm install playwright-core` (not a project dependency):
//   NODE_PATH=/path/to/node_modules node scripts/screenshot.cjs http://127.0.0.1:7860 examples/medley.flac docs/screenshot.png
const { chromium } = require("playwright-core");

(async () => {
const [url, audio, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1500 } });
await page.goto(url, { waitUntil: "networkidle" });
await page.locator("input[type=file]").first().setInputFiles(audio);
await page.waitForTimeout(1500);
await page.getByRole("button", { name: "Analyse" }).click();
await page.locator(".js-plotly-plot, img, canvas, svg").last().waitFor({ timeout: 60000 });
await page.waitForTimeout(6000);
await page.screenshot({ path: out, fullPage: true });
await browser.close();
})();
