// A small line chart on <canvas>: several series against the epoch, linear or log y axis,
// sharp on high-DPI screens, redrawn on resize, with a hover line that reports the epoch.

const PAD = { left: 58, right: 14, top: 12, bottom: 34 };
const GRID = "#e6e8eb";
const AXIS_TEXT = "#5f6670";
const FONT = "12px system-ui, sans-serif";

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{logY?: boolean, xLabel?: string, onHover?: (x: number|null) => void}} options
   */
  constructor(canvas, { logY = false, xLabel = "epoch", onHover = null } = {}) {
    this.canvas = canvas;
    this.logY = logY;
    this.xLabel = xLabel;
    this.onHover = onHover;
    this.series = []; // [{name, color, dashed, width, points: [[x, y], ...]}]
    this.hoverX = null;
    this.frame = 0;
    new ResizeObserver(() => this.redraw()).observe(canvas);
    canvas.addEventListener("mousemove", (e) => this.hover(e));
    canvas.addEventListener("mouseleave", () => this.hover(null));
  }

  /** Replace the series and draw on the next animation frame (many updates, one draw). */
  setSeries(series) {
    this.series = series;
    const count = Math.max(0, ...series.map((s) => s.points.length));
    this.canvas.dataset.points = String(count);
    this.redraw();
  }

  redraw() {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.draw();
      });
    }
  }

  hover(event) {
    const box = this.area();
    let x = null;
    if (event && box.xs) {
      const rect = this.canvas.getBoundingClientRect();
      const px = event.clientX - rect.left;
      if (px >= box.left && px <= box.right) x = Math.round(box.xs.invert(px));
    }
    if (x !== this.hoverX) {
      this.hoverX = x;
      this.redraw();
      if (this.onHover) this.onHover(x);
    }
  }

  /** Plot area in CSS pixels, and the scales of the last draw. */
  area() {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    return { left: PAD.left, right: width - PAD.right, top: PAD.top,
             bottom: height - PAD.bottom, width, height, xs: this.xs, ys: this.ys };
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    canvas.dataset.scale = this.logY ? "log" : "linear";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;

    const visible = this.series.map((s) => ({ ...s, points: s.points.filter((p) => this.plottable(p[1])) }));
    const all = visible.flatMap((s) => s.points);
    const box = this.area();
    if (all.length === 0) {
      this.xs = this.ys = null;
      ctx.fillStyle = AXIS_TEXT;
      ctx.textAlign = "center";
      ctx.fillText("waiting for the first epoch…", width / 2, height / 2);
      return;
    }
    const xMax = Math.max(2, ...all.map((p) => p[0]));
    this.xs = linearScale(1, xMax, box.left, box.right);
    const ys = all.map((p) => p[1]);
    this.ys = this.logY
      ? logScale(Math.min(...ys), Math.max(...ys), box.bottom, box.top)
      : linearScale(Math.min(...ys), Math.max(...ys), box.bottom, box.top, true);

    this.drawAxes(ctx, box);
    ctx.save();
    ctx.beginPath();
    ctx.rect(box.left, box.top - 2, box.right - box.left, box.bottom - box.top + 4);
    ctx.clip();
    for (const s of visible) this.drawLine(ctx, s);
    ctx.restore();
    this.drawHover(ctx, box, visible);
  }

  plottable(y) {
    return typeof y === "number" && Number.isFinite(y) && (!this.logY || y > 0);
  }

  drawAxes(ctx, box) {
    ctx.lineWidth = 1;
    ctx.strokeStyle = GRID;
    ctx.fillStyle = AXIS_TEXT;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of this.ys.ticks()) {
      const y = Math.round(this.ys(tick)) + 0.5;
      line(ctx, box.left, y, box.right, y);
      ctx.fillText(formatTick(tick), box.left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const tick of this.xs.ticks().filter(Number.isInteger)) {
      const x = Math.round(this.xs(tick)) + 0.5;
      line(ctx, x, box.bottom, x, box.bottom + 4);
      ctx.fillText(String(tick), x, box.bottom + 6);
    }
    ctx.strokeStyle = AXIS_TEXT;
    line(ctx, box.left, box.bottom + 0.5, box.right, box.bottom + 0.5);
    ctx.fillText(this.xLabel, (box.left + box.right) / 2, box.bottom + 20);
  }

  drawLine(ctx, s) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = s.width || 2;
    ctx.lineJoin = "round";
    ctx.setLineDash(s.dashed ? [6, 4] : []);
    ctx.beginPath();
    s.points.forEach(([x, y], i) => {
      const px = this.xs(x);
      const py = this.ys(y);
      if (i === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    if (s.points.length === 1) ctx.arc(this.xs(s.points[0][0]), this.ys(s.points[0][1]), 2, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  drawHover(ctx, box, visible) {
    if (this.hoverX === null) return;
    const x = this.xs(this.hoverX);
    ctx.strokeStyle = "#9aa1ab";
    ctx.lineWidth = 1;
    line(ctx, Math.round(x) + 0.5, box.top, Math.round(x) + 0.5, box.bottom);
    for (const s of visible) {
      const point = s.points.find((p) => p[0] === this.hoverX);
      if (!point) continue;
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(x, this.ys(point[1]), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}

function line(ctx, x1, y1, x2, y2) {
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x2, y2);
  ctx.stroke();
}

/** Maps [lo, hi] to pixels [from, to]; `pad` leaves a margin of 5 % above and below. */
function linearScale(lo, hi, from, to, pad = false) {
  if (hi === lo) {
    const half = Math.abs(lo) * 0.1 || 1;
    lo -= half;
    hi += half;
  } else if (pad) {
    const margin = (hi - lo) * 0.05;
    lo -= margin;
    hi += margin;
  }
  const scale = (v) => from + ((v - lo) / (hi - lo)) * (to - from);
  scale.invert = (p) => lo + ((p - from) / (to - from)) * (hi - lo);
  scale.ticks = () => niceTicks(lo, hi, 6);
  return scale;
}

/** Maps [lo, hi] (both > 0) to pixels on a log10 axis; ticks at 1, 2, 5 × 10^k. */
function logScale(lo, hi, from, to) {
  let a = Math.log10(lo);
  let b = Math.log10(hi);
  if (b - a < 1) {
    const mid = (a + b) / 2;
    a = mid - 0.5;
    b = mid + 0.5;
  }
  a -= 0.05 * (b - a);
  b += 0.05 * (b - a);
  const scale = (v) => from + ((Math.log10(v) - a) / (b - a)) * (to - from);
  scale.invert = (p) => 10 ** (a + ((p - from) / (to - from)) * (b - a));
  scale.ticks = () => {
    const decades = b - a;
    const steps = decades > 6 ? [1] : decades > 2.5 ? [1, 3] : [1, 2, 5];
    const ticks = [];
    for (let k = Math.floor(a); k <= Math.ceil(b); k++) {
      for (const m of steps) {
        const v = m * 10 ** k;
        if (Math.log10(v) >= a && Math.log10(v) <= b) ticks.push(v);
      }
    }
    return ticks;
  };
  return scale;
}

/** About `count` round numbers (steps of 1, 2 or 5 × 10^k) covering [lo, hi]. */
export function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => raw <= s);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

export function formatTick(v) {
  if (v === 0) return "0";
  const size = Math.abs(v);
  if (size >= 1e4 || size < 1e-3) return v.toExponential(0).replace("e+", "e");
  return String(Number(v.toPrecision(3)));
}
