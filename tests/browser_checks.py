"""Checks run inside the page by the browser tests: WCAG text contrast, words broken across lines."""

# Every visible text (HTML and SVG) whose colour against its backdrop is under 4.5:1 (WCAG AA for normal text):
# the backdrop is the element's ancestors' backgrounds composed over the page's; opacity counts; disabled controls,
# which WCAG exempts, are skipped. Returns [{text, ratio, fg, bg, id}].
CONTRAST_JS = """
() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const over = (top, under) => { const a = top[3]; return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat(1); };
  const page = parse(getComputedStyle(document.body).backgroundColor) || [255, 255, 255, 1];
  const backdrop = (el) => { const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const s = getComputedStyle(e); const bg = parse(s.backgroundColor);
      if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; } }
    let colour = page[3] >= 1 ? page : over(page, [255, 255, 255, 1]);
    for (const l of layers.reverse()) colour = over(l, colour); return colour; };
  const visible = (el) => { const r = el.getBoundingClientRect(); if (r.width < 1 || r.height < 1) return false;
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) { const s = getComputedStyle(e);
      if (s.visibility === 'hidden' || s.display === 'none' || Number(s.opacity) === 0) return false; } return true; };
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement; if (!el || seen.has(el) || !n.textContent.trim()) continue; seen.add(el);
    if (['SCRIPT', 'STYLE', 'NOSCRIPT', 'TITLE'].includes(el.tagName) || !visible(el)) continue;
    if (el.closest('[disabled], [aria-disabled=true]')) continue;  // WCAG: inactive controls are exempt
    const s = getComputedStyle(el);
    const svg = el instanceof SVGElement;
    const fg = parse(svg ? s.fill : s.color); if (!fg) continue;
    let opacity = 1; for (let e = el; e && e.nodeType === 1; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
    const bg = backdrop(el); const shown = over([fg[0], fg[1], fg[2], fg[3] * opacity], bg);
    const [a, b] = [lum(shown), lum(bg)].sort((x, y) => y - x); const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) bad.push({text: n.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100,
      fg: svg ? s.fill : s.color, bg: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')', id: el.closest('[id]')?.id || ''});
  }
  return bad;
}
"""

# Words of the elements matching the selector that are split over two lines or stick out of their box (cut off).
BROKEN_WORDS_JS = """
(selector) => {
  const broken = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const box = n.parentElement.getBoundingClientRect();  // the text's own box: a cut shows there
      for (const m of n.textContent.matchAll(/\S+/g)) {
        const range = document.createRange();
        range.setStart(n, m.index); range.setEnd(n, m.index + m[0].length);
        const rects = Array.from(range.getClientRects()).filter(r => r.width > 0);
        if (rects.length > 1 || rects.some(r => r.right > box.right + 1 || r.left < box.left - 1)) broken.push(m[0]);
      }
    }
  }
  return broken;
}
"""
