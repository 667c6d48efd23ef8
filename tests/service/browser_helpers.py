"""Debian's Chromium driven by Playwright, for the dashboard tests (the `browser` and `page`
fixtures are in conftest.py)."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOSS_BLUE, VAL_LOSS_ORANGE = "#1f6fd1", "#e8710a"  # LOSS_COLOR, VAL_LOSS_COLOR of dashboard.js

# Pixels of the canvas within 40 of the colour in each of R, G and B: is that curve drawn?
COUNT_COLOUR_JS = """([id, hex]) => {
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] > 200 && want.every((v, c) => Math.abs(pixels[i + c] - v) < 40)) count++;
  }
  return count;
}"""
