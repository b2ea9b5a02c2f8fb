/**
 * A QR code of the volunteer URL as an inline SVG built with DOM calls (no
 * markup strings: the URL comes from the status), one path of dark modules.
 */
import qrcode from "qrcode-generator";

const SVG = "http://www.w3.org/2000/svg";
/** Quiet zone around the code, in modules (the standard asks for 4). */
const MARGIN = 4;

/** The path data of the dark modules of `text`'s QR code, and its size in modules with the margin. */
export function qrPath(text: string): { d: string; size: number } {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const parts: string[] = [];
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) if (qr.isDark(r, c)) parts.push(`M${c + MARGIN} ${r + MARGIN}h1v1h-1z`);
  }
  return { d: parts.join(""), size: n + 2 * MARGIN };
}

/** Replaces `host`'s content with the QR code of `url`, labelled for screen readers. */
export function renderQr(host: HTMLElement, url: string): void {
  if (host.dataset["url"] === url) return;
  host.dataset["url"] = url;
  const { d, size } = qrPath(url);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("shape-rendering", "crispEdges");
  const title = document.createElementNS(SVG, "title");
  title.textContent = `QR code of the volunteer page: ${url}`;
  const bg = document.createElementNS(SVG, "rect");
  bg.setAttribute("width", String(size));
  bg.setAttribute("height", String(size));
  bg.setAttribute("fill", "#fff");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", d);
  path.setAttribute("fill", "#000");
  svg.append(title, bg, path);
  host.replaceChildren(svg);
}
